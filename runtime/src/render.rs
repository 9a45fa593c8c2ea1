//! Render a plan into a timely dataflow on every worker and run it to completion.
//! Rendering dispatches to each node's operator; it holds no operator logic.

use std::collections::HashMap;
use std::sync::Arc;

use timely::CommunicationConfig;

use crate::context::ProcessContext;
use crate::erased::AnyState;
use crate::node::{RenderContext, Routing, StartContext, StartError};
use crate::operator::{AnyStream, Readings, route_by_sensor};
use crate::plan::{Plan, PlannedNode};

/// Where the workers of a run live.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Worker threads in this process.
    pub workers: usize,
    /// This process's index (0-based) in a cluster run (timely's cluster mode).
    pub process: usize,
    /// `host:port` of every process, in index order; empty for a single process.
    pub addresses: Vec<String>,
}

impl Cluster {
    /// `workers` threads in one process.
    pub fn local(workers: usize) -> Self {
        Cluster {
            workers: workers.max(1),
            process: 0,
            addresses: Vec::new(),
        }
    }

    pub(crate) fn timely_config(&self) -> timely::Config {
        let communication = if self.addresses.len() > 1 {
            CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.addresses.clone(),
                report: false,
                zerocopy: false,
            }
        } else if self.workers == 1 {
            CommunicationConfig::Thread
        } else {
            CommunicationConfig::Process(self.workers)
        };
        timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        }
    }
}

/// A failure while running a plan.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A node could not start.
    #[error("node `{node}` failed to start: {source}")]
    Start {
        /// The node.
        node: String,
        /// Why.
        source: StartError,
    },
    /// A node could not finish cleanly (e.g. undelivered records at the drain timeout).
    #[error("node `{node}`: {source}")]
    Finish {
        /// The node.
        node: String,
        /// Why.
        source: StartError,
    },
    /// Timely could not start its workers (e.g. a cluster peer is unreachable).
    #[error("cannot start the workers: {0}")]
    Workers(String),
    /// A worker thread panicked.
    #[error("a worker stopped unexpectedly: {0}")]
    WorkerPanic(String),
}

/// Run `plan` until every source has finished (or the shutdown flag stopped them) and
/// every sink has drained.
///
/// Every node [starts](crate::node::Node::start) first, in plan order; if one fails,
/// those already started are finished in reverse order and no worker is created. Then
/// every worker renders the whole plan, and when all have stopped every node
/// [finishes](crate::node::Node::finish).
pub fn run(plan: Arc<Plan>, cluster: &Cluster, process: ProcessContext) -> Result<(), RunError> {
    run_variant(plan, cluster, process, Arc::new(Live))
}

/// How a run differs from `smartgrid run`'s: a [test run](crate::harness) renders its own
/// stand-ins for some nodes (sources fed by the test, sinks that only record what
/// reaches them) and watches every node's output. A replaced node is neither started
/// nor finished, so it opens no connection, file or port.
pub(crate) trait Variant: Send + Sync + 'static {
    /// Whether `node` is replaced by [`render_replaced`](Self::render_replaced).
    fn replaces(&self, node: &PlannedNode) -> bool;

    /// Render the stand-in for a replaced node on one worker; `inputs` as for
    /// [`Node::render`](crate::node::Node::render).
    fn render_replaced<'s>(
        &self,
        node: &PlannedNode,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>>;

    /// `out`, the output of `node`, as the rest of the dataflow reads it (with a tap
    /// point, a capture…).
    fn observe<'s>(
        &self,
        node: &PlannedNode,
        out: Option<AnyStream<'s>>,
        process: &ProcessContext,
    ) -> Option<AnyStream<'s>>;
}

/// `smartgrid run`: every node as planned, with tap points when the run serves them.
struct Live;

impl Variant for Live {
    fn replaces(&self, _: &PlannedNode) -> bool {
        false
    }

    fn render_replaced<'s>(
        &self,
        node: &PlannedNode,
        _: &RenderContext<'s>,
        _: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        unreachable!("a live run replaces no node (asked for `{}`)", node.name)
    }

    fn observe<'s>(
        &self,
        node: &PlannedNode,
        out: Option<AnyStream<'s>>,
        process: &ProcessContext,
    ) -> Option<AnyStream<'s>> {
        tapped(out, node, process)
    }
}

/// [`run`], with some nodes replaced or watched as `variant` says.
pub(crate) fn run_variant(
    plan: Arc<Plan>,
    cluster: &Cluster,
    process: ProcessContext,
    variant: Arc<dyn Variant>,
) -> Result<(), RunError> {
    let mut states: Vec<AnyState> = Vec::with_capacity(plan.nodes.len());
    for node in &plan.nodes {
        if variant.replaces(node) {
            // A placeholder: nothing was acquired, and `finish_all` skips it.
            states.push(Box::new(()));
            continue;
        }
        let ctx = StartContext {
            node: &node.name,
            process: &process,
        };
        match node.operator.start(&ctx) {
            Ok(state) => states.push(state),
            Err(source) => {
                // The start failure is the error to report; finishing logs its own.
                let _ = finish_all(&plan, states, &process, &*variant);
                return Err(RunError::Start {
                    node: node.name.clone(),
                    source: redacted(source, &node.secrets),
                });
            }
        }
    }
    // Every node has its resources: a readiness probe may now look at the sources.
    process.metrics.gauge(crate::metrics::STARTED).set(1);
    let states = Arc::new(states);
    let process = Arc::new(process);
    let executed = {
        let plan = Arc::clone(&plan);
        let states = Arc::clone(&states);
        let process = Arc::clone(&process);
        let variant = Arc::clone(&variant);
        timely::execute(cluster.timely_config(), move |worker| {
            let worker_index = worker.index();
            let peers = worker.peers();
            worker.dataflow::<crate::operator::Time, _, _>(|scope| {
                let on = Worker {
                    scope,
                    index: worker_index,
                    peers,
                    process: &process,
                };
                render(&plan, &states, on, &*variant);
            });
            process.checkpoints.dataflow_built(process.workers);
        })
    };
    let worker_result = match executed {
        Err(e) => {
            process.shutdown.trigger();
            Err(RunError::Workers(e))
        }
        Ok(guards) => guards
            .join()
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), |e| Err(RunError::WorkerPanic(e))),
    };
    // Every worker has stopped and dropped its clones, so the states are ours again.
    let finished = match Arc::try_unwrap(states) {
        Ok(states) => finish_all(&plan, states, &process, &*variant),
        Err(_) => Err(RunError::WorkerPanic(
            "a worker still holds the nodes' state after stopping".into(),
        )),
    };
    worker_result.and(finished)
}

/// Finish the nodes whose states are given (the first `states.len()` of the plan), in
/// reverse order so a sink finishes before the source feeding it; the first error.
fn finish_all(
    plan: &Plan,
    states: Vec<AnyState>,
    process: &ProcessContext,
    variant: &dyn Variant,
) -> Result<(), RunError> {
    let mut first = Ok(());
    for (node, state) in plan.nodes.iter().zip(states).rev() {
        if variant.replaces(node) {
            continue;
        }
        let ctx = StartContext {
            node: &node.name,
            process,
        };
        if let Err(source) = node.operator.finish(state, &ctx) {
            let source = redacted(source, &node.secrets);
            tracing::error!(node = %node.name, "{source}");
            if first.is_ok() {
                first = Err(RunError::Finish {
                    node: node.name.clone(),
                    source,
                });
            }
        }
    }
    first
}

/// `error` with every value of `secrets` replaced by its `${VAR}` reference.
fn redacted(error: StartError, secrets: &[(String, String)]) -> StartError {
    let text = error.to_string();
    let clean = crate::spec::redact_secrets(&text, secrets);
    if clean == text {
        error
    } else {
        StartError::Other(clean)
    }
}

/// The worker a plan is rendered on.
struct Worker<'s> {
    scope: crate::operator::Scope<'s>,
    index: usize,
    peers: usize,
    process: &'s ProcessContext,
}

fn render(plan: &Plan, states: &[AnyState], on: Worker<'_>, variant: &dyn Variant) {
    let Worker {
        scope,
        index: worker,
        peers,
        process,
    } = on;
    // A replaced node renders alone: it is not of the kind its group shares.
    let fusion = plan.fusion_groups_among(|i| !variant.replaces(&plan.nodes[i]));
    let mut streams: Vec<Option<AnyStream<'_>>> = Vec::with_capacity(plan.nodes.len());
    // Each stream routed by sensor at most once, however many nodes need it so.
    let mut routed: HashMap<usize, Readings<'_>> = HashMap::new();
    // Outputs of nodes already rendered by the first node of their group.
    let mut rendered: HashMap<usize, Option<AnyStream<'_>>> = HashMap::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        if let Some(out) = rendered.remove(&i) {
            streams.push(variant.observe(node, out, process));
            continue;
        }
        let inputs: Vec<AnyStream<'_>> = node
            .inputs
            .iter()
            .map(|&j| {
                let stream = streams[j]
                    .clone()
                    .expect("the plan refuses inputs that are sinks");
                match (stream, node.routing) {
                    (AnyStream::Readings(s), Some(Routing::BySensor))
                        if !plan.nodes[j].partitioned =>
                    {
                        AnyStream::Readings(
                            routed
                                .entry(j)
                                .or_insert_with(|| route_by_sensor(s))
                                .clone(),
                        )
                    }
                    (stream, _) => stream,
                }
            })
            .collect();
        let ctx = RenderContext {
            scope,
            node: &node.name,
            worker,
            peers,
            process,
        };
        if variant.replaces(node) {
            let out = variant.render_replaced(node, &ctx, inputs);
            streams.push(variant.observe(node, out, process));
            continue;
        }
        if fusion[i].is_empty() {
            let out = node.operator.render(&states[i], &ctx, inputs);
            streams.push(variant.observe(node, out, process));
            continue;
        }
        let others: Vec<_> = fusion[i]
            .iter()
            .map(|&j| {
                let other = &plan.nodes[j];
                (&*other.operator, &states[j], other.name.as_str())
            })
            .collect();
        let mut outputs = node
            .operator
            .render_together(&states[i], &others, &ctx, inputs)
            .into_iter();
        streams.push(variant.observe(node, outputs.next().flatten(), process));
        for &j in &fusion[i] {
            rendered.insert(j, outputs.next().flatten());
        }
    }
}

/// The counter of records a node's output carried, `<node>.records_out`: what the
/// status page's edge rates and `smartgrid top` read. Kept only where taps are (a run
/// with a listener), so a run nobody watches pays nothing for it.
pub const RECORDS_OUT: &str = "records_out";

/// `out` with the node's [tap point](crate::tap) attached, if the run serves taps:
/// while nobody listens, one relaxed load per batch (and one more operator hop, which
/// passes each batch on without copying it), plus one relaxed add for
/// [`RECORDS_OUT`].
fn tapped<'s>(
    out: Option<AnyStream<'s>>,
    node: &crate::plan::PlannedNode,
    process: &ProcessContext,
) -> Option<AnyStream<'s>> {
    use timely::dataflow::operators::Inspect;
    let (Some(port), Some(taps)) = (node.output.as_ref(), &process.taps) else {
        return out;
    };
    let out = out?;
    let point = taps.point(&node.name, port);
    let records_out = process
        .metrics
        .counter(crate::metrics::metric_name(&node.name, RECORDS_OUT));
    Some(match out {
        AnyStream::Readings(stream) => AnyStream::Readings(stream.inspect_core(move |event| {
            if let Ok((time, batch)) = event {
                records_out.add(batch.len() as u64);
                if point.is_open() {
                    point.readings(time.least().copied().unwrap_or_default(), batch);
                }
            }
        })),
        AnyStream::Messages(stream) => AnyStream::Messages(stream.inspect_core(move |event| {
            if let Ok((time, batch)) = event {
                records_out.add(batch.len() as u64);
                if point.is_open() {
                    point.messages(time.least().copied().unwrap_or_default(), batch);
                }
            }
        })),
    })
}
