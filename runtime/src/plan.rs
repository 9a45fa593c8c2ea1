//! Validation and planning: spec → typed DAG. Every problem is reported at once.

use std::collections::HashMap;
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Diagnostics, closest};
use crate::erased::DynNode;
use crate::node::{Inputs, PlanContext, Routing, SourcePartitioning};
use crate::operator::PortType;
use crate::record::MAX_FIELDS;
use crate::registry::Registry;
use crate::spec::PipelineSpec;

/// A validated pipeline: nodes in an order where every input comes first.
pub struct Plan {
    /// The pipeline's name.
    pub name: String,
    /// The pipeline file's directory.
    pub base_dir: std::path::PathBuf,
    /// Where what the run writes goes (`data_dir:`, resolved).
    pub data_dir: std::path::PathBuf,
    /// Where state that survives restarts is kept.
    pub state_dir: std::path::PathBuf,
    /// How often state is checkpointed while the run goes on (with a replayable
    /// source; see [`Plan::replayable`]).
    pub checkpoint_interval: std::time::Duration,
    /// How the run can be watched (`http:`, `status_interval:`).
    pub observe: crate::spec::observe::ObserveSpec,
    /// Nodes, inputs before the nodes reading them.
    pub nodes: Vec<PlannedNode>,
}

/// One node of the plan.
pub struct PlannedNode {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Indices into [`Plan::nodes`] of its inputs, in the order the node names them.
    pub inputs: Vec<usize>,
    /// How it reads its inputs (`None` for a source).
    pub routing: Option<Routing>,
    /// Whether its output is partitioned by sensor (inferred: see
    /// [`SourcePartitioning`]).
    pub partitioned: bool,
    /// The planned node.
    pub(crate) operator: Arc<dyn DynNode>,
    /// What its `${VAR}`s expanded to, and the references, so that errors met while it
    /// runs quote the file, not the secret.
    pub(crate) secrets: Vec<(String, String)>,
    /// What it emits.
    pub output: Option<PortType>,
}

impl Plan {
    /// Whether some source keeps a log it can replay from a checkpoint's position
    /// (see [`crate::checkpoint`]): then checkpoints are taken while the run goes on.
    pub fn replayable(&self) -> bool {
        self.nodes.iter().any(|n| n.operator.replayable())
    }

    /// Groups of nodes rendered as one operator: nodes of one kind that read the same
    /// inputs and [share an operator](crate::node::Node::shares_operator). For each
    /// node, the other members of its group if it is the first of one (it renders them
    /// all).
    pub fn fusion_groups(&self) -> Vec<Vec<usize>> {
        self.fusion_groups_among(|_| true)
    }

    /// [`fusion_groups`](Self::fusion_groups) of the nodes `include` keeps (a test run
    /// renders its stand-ins for sources and sinks alone).
    pub(crate) fn fusion_groups_among(&self, include: impl Fn(usize) -> bool) -> Vec<Vec<usize>> {
        let mut groups: HashMap<(std::any::TypeId, &[usize]), Vec<usize>> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(ty) = node.operator.fusion_type()
                && !node.inputs.is_empty()
                && include(i)
            {
                groups
                    .entry((ty, node.inputs.as_slice()))
                    .or_default()
                    .push(i);
            }
        }
        let mut others = vec![Vec::new(); self.nodes.len()];
        for members in groups.into_values() {
            if let [first, rest @ ..] = members.as_slice() {
                others[*first] = rest.to_vec();
            }
        }
        others
    }
}

/// A planned node, its output type, and whether its output is partitioned by sensor.
type Planned = (Arc<dyn DynNode>, Option<PortType>, bool);

/// Check `spec` against the registry and plan it.
pub fn plan(spec: &PipelineSpec, registry: &Registry) -> Result<Plan, Diagnostics> {
    let mut errors: Vec<Diagnostic> = Vec::new();
    let by_name: HashMap<&str, usize> = spec
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();

    // Kinds, arities and input names: all independent of each other, so check all.
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); spec.nodes.len()];
    let mut usable = vec![true; spec.nodes.len()];
    for (i, node) in spec.nodes.iter().enumerate() {
        match registry.get(&node.kind.value) {
            None => {
                let mut d = node.error(
                    node.kind.at,
                    format!("unknown node type `{}`", node.kind.value),
                );
                let kinds: Vec<&str> = registry.kinds().collect();
                d = match closest(&node.kind.value, kinds.iter().copied()) {
                    Some(k) => d.hint(format!(
                        "did you mean `{k}`? known types: {}",
                        kinds.join(", ")
                    )),
                    None => d.hint(format!("known types: {}", kinds.join(", "))),
                };
                errors.push(d);
                usable[i] = false;
            }
            Some(factory) => match (factory.inputs(), node.inputs.len()) {
                (Inputs::None, 0) | (Inputs::One(_), 1) => {}
                (Inputs::Many(_), n) if n >= 1 => {}
                (Inputs::None, _) => {
                    let at = node.inputs[0].at;
                    errors.push(
                        node.error(
                            at,
                            format!(
                                "a `{}` node is a source and takes no input",
                                node.kind.value
                            ),
                        )
                        .hint("remove `input:`"),
                    );
                    usable[i] = false;
                }
                (Inputs::One(_) | Inputs::Many(_), 0) => {
                    errors.push(
                        node.error(
                            node.at,
                            format!("a `{}` node needs an input", node.kind.value),
                        )
                        .hint("add `input: <node>` naming the node it reads from"),
                    );
                    usable[i] = false;
                }
                (Inputs::One(_), _) => {
                    errors.push(
                        node.error(node.inputs[1].at, format!("a `{}` node takes one input", node.kind.value))
                            .hint("use one `input:`; to merge streams, put a node that takes many in front"),
                    );
                    usable[i] = false;
                }
                (Inputs::Many(_), _) => {}
            },
        }
        let is_source = registry
            .get(&node.kind.value)
            .is_some_and(|f| f.inputs() == Inputs::None);
        for input in &node.inputs {
            if is_source {
                break; // already reported above; its inputs would only add noise (cycles)
            }
            match by_name.get(input.value.as_str()) {
                Some(&j) if j == i => {
                    errors.push(
                        node.error(input.at, "a node cannot read its own output")
                            .hint("name another node"),
                    );
                    usable[i] = false;
                }
                Some(&j) => edges[i].push(j),
                None => {
                    let d = node.error(
                        input.at,
                        format!("input `{}` is not a node of this pipeline", input.value),
                    );
                    let names = spec.nodes.iter().map(|n| n.name.as_str());
                    let d = match closest(&input.value, names) {
                        Some(n) => d.hint(format!("did you mean `{n}`?")),
                        None => d.hint(format!(
                            "nodes are: {}",
                            spec.nodes
                                .iter()
                                .map(|n| n.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    };
                    errors.push(d);
                    usable[i] = false;
                }
            }
        }
    }

    let order = match topological_order(&edges) {
        Ok(order) => order,
        Err(cycle) => {
            let names: Vec<&str> = cycle.iter().map(|&i| spec.nodes[i].name.as_str()).collect();
            let first = &spec.nodes[cycle[0]];
            errors.push(
                first
                    .error(
                        first.at,
                        format!(
                            "the inputs form a cycle: {} → {}",
                            names.join(" → "),
                            names[0]
                        ),
                    )
                    .hint("a pipeline is a DAG: remove one of these inputs"),
            );
            errors.sort_by_key(|d| d.at);
            return Err(Diagnostics(errors));
        }
    };

    // Plan in dependency order so each factory sees its inputs' schemas. A node whose
    // input failed is skipped rather than reported again.
    let mut planned: Vec<Option<Planned>> = vec![None; spec.nodes.len()];
    // Nodes whose kind read their settings (and so reported their unset variables).
    let mut read = vec![false; spec.nodes.len()];
    for &i in &order {
        let node = &spec.nodes[i];
        if !usable[i] {
            continue;
        }
        let mut inputs = Vec::with_capacity(edges[i].len());
        let mut partitioned = Vec::with_capacity(edges[i].len());
        let mut ready = true;
        for (k, &j) in edges[i].iter().enumerate() {
            match &planned[j] {
                Some((_, Some(port), by_sensor)) => {
                    inputs.push(port.clone());
                    partitioned.push(*by_sensor);
                }
                Some((_, None, _)) => {
                    errors.push(
                        node.error(
                            node.inputs[k].at,
                            format!("`{}` is a sink and has no output", spec.nodes[j].name),
                        )
                        .hint("read from the node that feeds that sink"),
                    );
                    ready = false;
                }
                None => ready = false,
            }
        }
        if !ready {
            continue;
        }
        let Some(factory) = registry.get(&node.kind.value) else {
            continue;
        };
        let mut ctx = PlanContext::new(node, &inputs, spec);
        let planned_node = factory.plan(&mut ctx);
        read[i] = true;
        errors.append(&mut ctx.problems);
        let Some(op) = planned_node else {
            continue;
        };
        let output = op.output();
        if let Some(PortType::Readings(schema)) = &output
            && schema.len() > MAX_FIELDS
        {
            errors.push(
                node.error(
                    node.at,
                    format!(
                        "this node emits {} fields; at most {MAX_FIELDS} are allowed",
                        schema.len()
                    ),
                )
                .hint("select fewer fields"),
            );
            continue;
        }
        // A node never moves a record to another worker itself, so its output is
        // partitioned when what it reads is: inputs it reads by sensor are routed by the
        // renderer, the others are partitioned only if their node's output is.
        let by_sensor = match factory.inputs().routing() {
            None => op.source_partitioning() == SourcePartitioning::BySensor,
            Some(Routing::BySensor) => true,
            Some(Routing::Any) => partitioned.iter().all(|&p| p),
        };
        planned[i] = Some((op, output, by_sensor));
    }
    check_claims(spec, &planned, &mut errors);
    if !errors.is_empty() {
        // A node left unplanned (unknown kind, broken input) still names the variables
        // it needs: one run of `validate` lists them all.
        for (node, _) in spec.nodes.iter().zip(&read).filter(|(_, read)| !**read) {
            errors.extend(node.env_problems());
        }
    }

    if !errors.is_empty() {
        errors.sort_by_key(|d| d.at);
        errors.dedup();
        return Err(Diagnostics(crate::diagnostic::collapse_shared(errors)));
    }

    let mut position = vec![0; spec.nodes.len()];
    for (p, &i) in order.iter().enumerate() {
        position[i] = p;
    }
    let nodes = order
        .iter()
        .map(|&i| {
            let node = &spec.nodes[i];
            // Every usable node was planned (no errors were found), so the slot is full.
            let (operator, output, partitioned) = planned[i]
                .clone()
                .expect("all nodes planned when no error was found");
            PlannedNode {
                name: node.name.clone(),
                kind: node.kind.value.clone(),
                inputs: edges[i].iter().map(|&j| position[j]).collect(),
                routing: registry
                    .get(&node.kind.value)
                    .and_then(|k| k.inputs().routing()),
                partitioned,
                operator,
                output,
                secrets: node.secrets(),
            }
        })
        .collect();
    Ok(Plan {
        name: spec.name.clone(),
        base_dir: spec.base_dir.clone(),
        data_dir: spec.data_dir.clone(),
        state_dir: spec.state_dir.clone(),
        checkpoint_interval: spec.checkpoint_interval,
        observe: spec.observe.clone(),
        nodes,
    })
}

/// Refuse two nodes claiming the same resource (a file both write, one spool
/// directory, one MQTT client id on one broker, one port), at the second claim.
fn check_claims(spec: &PipelineSpec, planned: &[Option<Planned>], errors: &mut Vec<Diagnostic>) {
    let mut owners: HashMap<crate::node::Resource, &str> = HashMap::new();
    for (i, slot) in planned.iter().enumerate() {
        let Some((op, _, _)) = slot else { continue };
        let node = &spec.nodes[i];
        for claim in op.resources() {
            match owners.get(&claim.resource) {
                Some(&owner) if owner != node.name => errors.push(
                    node.error(
                        claim.at,
                        format!("{} is already used by node `{owner}`", claim.resource),
                    )
                    .hint("give each node its own"),
                ),
                _ => {
                    owners.insert(claim.resource, &node.name);
                }
            }
        }
    }
}

/// Kahn's algorithm, keeping file order among ready nodes so plans are stable.
/// On a cycle, returns one cycle's nodes in order.
fn topological_order(edges: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = edges.len();
    let mut indegree: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ins) in edges.iter().enumerate() {
        for &j in ins {
            readers[j].push(i);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &r in &readers[i] {
            indegree[r] -= 1;
            if indegree[r] == 0 {
                ready.insert(r);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk inputs from any node left over until a node repeats: that loop is a cycle.
    let left: Vec<bool> = (0..n).map(|i| indegree[i] > 0).collect();
    let mut at = (0..n)
        .find(|&i| left[i])
        .expect("a node is left when the order is short");
    let mut seen = vec![usize::MAX; n];
    let mut path = Vec::new();
    while seen[at] == usize::MAX {
        seen[at] = path.len();
        path.push(at);
        at = *edges[at]
            .iter()
            .find(|&&j| left[j])
            .expect("a node in a cycle has an input in the cycle");
    }
    let mut cycle = path.split_off(seen[at]);
    cycle.reverse(); // inputs were followed backwards; show data flow order
    let start = cycle
        .iter()
        .enumerate()
        .min_by_key(|(_, i)| **i)
        .map_or(0, |(k, _)| k);
    cycle.rotate_left(start);
    Err(cycle)
}

#[cfg(test)]
mod tests {
    use super::topological_order;

    #[test]
    fn orders_inputs_first_and_finds_cycles() {
        assert_eq!(
            topological_order(&[vec![], vec![0], vec![1]]),
            Ok(vec![0, 1, 2])
        );
        assert_eq!(
            topological_order(&[vec![2], vec![0], vec![1]]),
            Err(vec![0, 1, 2])
        );
        assert_eq!(
            topological_order(&[vec![], vec![0, 2], vec![1]]),
            Err(vec![1, 2])
        );
    }
}
