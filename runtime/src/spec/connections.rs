//! `connections:`: settings shared by several nodes, written once.
//!
//! ```yaml
//! connections:
//!   influx:
//!     url: ${INFLUX_URL}
//!     token: ${INFLUX_TOKEN}
//! nodes:
//!   store:
//!     type: influx
//!     connection: influx     # the connection's keys, under the node's own
//!     bucket: energy
//! ```
//!
//! A connection is a mapping of node settings; a node naming it gets every key it does
//! not set itself. The keys keep the positions they have under `connections:`, so a
//! problem with one (an unknown key for this kind, an unset variable) is reported where
//! it is written, naming the node that used it.

use std::collections::BTreeMap;

use super::yaml::{Node, NodeValue};
use super::{Env, Spanned};
use crate::diagnostic::{Diagnostic, Location, closest};

/// Keys a node reads itself: a connection holds only the kind's settings.
const NODE_KEYS: [&str; 4] = ["type", "input", "inputs", "connection"];

/// The `connections:` of a pipeline file, by name.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    by_name: BTreeMap<String, Node>,
}

impl Connections {
    /// Read `connections:`; problems are pushed, and a connection with one is left out
    /// (a node naming it is then not reported again).
    pub(crate) fn parse(
        key: &Spanned<String>,
        value: &Node,
        problems: &mut Vec<Diagnostic>,
    ) -> Connections {
        let mut by_name = BTreeMap::new();
        let entries = match &value.value {
            NodeValue::Mapping(entries) => entries,
            NodeValue::Null => return Connections { by_name },
            _ => {
                problems.push(
                    Diagnostic::new(
                        value.at,
                        format!(
                            "`{}` must map names to settings, found {}",
                            key.value,
                            value.describe()
                        ),
                    )
                    .hint("write each connection as `name:` followed by its indented settings"),
                );
                return Connections { by_name };
            }
        };
        for (name, body) in entries {
            match &body.value {
                NodeValue::Mapping(settings) => {
                    let before = problems.len();
                    for (k, _) in settings
                        .iter()
                        .filter(|(k, _)| NODE_KEYS.contains(&k.value.as_str()))
                    {
                        problems.push(
                            Diagnostic::new(
                                k.at,
                                format!("a connection cannot set `{}`", k.value),
                            )
                            .hint("a connection holds settings shared by nodes; write `type`, `input` and `inputs` in each node"),
                        );
                    }
                    if problems.len() == before {
                        by_name.insert(name.value.clone(), body.clone());
                    }
                }
                _ => problems.push(
                    Diagnostic::new(
                        if body.is_null() { name.at } else { body.at },
                        format!(
                            "connection `{}` must be a mapping of settings, found {}",
                            name.value,
                            body.describe()
                        ),
                    )
                    .hint("indent the connection's settings (`url:`, `token:` …) under its name"),
                ),
            }
        }
        Connections { by_name }
    }

    /// The settings of the connection a node's `connection:` value names.
    pub(crate) fn get(
        &self,
        key: &Spanned<String>,
        value: &Node,
        env: &Env,
    ) -> Result<(String, &Node), Diagnostic> {
        let name = super::yaml::string_value(value, env, "`connection`")
            .map_err(|d| d.hint("write `connection: <name>` naming an entry of `connections:`"))?;
        let found = self
            .by_name
            .get(&name.value)
            .map(|n| (name.value.clone(), n));
        found.ok_or_else(|| {
            let d = Diagnostic::new(
                name.at,
                format!("connection `{}` is not defined", name.value),
            );
            let names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
            if names.is_empty() {
                return d.hint(format!(
                    "define it under a top-level `connections:` key, or remove `{}`",
                    key.value
                ));
            }
            match closest(&name.value, names.iter().copied()) {
                Some(best) => d.hint(format!(
                    "did you mean `{best}`? connections: {}",
                    names.join(", ")
                )),
                None => d.hint(format!(
                    "connections: {}; define it under `connections:`",
                    names.join(", ")
                )),
            }
        })
    }
}

/// A node's settings with its connection's under them: each key of `shared` the node
/// does not set itself is added after the node's own. Also where every key and value
/// taken stands, so that a problem there can say it came from the connection.
pub(crate) fn merge_under(
    mut settings: Vec<(Spanned<String>, Node)>,
    shared: &Node,
) -> (Vec<(Spanned<String>, Node)>, Vec<Location>) {
    let mut places = Vec::new();
    for (key, value) in shared.entries() {
        if !settings.iter().any(|(k, _)| k.value == key.value) {
            places.push(key.at);
            positions(value, &mut places);
            settings.push((key.clone(), value.clone()));
        }
    }
    (settings, places)
}

/// Every position in `node`'s tree.
fn positions(node: &Node, out: &mut Vec<Location>) {
    out.push(node.at);
    match &node.value {
        NodeValue::Null | NodeValue::Scalar { .. } => {}
        NodeValue::Sequence(items) => items.iter().for_each(|n| positions(n, out)),
        NodeValue::Mapping(entries) => entries.iter().for_each(|(k, v)| {
            out.push(k.at);
            positions(v, out);
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::spec::{Env, parse_str};

    fn problems(text: &str) -> Vec<String> {
        match parse_str(text, "p.yaml", PathBuf::from("dir"), Env::default()) {
            Ok(_) => Vec::new(),
            Err(found) => found
                .into_iter()
                .map(|d| {
                    format!(
                        "{}:{} {} | {}",
                        d.at.line,
                        d.at.column,
                        d.message,
                        d.hint.unwrap_or_default()
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_node_takes_its_connections_keys_under_its_own() {
        let text = "connections:\n  c: {url: a, qos: 0}\nnodes:\n  n: {type: mqtt, connection: c, url: b}\n";
        let spec = parse_str(text, "p.yaml", PathBuf::from("dir"), Env::default()).expect("valid");
        let node = &spec.nodes[0];
        assert_eq!(
            node.settings.get("url").and_then(|n| n.as_raw_str()),
            Some("b"),
            "the node's own key wins"
        );
        let qos = node.settings.get("qos").expect("taken from the connection");
        assert_eq!((qos.at.line, qos.as_raw_str()), (2, Some("0")));
        assert_eq!(node.from_connection(qos.at), Some("c"));
        assert_eq!(
            node.from_connection(node.settings.get("url").expect("url").at),
            None
        );
    }

    #[test]
    fn connection_problems_are_located() {
        assert_eq!(
            problems("nodes:\n  n: {type: mqtt, connection: c}\n"),
            [
                "2:31 connection `c` is not defined | define it under a top-level `connections:` key, or remove `connection`"
            ]
        );
        let found = problems("connections:\n  c: {type: mqtt}\n  d: 5\nnodes: {}\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("2:7 a connection cannot set `type`"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("3:6 connection `d` must be a mapping"),
            "{found:?}"
        );
    }

    #[test]
    fn data_dir_holds_the_state_dir_unless_it_is_absolute() {
        let parse = |text: &str| {
            parse_str(text, "p.yaml", PathBuf::from("dir"), Env::default()).expect("valid")
        };
        let spec = parse("nodes: {}\n");
        assert_eq!(spec.data_dir, Path::new("dir"));
        assert_eq!(spec.state_dir, Path::new("dir/.smartgrid/state/p"));
        let spec = parse("data_dir: out\nstate_dir: s\nnodes: {}\n");
        assert_eq!(spec.data_dir, Path::new("dir/out"));
        assert_eq!(spec.state_dir, Path::new("dir/out/s"));
        let spec = parse("data_dir: /var/lib/sg\nnodes: {}\n");
        assert_eq!(spec.state_dir, Path::new("/var/lib/sg/.smartgrid/state/p"));
        let spec = parse("x-defaults: &d {a: 1}\ndata_dir: out\nstate_dir: /s\nnodes: {}\n");
        assert_eq!(spec.state_dir, Path::new("/s"));
    }
}
