//! The compiled graph as DOT or Mermaid text (`smartgrid graph`).

use std::fmt::Write;

use crate::operator::PortType;
use crate::plan::Plan;

fn edge_label(port: &Option<PortType>) -> String {
    match port {
        Some(PortType::Messages) => "payloads".to_string(),
        Some(PortType::Readings(schema)) => format!("{} fields", schema.len()),
        None => String::new(),
    }
}

/// Graphviz DOT.
pub fn to_dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", plan.name.replace('"', "\\\""));
    let _ = writeln!(
        out,
        "  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];"
    );
    for node in &plan.nodes {
        let shape = if node.inputs.is_empty() {
            ", shape=invhouse"
        } else if node.output.is_none() {
            ", shape=house"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n({})\"{shape}];",
            node.name, node.name, node.kind
        );
    }
    for node in &plan.nodes {
        for &i in &node.inputs {
            let from = &plan.nodes[i];
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [label=\"{}\"];",
                from.name,
                node.name,
                edge_label(&from.output)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart.
pub fn to_mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart LR\n");
    let id = |name: &str| name.replace('-', "_");
    for node in &plan.nodes {
        let _ = writeln!(
            out,
            "  {}[\"{}<br/>({})\"]",
            id(&node.name),
            node.name,
            node.kind
        );
    }
    for node in &plan.nodes {
        for &i in &node.inputs {
            let from = &plan.nodes[i];
            let _ = writeln!(
                out,
                "  {} -->|{}| {}",
                id(&from.name),
                edge_label(&from.output),
                id(&node.name)
            );
        }
    }
    out
}
