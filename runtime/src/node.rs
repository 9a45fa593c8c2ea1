//! The node lifecycle: what a node kind implements.
//!
//! ```text
//!  YAML ──serde──▶ Config ──plan (once, at validate)──▶ Node ──start (once per process)──▶ State
//!                                                        │                                  │
//!                                                        └──────── render (per worker) ◀────┘
//!                                                                  finish (once, after the run)
//! ```
//!
//! A node kind is one type implementing [`Node`].
//!
//! - [`Node::plan`] turns the node's [`Config`](Node::Config) into typed options
//!   once and reports every problem into the shared [`PlanContext`]; nothing is opened
//!   or connected.
//! - [`Node::resources`] names what the node will claim (ports, files, spool
//!   directories, MQTT client ids); two nodes claiming the same one are refused at
//!   validate time.
//! - [`Node::start`] runs once per process before timely starts: every fallible
//!   acquisition (connect, open, bind, lock) happens here and its result is owned by the
//!   returned [`State`](Node::State). A failure stops the run before any worker exists.
//! - [`Node::render`] runs on every worker and cannot fail, so every worker builds the
//!   same dataflow.
//! - [`Node::finish`] runs once after every worker has stopped: join threads, wait for
//!   acknowledgements, report what could not be delivered.
//!
//! Inputs declare their [`Routing`]: the renderer inserts the exchange by sensor where
//! a node needs it and the stream is not already partitioned, once per stream however
//! many nodes read it, and infers whether each output is partitioned.
//!
//! ```
//! use smartgrid_runtime::node::{Inputs, Node, PlanContext, RenderContext, Routing, StartContext, StartError};
//! use smartgrid_runtime::{AnyStream, PortType};
//! use smartgrid_runtime::timely::dataflow::operators::vec::Map;
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct ScaleConfig {
//!     /// What to multiply by.
//!     factor: f64,
//! }
//!
//! /// `scale`: multiplies every field by a factor.
//! struct Scale { factor: f64, output: PortType }
//!
//! impl Node for Scale {
//!     const KIND: &'static str = "scale";
//!     const SUMMARY: &'static str = "multiplies every field";
//!     const INPUTS: Inputs = Inputs::One(Routing::Any);
//!     type Config = ScaleConfig;
//!     type State = ();
//!
//!     fn plan(config: ScaleConfig, ctx: &mut PlanContext<'_>) -> Option<Scale> {
//!         let schema = ctx.readings_input()?;
//!         Some(Scale { factor: config.factor, output: PortType::Readings(schema) })
//!     }
//!     fn output(&self) -> Option<PortType> { Some(self.output.clone()) }
//!     fn start(&self, _: &StartContext<'_>) -> Result<(), StartError> { Ok(()) }
//!     fn render<'s>(&self, _: &(), ctx: &RenderContext<'s>, inputs: Vec<AnyStream<'s>>) -> Option<AnyStream<'s>> {
//!         let factor = self.factor;
//!         let scaled = ctx.single_readings(inputs).map(move |mut r| {
//!             for v in r.values.iter_mut() { *v *= factor; }
//!             r
//!         });
//!         Some(AnyStream::Readings(scaled))
//!     }
//! }
//!
//! let mut registry = smartgrid_runtime::Registry::new();
//! registry.register::<Scale>();
//! assert_eq!(registry.kinds().collect::<Vec<_>>(), ["scale"]);
//! ```

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::context::ProcessContext;
use crate::diagnostic::{Diagnostic, Location};
pub use crate::metrics::metric_name;
use crate::operator::{AnyStream, Messages, PortType, Readings, Scope};
use crate::schema::Schema;
use crate::spec::NodeSpec;

/// How a node reads one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Wherever the records are: the node keeps no state per sensor.
    Any,
    /// Every reading of a sensor on the worker `sensor.route_hash() % peers`: the node
    /// keeps state per sensor (windows, lag histories, joins).
    BySensor,
}

/// The inputs a node kind takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inputs {
    /// A source: no inputs.
    None,
    /// Exactly one input.
    One(Routing),
    /// One or more inputs, all read the same way.
    Many(Routing),
}

impl Inputs {
    /// How each input is read, or `None` for a source.
    pub fn routing(self) -> Option<Routing> {
        match self {
            Inputs::None => None,
            Inputs::One(r) | Inputs::Many(r) => Some(r),
        }
    }
}

/// Whether a source's output is partitioned by sensor. Nodes with inputs do not say:
/// their output is partitioned when every input they read is (after the exchanges the
/// renderer inserts for [`Routing::BySensor`]), because a node never moves a record to
/// another worker itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SourcePartitioning {
    /// Records appear on any worker (e.g. an MQTT subscription on worker 0).
    #[default]
    Unpartitioned,
    /// Each worker emits exactly the sensors it owns (a simulator's share).
    BySensor,
}

/// Something a node claims when it starts. Two nodes may not claim the same one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// A TCP port this process listens on.
    ListenPort(u16),
    /// A file this process writes (appends to or replaces).
    FileWritten(PathBuf),
    /// A directory this process owns alone (a spool).
    Directory(PathBuf),
    /// An MQTT client id on a broker: a second connection with the same id knocks the
    /// first one off.
    MqttClientId {
        /// The broker (`host:port`, or `embedded`).
        broker: String,
        /// The client id.
        client_id: String,
    },
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resource::ListenPort(p) => write!(f, "listening port {p}"),
            Resource::FileWritten(p) => write!(f, "output file {}", p.display()),
            Resource::Directory(p) => write!(f, "directory {}", p.display()),
            Resource::MqttClientId { broker, client_id } => {
                write!(f, "MQTT client id `{client_id}` on {broker}")
            }
        }
    }
}

/// A claimed resource and where in the node's settings it was named.
#[derive(Clone, Debug)]
pub struct Claim {
    /// What is claimed.
    pub resource: Resource,
    /// The key that names it (the node's name if no key does).
    pub at: Location,
}

/// A node kind: its settings, how they are planned, and the planned node's lifecycle.
/// The implementing type is the planned node; register it with
/// [`Registry::register`](crate::Registry::register).
pub trait Node: Send + Sync + Sized + 'static {
    /// The `type:` name.
    const KIND: &'static str;
    /// One line for `smartgrid kinds` and the graph.
    const SUMMARY: &'static str;
    /// The inputs it takes and how it reads them.
    const INPUTS: Inputs;
    /// The keys [`Config`](Self::Config) reads, when the kind reads the rest itself
    /// (e.g. a format's own keys, through [`PlanContext::settings_except`]). `None`:
    /// `Config` reads every key.
    const CONFIG_KEYS: Option<&'static [&'static str]> = None;
    /// Keys an earlier version used, each with what replaced it (`("shutdown_timeout",
    /// "drain_timeout")`): a pipeline still using one is refused with an error at that key
    /// that names the new one, before `Config` is read.
    const RENAMED_KEYS: &'static [(&'static str, &'static str)] = &[];
    /// The allowed range of each numeric setting (`("drain_timeout", Limit::duration(..))`,
    /// nested keys joined by `.`): a value outside it is refused at validate time with the
    /// range, so no value that passes `validate` can make a run allocate without bound or
    /// wait for ever.
    const LIMITS: &'static [(&'static str, Limit)] = &[];

    /// The node's settings as written in YAML (every key but `type`, `input`, `inputs`):
    /// a serde struct with `deny_unknown_fields` whose doc comments are the user docs.
    ///
    /// Its `JsonSchema` (derived next to `Deserialize`, `#[derive(schemars::JsonSchema)]`)
    /// is the kind's part of `smartgrid schema` and what `smartgrid kinds KIND` prints.
    type Config: DeserializeOwned + schemars::JsonSchema;
    /// What [`start`](Self::start) acquired for this process, shared by its workers.
    type State: Send + Sync + 'static;

    /// The JSON Schema of the node's settings. The default is [`Config`](Self::Config)'s;
    /// a kind that reads more keys itself (see [`CONFIG_KEYS`](Self::CONFIG_KEYS)) adds
    /// them.
    fn config_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Self::Config as schemars::JsonSchema>::json_schema(generator)
    }

    /// Check `config` against the inputs and plan the node: typed options, made once.
    /// Every problem goes into `ctx` (which locates and collects them); return `None`
    /// if the node cannot be planned. A node returned while problems were reported is
    /// dropped.
    fn plan(config: Self::Config, ctx: &mut PlanContext<'_>) -> Option<Self>;

    /// What the node emits; `None` for sinks.
    fn output(&self) -> Option<PortType>;

    /// For sources: whether each worker emits only its own sensors.
    fn source_partitioning(&self) -> SourcePartitioning {
        SourcePartitioning::Unpartitioned
    }

    /// For sources: whether it keeps a log it can replay from a checkpoint's position
    /// (an `mqtt` source with `wal:`; see [`crate::checkpoint`]).
    fn replayable(&self) -> bool {
        false
    }

    /// The MQTT topics it publishes to or subscribes to: paths outside the dataflow,
    /// which `smartgrid graph` draws through their broker (a publishing `simulate`
    /// feeding an `mqtt` source).
    fn broker_links(&self) -> Vec<BrokerLink> {
        Vec::new()
    }

    /// What the node claims when it starts (see [`Resource`]).
    fn resources(&self) -> Vec<Claim> {
        Vec::new()
    }

    /// Acquire everything that can fail, once per process, before any worker starts.
    fn start(&self, ctx: &StartContext<'_>) -> Result<Self::State, StartError>;

    /// Build the node's timely operator(s) on one worker. `inputs` are routed as the
    /// kind declared, in the order the node names them, of the types the plan checked.
    fn render<'s>(
        &self,
        state: &Self::State,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>>;

    /// After every worker has stopped: release what `start` acquired, waiting until it
    /// has delivered what it holds. An error is reported and makes the run fail.
    fn finish(&self, _state: Self::State, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        Ok(())
    }

    /// Whether nodes of this kind that read the same inputs share one operator (see
    /// [`render_together`](Self::render_together)).
    fn shares_operator(&self) -> bool {
        false
    }

    /// Render `group` (this node first, then the others of its kind reading the same
    /// inputs, each with its state and name) as one operator: one output per member.
    /// Called only when [`shares_operator`](Self::shares_operator) is true.
    fn render_together<'s>(
        group: &[Member<'s, Self>],
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Vec<Option<AnyStream<'s>>> {
        // Rendering them one by one is always correct, only slower.
        group
            .iter()
            .map(|m| {
                let ctx = ctx.for_node(m.name);
                m.node.render(m.state, &ctx, inputs.clone())
            })
            .collect()
    }
}

/// The allowed range of a numeric setting (see [`Node::LIMITS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A duration (`10s`), from `min` to `max`.
    Duration {
        /// The least allowed.
        min: std::time::Duration,
        /// The most allowed.
        max: std::time::Duration,
    },
    /// A count (a whole number), from `min` to `max`.
    Count {
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
    /// A size in bytes (`512MiB`), from `min` to `max`.
    Bytes {
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
}

impl Limit {
    /// Durations from `min` to `max`, in seconds.
    pub const fn seconds(min: u64, max: u64) -> Limit {
        Limit::Duration {
            min: std::time::Duration::from_secs(min),
            max: std::time::Duration::from_secs(max),
        }
    }

    /// Durations from `min_ms` to `max` seconds.
    pub const fn millis_to_seconds(min_ms: u64, max: u64) -> Limit {
        Limit::Duration {
            min: std::time::Duration::from_millis(min_ms),
            max: std::time::Duration::from_secs(max),
        }
    }

    /// Counts from `min` to `max`.
    pub const fn count(min: u64, max: u64) -> Limit {
        Limit::Count { min, max }
    }

    /// Sizes from `min` to `max` bytes.
    pub const fn bytes(min: u64, max: u64) -> Limit {
        Limit::Bytes { min, max }
    }

    /// Whether `text` (after `${VAR}` substitution) is outside the range, and the range
    /// in words. A value that does not parse is left to the deserializer to report.
    pub fn check(&self, text: &str) -> Option<String> {
        use crate::spec::{ByteSize, Duration};
        let (inside, range) = match *self {
            Limit::Duration { min, max } => {
                let value = text.parse::<Duration>().ok()?.0;
                (
                    (min..=max).contains(&value),
                    format!("from {} to {}", Duration(min), Duration(max)),
                )
            }
            Limit::Count { min, max } => {
                let value = text.trim().parse::<u64>().ok()?;
                ((min..=max).contains(&value), format!("from {min} to {max}"))
            }
            Limit::Bytes { min, max } => {
                let value = text.parse::<ByteSize>().ok()?.0;
                (
                    (min..=max).contains(&value),
                    format!("from {} to {}", ByteSize(min), ByteSize(max)),
                )
            }
        };
        (!inside).then_some(range)
    }
}

/// A node of a group rendered as one operator.
pub struct Member<'a, N: Node> {
    /// The node.
    pub node: &'a N,
    /// Its state.
    pub state: &'a N::State,
    /// Its name (for its metrics and operator names).
    pub name: &'a str,
}

/// Everything a kind may look at while planning one node; collects its problems.
pub struct PlanContext<'a> {
    /// The node being planned.
    pub node: &'a NodeSpec,
    /// The output type of each input, in the order the node names them.
    pub inputs: &'a [PortType],
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The directory relative paths of files the pipeline reads resolve against (the
    /// pipeline file's).
    pub base_dir: &'a Path,
    data_dir: &'a Path,
    state_dir: &'a Path,
    pub(crate) problems: Vec<Diagnostic>,
}

impl<'a> PlanContext<'a> {
    pub(crate) fn new(
        node: &'a NodeSpec,
        inputs: &'a [PortType],
        spec: &'a crate::spec::PipelineSpec,
    ) -> Self {
        PlanContext {
            node,
            inputs,
            pipeline: &spec.name,
            base_dir: &spec.base_dir,
            data_dir: &spec.data_dir,
            state_dir: &spec.state_dir,
            problems: Vec::new(),
        }
    }

    /// The pipeline's data directory (`data_dir:`, resolved): what a run writes goes
    /// under it unless the file gives an absolute path.
    pub fn data_dir(&self) -> &Path {
        self.data_dir
    }

    /// The pipeline's state directory (`state_dir:`, resolved), where what outlives a
    /// run is kept: a node may keep its own files under `p<process>/<node>/`.
    pub fn state_dir(&self) -> &Path {
        self.state_dir
    }

    /// Report a problem at `at` (a key or value's position); returns the diagnostic so a
    /// hint can be added.
    pub fn error(&mut self, at: Location, message: impl Into<String>) -> &mut Diagnostic {
        let d = self.node.error(at, message);
        self.problems.push(d);
        self.problems.last_mut().expect("just pushed")
    }

    /// Report a problem about `key` (at the key, or at the node's name if it is absent).
    pub fn error_at_key(&mut self, key: &str, message: impl Into<String>) -> &mut Diagnostic {
        let at = self.node.key_at(key);
        self.error(at, message)
    }

    /// Report diagnostics made elsewhere (they name this node already).
    pub fn report(&mut self, problems: impl IntoIterator<Item = Diagnostic>) {
        self.problems.extend(problems);
    }

    /// The value, or `None` with its diagnostics reported.
    pub fn keep<T>(&mut self, result: Result<T, Vec<Diagnostic>>) -> Option<T> {
        result.map_err(|e| self.report(e)).ok()
    }

    /// Whether any problem was reported so far.
    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }

    /// The settings this kind's [`Config`](Node::Config) does not read, as `T`
    /// (see [`Node::CONFIG_KEYS`]); problems are reported.
    pub fn settings_except<T: DeserializeOwned>(&mut self, keys: &[&str]) -> Option<T> {
        let rest = self.node.select(|k| !keys.contains(&k));
        let result = rest.settings();
        self.keep(result)
    }

    /// The single input's schema; a problem if it carries raw payloads (a `decode` node
    /// is missing in between).
    pub fn readings_input(&mut self) -> Option<Schema> {
        self.readings_input_at(0)
    }

    /// Input `k`'s schema; a problem if it carries raw payloads.
    pub fn readings_input_at(&mut self, k: usize) -> Option<Schema> {
        match self.inputs.get(k) {
            Some(PortType::Readings(schema)) => Some(schema.clone()),
            Some(PortType::Messages) => {
                let at = self.node.inputs.get(k).map_or(self.node.at, |i| i.at);
                self.error(at, "this input carries raw payloads, not readings")
                    .with_hint("put a `decode` node between the source and this node");
                None
            }
            None => None,
        }
    }

    /// The single input, which must carry raw payloads.
    pub fn messages_input(&mut self) -> Option<()> {
        match self.inputs.first() {
            Some(PortType::Messages) => Some(()),
            Some(PortType::Readings(schema)) => {
                let at = self.node.inputs.first().map_or(self.node.at, |i| i.at);
                let message = format!("this input carries readings [{schema}], not raw payloads");
                self.error(at, message)
                    .with_hint("a decoder reads from a source node (mqtt, simulate)");
                None
            }
            None => None,
        }
    }

    /// Resolve the path of a file the pipeline reads (a model, a certificate) against
    /// the pipeline file's directory: they travel with the file.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Resolve the path of something the run writes (a file sink, a spool, a dead-letter
    /// file, a write-ahead log) against the data directory, so that one `data_dir:`
    /// moves all of it.
    pub fn resolve_data(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.data_dir.join(path)
        }
    }
}

/// What a node starts and finishes with: the process's services and the node's name.
/// It dereferences to the [`ProcessContext`].
pub struct StartContext<'a> {
    /// The node's name.
    pub node: &'a str,
    /// Process-wide services.
    pub process: &'a ProcessContext,
}

impl StartContext<'_> {
    /// The counter `<node>.<what>` of this node (see [`metric_name`]).
    pub fn counter(&self, what: &str) -> crate::metrics::Counter {
        self.process.metrics.counter(metric_name(self.node, what))
    }

    /// The gauge `<node>.<what>` of this node (see [`metric_name`]).
    pub fn gauge(&self, what: &str) -> crate::metrics::Gauge {
        self.process.metrics.gauge(metric_name(self.node, what))
    }
}

impl std::ops::Deref for StartContext<'_> {
    type Target = ProcessContext;

    fn deref(&self) -> &ProcessContext {
        self.process
    }
}

/// What a node renders with on one worker.
pub struct RenderContext<'s> {
    /// The worker's scope.
    pub scope: Scope<'s>,
    /// The node's name.
    pub node: &'s str,
    /// This worker's index.
    pub worker: usize,
    /// How many workers in all (across processes).
    pub peers: usize,
    /// Process-wide services.
    pub process: &'s ProcessContext,
}

impl<'s> RenderContext<'s> {
    /// The same worker, rendering node `name`.
    pub fn for_node(&self, name: &'s str) -> RenderContext<'s> {
        RenderContext {
            scope: self.scope,
            node: name,
            worker: self.worker,
            peers: self.peers,
            process: self.process,
        }
    }

    /// The index of this process's first worker: where a per-process singleton (a
    /// subscription, a sink's writer) runs, and where records bound for it are sent.
    pub fn process_first_worker(&self) -> usize {
        self.process.process_index * self.process.workers
    }

    /// This node's state on this worker: what the previous run saved, and where to
    /// save what should outlive this one (see [`crate::checkpoint`]). Call it once per
    /// operator: each call is a participant every checkpoint waits for.
    pub fn state(&self) -> crate::checkpoint::NodeState {
        self.process
            .checkpoints
            .node(self.node, self.worker, self.peers)
    }

    /// The counter `<node>.<what>` of this node (see [`metric_name`]).
    pub fn counter(&self, what: &str) -> crate::metrics::Counter {
        self.process.metrics.counter(metric_name(self.node, what))
    }

    /// The gauge `<node>.<what>` of this node (see [`metric_name`]).
    pub fn gauge(&self, what: &str) -> crate::metrics::Gauge {
        self.process.metrics.gauge(metric_name(self.node, what))
    }

    /// The one input of a single-input node, as readings (the plan checked the type).
    pub fn single_readings(&self, inputs: Vec<AnyStream<'s>>) -> Readings<'s> {
        match inputs.into_iter().next() {
            Some(AnyStream::Readings(s)) => s,
            _ => unreachable!("the plan checked that `{}` reads readings", self.node),
        }
    }

    /// The one input of a single-input node, as raw payloads (the plan checked the type).
    pub fn single_messages(&self, inputs: Vec<AnyStream<'s>>) -> Messages<'s> {
        match inputs.into_iter().next() {
            Some(AnyStream::Messages(s)) => s,
            _ => unreachable!("the plan checked that `{}` reads payloads", self.node),
        }
    }
}

/// A failure while starting or finishing a node.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An I/O failure (opening a file, binding a port…).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Anything else, already described.
    #[error("{0}")]
    Other(String),
}

impl StartError {
    /// A failure described by `message`.
    pub fn other(message: impl std::fmt::Display) -> Self {
        StartError::Other(message.to_string())
    }
}

/// A node's path through an MQTT broker (see [`Node::broker_links`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerLink {
    /// The broker as shown to people: `embedded` or `mqtt://host:port`, no credentials.
    pub broker: String,
    /// The topic (publishing) or filter (subscribing).
    pub topic: String,
    /// Whether the node publishes to the broker (else it subscribes).
    pub publishes: bool,
}
