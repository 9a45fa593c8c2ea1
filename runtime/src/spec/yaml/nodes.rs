//! One entry of `nodes:` → a [`NodeSpec`]: its kind, inputs, connection and settings.

use super::{Node, NodeValue, is_node_name, string_value};
use crate::diagnostic::{Diagnostic, closest};
use crate::spec::connections::Connections;
use crate::spec::{Env, NodeSpec, Spanned};

/// One entry of `nodes:`; problems are pushed, `None` if the node is unusable.
pub(super) fn parse_node(
    name: &Spanned<String>,
    body: &Node,
    file: &str,
    env: &Env,
    connections: &Connections,
    problems: &mut Vec<Diagnostic>,
) -> Option<NodeSpec> {
    let before = problems.len();
    let mut report = |d: Diagnostic| problems.push(d.node(&name.value));
    if !is_node_name(&name.value) {
        report(
            Diagnostic::new(name.at, format!("invalid node name `{}`", name.value))
                .hint("a node name is letters, digits, `_` and `-`, starting with a letter or `_`"),
        );
    }
    let entries: &[(Spanned<String>, Node)] = match &body.value {
        NodeValue::Mapping(entries) => entries,
        NodeValue::Null => &[],
        NodeValue::Scalar { .. } | NodeValue::Sequence(_) => {
            report(
                Diagnostic::new(
                    body.at,
                    format!("a node must be a mapping, found {}", body.describe()),
                )
                .hint("write the node's `type: <kind>` and settings indented under its name"),
            );
            return None;
        }
    };

    let mut kind = None;
    let mut inputs = Vec::new();
    let mut input_key: Option<&Spanned<String>> = None;
    let mut connection: Option<(String, &Node)> = None;
    let mut settings = Vec::new();
    for (key, value) in entries {
        match key.value.as_str() {
            "connection" => match connections.get(key, value, env) {
                Ok(shared) => connection = Some(shared),
                Err(d) => report(d),
            },
            "type" => match string_value(value, env, "`type`") {
                Ok(k) => kind = Some(k),
                Err(d) => report(d.hint("write `type: <kind>`")),
            },
            "input" | "inputs" => {
                if let Some(first) = input_key {
                    report(
                        Diagnostic::new(
                            key.at,
                            format!(
                                "a node has `input` or `inputs`, not both (`{}` is above)",
                                first.value
                            ),
                        )
                        .hint("list every input under `inputs: [a, b]`"),
                    );
                    continue;
                }
                input_key = Some(key);
                if key.value == "input" {
                    match &value.value {
                        NodeValue::Sequence(_) => report(
                            Diagnostic::new(value.at, "`input` takes one node name")
                                .hint("for several inputs write `inputs: [a, b]`"),
                        ),
                        _ => match string_value(value, env, "`input`") {
                            Ok(input) => inputs.push(input),
                            Err(d) => report(d),
                        },
                    }
                } else {
                    match &value.value {
                        NodeValue::Sequence(items) => {
                            for item in items {
                                match string_value(item, env, "an input name") {
                                    Ok(input) => inputs.push(input),
                                    Err(d) => report(d),
                                }
                            }
                        }
                        _ => report(
                            Diagnostic::new(
                                if value.is_null() { key.at } else { value.at },
                                format!(
                                    "`inputs` must be a list of node names, found {}",
                                    value.describe()
                                ),
                            )
                            .hint("write `inputs: [a, b]`, or `input: a` for a single input"),
                        ),
                    }
                }
            }
            _ => settings.push((key.clone(), value.clone())),
        }
    }
    let Some(kind) = kind else {
        if !entries.iter().any(|(k, _)| k.value == "type") {
            let mut d = Diagnostic::new(name.at, "missing key `type`").hint("add `type: <kind>`");
            if let Some((typo, _)) = entries
                .iter()
                .find(|(k, _)| closest(&k.value, ["type"]).is_some())
            {
                d = d.hint(format!(
                    "add `type: <kind>` (is `{}` a typo of `type`?)",
                    typo.value
                ));
            }
            report(d);
        }
        return None;
    };
    if problems.len() > before {
        return None;
    }
    let connection = match connection {
        Some((name, shared)) => {
            // The node's own keys win over its connection's.
            let (merged, places) = crate::spec::connections::merge_under(settings, shared);
            settings = merged;
            Some((name, places))
        }
        None => None,
    };
    Some(NodeSpec {
        name: name.value.clone(),
        at: name.at,
        kind,
        inputs,
        settings: Node::new(name.at, NodeValue::Mapping(settings)),
        file: file.to_owned(),
        env: env.clone(),
        connection,
    })
}
