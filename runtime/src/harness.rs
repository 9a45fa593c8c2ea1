//! Running a plan the way a pipeline test does (`smartgrid test`): deterministic, with no
//! server, no wall clock and nothing written where a real run writes.
//!
//! The planned pipeline runs as in `smartgrid run --drain`, except that
//!
//! * every **source** is replaced by a stand-in that emits the payloads the test gives
//!   for it (one batch, on worker 0) and then ends; a source the test gives nothing
//!   for ends at once, empty;
//! * every **sink** is replaced by a stand-in that records what reaches it; neither is
//!   started, so no broker, database, hub or file is touched;
//! * every other node (decoders, windows, models, comparisons) is started, rendered and
//!   finished as planned, and its output is captured;
//! * the sources count as not *live* (see [`Liveness`](crate::liveness::Liveness)),
//!   so event time never follows the wall clock: windows close on the readings' own
//!   times and, when every source has ended, all close (as at the end of a drained run).
//!
//! What each node emitted is returned as [`Captured`]; the caller compares it with the
//! test's expectations. Where a node writes its own files (dead letters), the caller
//! points the pipeline's `data_dir` and `state_dir` somewhere disposable before planning.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use timely::dataflow::operators::Inspect;
use timely::dataflow::operators::ToStream;

use crate::checkpoint::{Checkpoints, OnStop};
use crate::context::ProcessContext;
use crate::node::RenderContext;
use crate::operator::{AnyStream, PortType};
use crate::plan::{Plan, PlannedNode};
use crate::record::{Message, Reading};
use crate::render::{Cluster, RunError, Variant, run_variant};
use crate::state::{StateError, StateStore};

/// What the test feeds into the pipeline: payloads for source nodes, by node name.
pub type TestInputs = BTreeMap<String, Vec<Message>>;

/// What one node emitted during a test run (for a sink: what reached it).
#[derive(Clone, Debug, Default)]
pub struct NodeRecords {
    /// The names of the readings' values (empty for raw payloads).
    pub fields: Vec<String>,
    /// Readings, ordered by event time, then sensor (the order workers emit them in is
    /// not part of what a pipeline promises).
    pub readings: Vec<Reading>,
    /// Raw payloads, in the order they were emitted.
    pub messages: Vec<Message>,
}

impl NodeRecords {
    /// How many records: readings or payloads.
    pub fn len(&self) -> usize {
        self.readings.len() + self.messages.len()
    }

    /// Whether the node emitted nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outcome of a test run.
#[derive(Clone, Debug, Default)]
pub struct Captured {
    /// Every node's records, by node name (every node of the plan has an entry).
    pub nodes: BTreeMap<String, NodeRecords>,
    /// The run's counters (`<node>.<what>`, e.g. `readings.errors`) at its end.
    pub counters: BTreeMap<String, u64>,
}

/// Why a test run could not be made or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Inputs were given for a node that is not in the plan.
    #[error("`{0}` is not a node of this pipeline")]
    UnknownNode(String),
    /// Inputs were given for a node that reads other nodes.
    #[error("`{0}` is not a source node: inputs go into sources (mqtt, simulate)")]
    NotASource(String),
    /// Inputs were given for a source whose records leave the dataflow (a `simulate`
    /// that publishes to a broker).
    #[error(
        "source `{0}` emits nothing into the pipeline (it publishes to a broker); give the inputs to the node that subscribes to it"
    )]
    NoPayloadOutput(String),
    /// The disposable state directory could not be opened.
    #[error("the state directory: {0}")]
    State(#[from] StateError),
    /// The pipeline failed while running.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Check that `node` can take payloads from a test: a source of raw payloads.
pub fn check_input(plan: &Plan, node: &str) -> Result<(), HarnessError> {
    let planned = plan
        .nodes
        .iter()
        .find(|n| n.name == node)
        .ok_or_else(|| HarnessError::UnknownNode(node.to_owned()))?;
    if planned.routing.is_some() {
        return Err(HarnessError::NotASource(node.to_owned()));
    }
    if planned.output != Some(PortType::Messages) {
        return Err(HarnessError::NoPayloadOutput(node.to_owned()));
    }
    Ok(())
}

/// Run `plan` with its sources fed `inputs` and its sinks recording, on one worker, until
/// every input has gone through and every window has closed.
pub fn run_test(plan: Arc<Plan>, inputs: TestInputs) -> Result<Captured, HarnessError> {
    for node in inputs.keys() {
        check_input(&plan, node)?;
    }
    let shutdown = crate::shutdown::Shutdown::new();
    let store = StateStore::open(&plan.state_dir, &plan.name, 0, 1)?;
    // Drain: at the end of input every window flushes, none is kept for a next run.
    let checkpoints = Arc::new(Checkpoints::new(
        store,
        OnStop::Drain,
        None,
        shutdown.clone(),
    )?);
    let metrics = crate::metrics::Metrics::default();
    let pressure = crate::pressure::Pressure::new();
    let liveness = crate::liveness::Liveness::new(pressure.clone());
    // Held for the whole run: a source that is never live keeps the watermark on the
    // readings' own times (see the module docs).
    let not_live = liveness.source();
    let process = ProcessContext {
        pipeline: plan.name.clone(),
        base_dir: plan.base_dir.clone(),
        metrics: metrics.clone(),
        shutdown,
        pressure,
        liveness,
        checkpoints,
        workers: 1,
        process_index: 0,
        process_count: 1,
        taps: None,
    };
    let capture = Arc::new(Capture {
        inputs,
        seen: Mutex::default(),
    });
    let variant: Arc<dyn Variant> = Arc::new(Arc::clone(&capture));
    run_variant(Arc::clone(&plan), &Cluster::local(1), process, variant)?;
    drop(not_live);
    let mut seen =
        std::mem::take(&mut *capture.seen.lock().unwrap_or_else(PoisonError::into_inner));
    let mut captured = Captured {
        nodes: BTreeMap::new(),
        counters: metrics.snapshot().into_iter().collect(),
    };
    for node in &plan.nodes {
        let mut records = seen.remove(&node.name).unwrap_or_default();
        records.fields = fields_of(&plan, node);
        records
            .readings
            .sort_by(|a, b| (a.time_ms, a.sensor.as_str()).cmp(&(b.time_ms, b.sensor.as_str())));
        captured.nodes.insert(node.name.clone(), records);
    }
    Ok(captured)
}

/// The names of the values `node` emits (for a sink: that reach it); `None` if there is
/// no such node, empty if its records are raw payloads.
pub fn record_fields(plan: &Plan, node: &str) -> Option<Vec<String>> {
    let node = plan.nodes.iter().find(|n| n.name == node)?;
    Some(fields_of(plan, node))
}

/// The field names of what `node` emits, or for a sink, of what reaches it.
fn fields_of(plan: &Plan, node: &PlannedNode) -> Vec<String> {
    let port = match &node.output {
        Some(port) => Some(port),
        None => node
            .inputs
            .first()
            .and_then(|&i| plan.nodes[i].output.as_ref()),
    };
    match port {
        Some(PortType::Readings(schema)) => (0..schema.len())
            .map(|i| schema.name(i).to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

/// The test run's [`Variant`]: stand-ins for sources and sinks, every output captured.
struct Capture {
    inputs: TestInputs,
    seen: Mutex<BTreeMap<String, NodeRecords>>,
}

impl Capture {
    /// `stream` with what passes through it added to `node`'s records.
    fn record<'s>(self: &Arc<Self>, node: &str, stream: AnyStream<'s>) -> AnyStream<'s> {
        let me = Arc::clone(self);
        let node = node.to_owned();
        match stream {
            AnyStream::Readings(s) => AnyStream::Readings(s.inspect_core(move |event| {
                if let Ok((_, batch)) = event {
                    me.with(&node, |r| r.readings.extend_from_slice(batch));
                }
            })),
            AnyStream::Messages(s) => AnyStream::Messages(s.inspect_core(move |event| {
                if let Ok((_, batch)) = event {
                    me.with(&node, |r| r.messages.extend_from_slice(batch));
                }
            })),
        }
    }

    fn with(&self, node: &str, add: impl FnOnce(&mut NodeRecords)) {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        add(seen.entry(node.to_owned()).or_default());
    }
}

/// Sources and sinks are replaced; a node that is both (no input, no output: a
/// `simulate` publishing to a broker) is replaced as a source.
fn is_replaced(node: &PlannedNode) -> bool {
    node.routing.is_none() || node.output.is_none()
}

impl Variant for Arc<Capture> {
    fn replaces(&self, node: &PlannedNode) -> bool {
        is_replaced(node)
    }

    fn render_replaced<'s>(
        &self,
        node: &PlannedNode,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        if node.routing.is_none() {
            let port = node.output.as_ref()?;
            // One batch on worker 0: the same records whatever the number of workers.
            let given = match ctx.worker {
                0 => self.inputs.get(&node.name).cloned().unwrap_or_default(),
                _ => Vec::new(),
            };
            return Some(match port {
                PortType::Messages => AnyStream::Messages(given.to_stream(ctx.scope)),
                // Only payload sources take test inputs (see `check_input`).
                PortType::Readings(_) => {
                    AnyStream::Readings(Vec::<Reading>::new().to_stream(ctx.scope))
                }
            });
        }
        for input in inputs {
            // What reaches the sink is recorded under the sink's name; the stream ends
            // here.
            let _ = self.record(&node.name, input);
        }
        None
    }

    fn observe<'s>(
        &self,
        node: &PlannedNode,
        out: Option<AnyStream<'s>>,
        _: &ProcessContext,
    ) -> Option<AnyStream<'s>> {
        Some(self.record(&node.name, out?))
    }
}
