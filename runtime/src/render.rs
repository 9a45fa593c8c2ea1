//! Render a plan into a timely dataflow on every worker and run it to completion.
//! Rendering dispatches to each node's operator; it holds no operator logic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use timely::CommunicationConfig;

use crate::context::ProcessContext;
use crate::operator::{AnyStream, Fused, RenderContext, RenderError};
use crate::plan::Plan;

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

    fn timely_config(&self) -> timely::Config {
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
        source: RenderError,
    },
    /// A node could not be rendered.
    #[error("node `{node}`: {source}")]
    Render {
        /// The node.
        node: String,
        /// Why.
        source: RenderError,
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
pub fn run(plan: Arc<Plan>, cluster: &Cluster, process: ProcessContext) -> Result<(), RunError> {
    for node in &plan.nodes {
        node.operator
            .start(&process)
            .map_err(|source| RunError::Start {
                node: node.name.clone(),
                source,
            })?;
    }
    let failure: Arc<Mutex<Option<RunError>>> = Arc::new(Mutex::new(None));
    let process = Arc::new(process);
    let guards = {
        let failure = Arc::clone(&failure);
        timely::execute(cluster.timely_config(), move |worker| {
            let worker_index = worker.index();
            let peers = worker.peers();
            worker.dataflow::<crate::operator::Time, _, _>(|scope| {
                if let Err(e) = render(&plan, scope, worker_index, peers, &process) {
                    process.shutdown.trigger();
                    let mut slot = failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    slot.get_or_insert(e);
                }
            });
        })
        .map_err(RunError::Workers)?
    };
    for result in guards.join() {
        result.map_err(RunError::WorkerPanic)?;
    }
    let mut slot = failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match slot.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn render(
    plan: &Plan,
    scope: crate::operator::Scope<'_>,
    worker: usize,
    peers: usize,
    process: &ProcessContext,
) -> Result<(), RunError> {
    let fusion = plan.fusion_groups();
    let mut streams: Vec<Option<AnyStream<'_>>> = Vec::with_capacity(plan.nodes.len());
    // Outputs of nodes already rendered by the first node of their group.
    let mut rendered: HashMap<usize, Option<AnyStream<'_>>> = HashMap::new();
    for (i, node) in plan.nodes.iter().enumerate() {
        if let Some(out) = rendered.remove(&i) {
            streams.push(out);
            continue;
        }
        let failed = |source| RunError::Render {
            node: node.name.clone(),
            source,
        };
        let inputs = node
            .inputs
            .iter()
            .map(|&i| match &streams[i] {
                Some(AnyStream::Readings(s)) => Ok(AnyStream::Readings(s.clone())),
                Some(AnyStream::Messages(s)) => Ok(AnyStream::Messages(s.clone())),
                None => Err(failed(RenderError::Other(format!(
                    "input `{}` has no output",
                    plan.nodes[i].name
                )))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ctx = RenderContext {
            scope,
            node: &node.name,
            worker,
            peers,
            process,
        };
        if fusion[i].is_empty() {
            streams.push(node.operator.render(&ctx, inputs).map_err(failed)?);
            continue;
        }
        let others: Vec<Fused<'_>> = fusion[i]
            .iter()
            .filter_map(|&j| {
                let other = &plan.nodes[j];
                let node = other.operator.fusable()?;
                Some(Fused {
                    name: &other.name,
                    node,
                })
            })
            .collect();
        let mut outputs = node
            .operator
            .render_fused(&ctx, &others, inputs)
            .map_err(failed)?
            .into_iter();
        streams.push(outputs.next().flatten());
        for &j in &fusion[i] {
            rendered.insert(j, outputs.next().flatten());
        }
    }
    Ok(())
}
