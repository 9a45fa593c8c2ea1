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
