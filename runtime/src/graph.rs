//! The compiled graph as DOT or Mermaid text (`smartgrid graph`).

use std::fmt::Write;

use crate::node::BrokerLink;
use crate::operator::PortType;
use crate::plan::Plan;

/// The dataflow's edges, `(from, to)` as indices into [`Plan::nodes`]: every input of
/// every node, in node order. What the status page draws too.
pub fn dataflow_edges(plan: &Plan) -> Vec<(usize, usize)> {
    plan.nodes
        .iter()
        .enumerate()
        .flat_map(|(to, node)| node.inputs.iter().map(move |&from| (from, to)))
        .collect()
}

/// The brokers nodes publish to or subscribe from, in order of first mention, and each
/// node's links: paths outside the dataflow (a publishing `simulate` → the broker →
/// an `mqtt` source).
pub fn brokers(plan: &Plan) -> (Vec<String>, Vec<(usize, BrokerLink)>) {
    let mut brokers: Vec<String> = Vec::new();
    let mut links = Vec::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        for link in node.operator.broker_links() {
            if !brokers.contains(&link.broker) {
                brokers.push(link.broker.clone());
            }
            links.push((i, link));
        }
    }
    (brokers, links)
}

fn broker_index(brokers: &[String], broker: &str) -> usize {
    brokers.iter().position(|b| b == broker).unwrap_or(0)
}

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
    for (from, to) in dataflow_edges(plan) {
        let (from, to) = (&plan.nodes[from], &plan.nodes[to]);
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [label=\"{}\"];",
            from.name,
            to.name,
            edge_label(&from.output)
        );
    }
    let (brokers, links) = brokers(plan);
    for (b, broker) in brokers.iter().enumerate() {
        let _ = writeln!(
            out,
            "  \"broker {b}\" [label=\"MQTT broker\\n{}\", shape=cylinder];",
            broker.replace('"', "\\\"")
        );
    }
    for (i, link) in &links {
        let broker = format!("broker {}", broker_index(&brokers, &link.broker));
        let node = &plan.nodes[*i].name;
        let (from, to) = if link.publishes {
            (node.as_str(), broker.as_str())
        } else {
            (broker.as_str(), node.as_str())
        };
        let _ = writeln!(
            out,
            "  \"{from}\" -> \"{to}\" [label=\"{}\", style=dashed];",
            link.topic.replace('"', "\\\"")
        );
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
    for (from, to) in dataflow_edges(plan) {
        let (from, to) = (&plan.nodes[from], &plan.nodes[to]);
        let _ = writeln!(
            out,
            "  {} -->|{}| {}",
            id(&from.name),
            edge_label(&from.output),
            id(&to.name)
        );
    }
    let (brokers, links) = brokers(plan);
    for (b, broker) in brokers.iter().enumerate() {
        let _ = writeln!(out, "  broker_{b}[(\"MQTT broker<br/>{broker}\")]");
    }
    for (i, link) in &links {
        let broker = format!("broker_{}", broker_index(&brokers, &link.broker));
        let node = id(&plan.nodes[*i].name);
        let (from, to) = if link.publishes {
            (node, broker)
        } else {
            (broker, node)
        };
        // Mermaid reads `{` as a shape and `|` as the label's end: entity codes.
        let topic = link
            .topic
            .replace('{', "#123;")
            .replace('}', "#125;")
            .replace('|', "#124;")
            .replace('"', "#quot;");
        let _ = writeln!(out, "  {from} -.->|{topic}| {to}");
    }
    out
}
