//! The pipeline's shape as the status page and `smartgrid top` see it (`GET /api/graph`):
//! its nodes with their kind and a layer for drawing, and the dataflow edges, the same
//! edges `smartgrid graph` draws (`runtime/src/graph.rs`: every input of every node).
//!
//! Only names and kinds: nothing a pipeline file holds (a URL, a password) is in it.

use serde_json::json;
use smartgrid_runtime::operator::PortType;
use smartgrid_runtime::plan::Plan;

/// One node as drawn.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ShapeNode {
    pub name: String,
    pub kind: String,
    /// Column of a left-to-right layered drawing: 0 for a source, else one more than
    /// its deepest input.
    pub layer: usize,
    /// Its fields, if it emits readings (the status page picks compare nodes by them).
    pub fields: Vec<String>,
}

/// Nodes in plan order and edges `(from, to)` as indices into them; and the MQTT
/// brokers between nodes (a publishing `simulate` → a broker → an `mqtt` source), as
/// `smartgrid graph` draws them dashed.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Shape {
    pub nodes: Vec<ShapeNode>,
    pub edges: Vec<(usize, usize)>,
    pub brokers: Vec<ShapeBroker>,
}

/// One broker as drawn.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ShapeBroker {
    /// `embedded` or `mqtt://host:port`: never credentials (see `BrokerLink`).
    pub label: String,
    pub layer: usize,
    /// The nodes linked to it, and whether each publishes (else it subscribes).
    pub links: Vec<(usize, bool)>,
}

impl Shape {
    pub(crate) fn of(plan: &Plan) -> Self {
        let (labels, links) = smartgrid_runtime::graph::brokers(plan);
        let mut brokers: Vec<ShapeBroker> = labels
            .into_iter()
            .map(|label| ShapeBroker {
                label,
                layer: 0,
                links: Vec::new(),
            })
            .collect();
        // Laid out as one graph: broker `b` is node `nodes + b`, after its publishers
        // and before its subscribers.
        let count = plan.nodes.len();
        let mut inputs: Vec<Vec<usize>> = plan.nodes.iter().map(|n| n.inputs.clone()).collect();
        inputs.extend(brokers.iter().map(|_| Vec::new()));
        for (node, link) in links {
            let Some(b) = brokers.iter().position(|b| b.label == link.broker) else {
                continue;
            };
            brokers[b].links.push((node, link.publishes));
            if link.publishes {
                inputs[count + b].push(node);
            } else {
                inputs[node].push(count + b);
            }
        }
        let mut layer_of = layers(&inputs);
        for (b, broker) in brokers.iter_mut().enumerate() {
            broker.layer = layer_of[count + b];
        }
        layer_of.truncate(count);
        let nodes = plan
            .nodes
            .iter()
            .zip(layer_of)
            .map(|(node, layer)| ShapeNode {
                name: node.name.clone(),
                kind: node.kind.clone(),
                layer,
                fields: match &node.output {
                    Some(PortType::Readings(schema)) => (0..schema.len())
                        .map(|i| schema.name(i).to_owned())
                        .collect(),
                    _ => Vec::new(),
                },
            })
            .collect();
        Shape {
            nodes,
            edges: smartgrid_runtime::graph::dataflow_edges(plan),
            brokers,
        }
    }

    /// The compare nodes whose output the page can chart: nodes with `predicted` and
    /// `actual` fields, the ones that emit every comparison (`relative_error`, i.e.
    /// `emit: residuals`) first, since triplets are only the misses.
    pub(crate) fn compare_nodes(&self) -> Vec<&str> {
        let has = |n: &ShapeNode, f: &str| n.fields.iter().any(|x| x == f);
        let mut nodes: Vec<&ShapeNode> = self
            .nodes
            .iter()
            .filter(|n| has(n, "predicted") && has(n, "actual"))
            .collect();
        nodes.sort_by_key(|n| !has(n, "relative_error"));
        nodes.into_iter().map(|n| n.name.as_str()).collect()
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        json!({
            "nodes": self.nodes.iter().map(|n| json!({
                "name": n.name,
                "kind": n.kind,
                "layer": n.layer,
            })).collect::<Vec<_>>(),
            "edges": self.edges.iter().map(|&(from, to)| json!({
                "from": self.nodes[from].name,
                "to": self.nodes[to].name,
            })).collect::<Vec<_>>(),
            "brokers": self.brokers.iter().map(|b| json!({
                "label": b.label,
                "layer": b.layer,
                "links": b.links.iter().map(|&(node, publishes)| json!({
                    "node": self.nodes[node].name,
                    "publishes": publishes,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "compare": self.compare_nodes(),
        })
    }
}

/// Each node's layer: the longest path from a source. The plan lists inputs before the
/// nodes reading them, but this does not rely on it: it relaxes until nothing changes
/// (at most one pass per node, so a cycle, which the plan refuses anyway, ends too).
fn layers(inputs: &[Vec<usize>]) -> Vec<usize> {
    let mut layer = vec![0; inputs.len()];
    for _ in 0..inputs.len() {
        let mut changed = false;
        for (node, from) in inputs.iter().enumerate() {
            let deepest = from
                .iter()
                .filter_map(|&i| layer.get(i))
                .map(|l| l + 1)
                .max()
                .unwrap_or(0);
            if deepest != layer[node] {
                layer[node] = deepest;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_sits_one_layer_right_of_its_deepest_input() {
        // 0 → 1 → 2, 0 → 2, and 3 listed before its input 2.
        let inputs = vec![vec![], vec![0], vec![0, 1], vec![2]];
        assert_eq!(layers(&inputs), vec![0, 1, 2, 3]);
        let reordered = vec![vec![3], vec![], vec![1], vec![2]];
        assert_eq!(layers(&reordered), vec![3, 0, 1, 2]);
    }

    #[test]
    fn residual_compare_nodes_come_first() {
        let node = |name: &str, fields: &[&str]| ShapeNode {
            name: name.into(),
            kind: "k".into(),
            layer: 0,
            fields: fields.iter().map(|f| f.to_string()).collect(),
        };
        let shape = Shape {
            nodes: vec![
                node("means", &["p_l1"]),
                node("drift", &["predicted", "actual", "error"]),
                node("residuals", &["predicted", "actual", "relative_error"]),
            ],
            edges: vec![(0, 1), (0, 2)],
            brokers: vec![ShapeBroker {
                label: "embedded".into(),
                layer: 1,
                links: vec![(0, true)],
            }],
        };
        assert_eq!(shape.compare_nodes(), vec!["residuals", "drift"]);
        let json = shape.to_json();
        assert_eq!(json["edges"][1]["to"], "residuals");
        assert_eq!(json["nodes"][2]["layer"], 0);
        assert_eq!(json["brokers"][0]["links"][0]["node"], "means");
    }
}
