//! What a node kind implements: a factory that checks a node's settings and plans it,
//! and the planned operator that renders itself into the timely dataflow.
//!
//! Built-in kinds and users' own crates implement the same two traits and register the
//! factory by name in a [`Registry`](crate::registry::Registry).

use std::any::Any;
use std::sync::Arc;

use timely::dataflow::StreamVec;

use crate::context::ProcessContext;
use crate::diagnostic::Diagnostic;
use crate::record::{Message, Reading};
use crate::schema::Schema;
use crate::spec::NodeSpec;

/// Timely timestamps are event time in milliseconds since the Unix epoch.
pub type Time = u64;
/// The scope every node renders into.
pub type Scope<'s> = timely::dataflow::Scope<'s, Time>;
/// A stream of readings.
pub type Readings<'s> = StreamVec<'s, Time, Reading>;
/// A stream of raw payloads.
pub type Messages<'s> = StreamVec<'s, Time, Message>;

/// What a node's output carries, known at plan time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortType {
    /// Raw payloads (from a transport).
    Messages,
    /// Readings with this schema.
    Readings(Schema),
}

impl std::fmt::Display for PortType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortType::Messages => f.write_str("raw payloads"),
            PortType::Readings(schema) => write!(f, "readings [{schema}]"),
        }
    }
}

/// A rendered stream of either kind.
pub enum AnyStream<'s> {
    /// Raw payloads.
    Messages(Messages<'s>),
    /// Readings.
    Readings(Readings<'s>),
}

impl<'s> AnyStream<'s> {
    /// The readings stream, or an error naming what was found instead. The planner
    /// checks port types, so this failing is a bug in a factory, reported not panicked.
    pub fn into_readings(self) -> Result<Readings<'s>, RenderError> {
        match self {
            AnyStream::Readings(s) => Ok(s),
            AnyStream::Messages(_) => Err(RenderError::PortMismatch("readings", "raw payloads")),
        }
    }

    /// The one input of a single-input node, as readings.
    pub fn single_readings(inputs: Vec<AnyStream<'s>>) -> Result<Readings<'s>, RenderError> {
        inputs
            .into_iter()
            .next()
            .ok_or(RenderError::PortMismatch("readings", "nothing"))?
            .into_readings()
    }

    /// The one input of a single-input node, as raw payloads.
    pub fn single_messages(inputs: Vec<AnyStream<'s>>) -> Result<Messages<'s>, RenderError> {
        inputs
            .into_iter()
            .next()
            .ok_or(RenderError::PortMismatch("raw payloads", "nothing"))?
            .into_messages()
    }

    /// The raw payload stream, or an error naming what was found instead.
    pub fn into_messages(self) -> Result<Messages<'s>, RenderError> {
        match self {
            AnyStream::Messages(s) => Ok(s),
            AnyStream::Readings(_) => Err(RenderError::PortMismatch("raw payloads", "readings")),
        }
    }
}

/// How many inputs a node kind takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// A source: no inputs.
    Source,
    /// Exactly one input.
    One,
    /// One or more inputs.
    Many,
}

/// Everything a factory may look at while planning one node.
pub struct PlanContext<'a> {
    /// The node being planned.
    pub node: &'a NodeSpec,
    /// The output type of each input, in the order the node names them.
    pub inputs: &'a [PortType],
    /// Whether each input is partitioned by sensor (see [`NodeOperator::partitioned`]):
    /// a keyed operator reading such an input needs no exchange.
    pub partitioned: &'a [bool],
    /// The pipeline's name.
    pub pipeline: &'a str,
    /// The directory relative paths resolve against (the pipeline file's).
    pub base_dir: &'a std::path::Path,
}

impl PlanContext<'_> {
    /// The single input's schema, or a located diagnostic if the input carries raw
    /// payloads (a `decode` node is missing in between).
    pub fn readings_input(&self) -> Result<Schema, Vec<Diagnostic>> {
        match self.inputs.first() {
            Some(PortType::Readings(schema)) => Ok(schema.clone()),
            Some(PortType::Messages) => {
                let at = self.node.inputs.first().map_or(self.node.at, |i| i.at);
                Err(vec![
                    self.node
                        .error(at, "this input carries raw payloads, not readings")
                        .hint("put a `decode` node between the source and this node"),
                ])
            }
            None => Err(vec![
                self.node
                    .error(self.node.at, "this node needs an input")
                    .hint("add `input: <node>`"),
            ]),
        }
    }

    /// The single input, which must carry raw payloads.
    pub fn messages_input(&self) -> Result<(), Vec<Diagnostic>> {
        match self.inputs.first() {
            Some(PortType::Messages) => Ok(()),
            Some(PortType::Readings(schema)) => {
                let at = self.node.inputs.first().map_or(self.node.at, |i| i.at);
                Err(vec![
                    self.node
                        .error(
                            at,
                            format!("this input carries readings [{schema}], not raw payloads"),
                        )
                        .hint("a decoder reads from a source node (mqtt, simulate)"),
                ])
            }
            None => Err(vec![
                self.node
                    .error(self.node.at, "this node needs an input")
                    .hint("add `input: <node>`"),
            ]),
        }
    }

    /// Resolve a path from the pipeline file against its directory.
    pub fn resolve(&self, path: &std::path::Path) -> std::path::PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }
}

/// Turns one node's settings into a planned operator. One per node kind.
pub trait OperatorFactory: Send + Sync + 'static {
    /// The `type:` name.
    fn kind(&self) -> &'static str;
    /// One line for `smartgrid kinds` and the graph.
    fn summary(&self) -> &'static str;
    /// How many inputs the kind takes.
    fn arity(&self) -> Arity;
    /// Check the node's settings against its inputs and plan it. Report every problem
    /// found, each located at the key or value at fault.
    fn plan(&self, ctx: &PlanContext<'_>) -> Result<Arc<dyn NodeOperator>, Vec<Diagnostic>>;
}

/// A planned node: knows its output type and how to render itself.
pub trait NodeOperator: Send + Sync + 'static {
    /// What the node emits; `None` for sinks.
    fn output(&self) -> Option<PortType>;

    /// Whether every reading of a sensor leaves this node on worker
    /// `sensor.route_hash() % peers`, the worker keyed operators route it to. Keyed
    /// operators downstream then skip their exchange. Default: not partitioned.
    fn partitioned(&self) -> bool {
        false
    }

    /// Called once per process before any worker renders (start an embedded broker,
    /// open a file shared by all workers, …).
    fn start(&self, _ctx: &ProcessContext) -> Result<(), RenderError> {
        Ok(())
    }

    /// Build the node's timely operator(s) on one worker. Called once per worker.
    fn render<'s>(
        &self,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Result<Option<AnyStream<'s>>, RenderError>;

    /// A node that can share one operator with other nodes of its kind reading the same
    /// inputs returns itself here; [`render_fused`](Self::render_fused) then renders
    /// the group (see [`Plan::fusion_groups`](crate::plan::Plan::fusion_groups)).
    /// Default: rendered on its own.
    fn fusable(&self) -> Option<&dyn Any> {
        None
    }

    /// Render this node and `others` (nodes of the same kind, reading the same inputs,
    /// as their [`fusable`](Self::fusable) gave them) as one operator. Returns one
    /// output per node: this node's, then the others' in order. Called only for nodes
    /// whose `fusable` is `Some`.
    fn render_fused<'s>(
        &self,
        _ctx: &RenderContext<'s>,
        _others: &[Fused<'_>],
        _inputs: Vec<AnyStream<'s>>,
    ) -> Result<Vec<Option<AnyStream<'s>>>, RenderError> {
        Err(RenderError::Other(
            "this node kind does not render together with others".into(),
        ))
    }
}

/// Another node of a group rendered as one operator.
pub struct Fused<'a> {
    /// Its name (for its metrics).
    pub name: &'a str,
    /// The node, as its [`NodeOperator::fusable`] returned it.
    pub node: &'a dyn Any,
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

/// `stream` routed so each sensor's readings are on worker `route_hash % peers`; a
/// stream that already is (see [`NodeOperator::partitioned`]) is returned as it is.
pub fn route_by_sensor<'s>(stream: Readings<'s>, partitioned: bool) -> Readings<'s> {
    use timely::dataflow::operators::Exchange;
    if partitioned {
        stream
    } else {
        stream.exchange(|r: &Reading| r.sensor.route_hash())
    }
}

/// Open `path` for writing (appending unless `truncate`), creating its folders: how
/// sinks and dead-letter files open their output in [`NodeOperator::start`].
pub fn open_output(
    path: &std::path::Path,
    truncate: bool,
) -> Result<std::io::BufWriter<std::fs::File>, RenderError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| RenderError::Io {
            context: format!("cannot create {}", dir.display()),
            source,
        })?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!truncate)
        .truncate(truncate)
        .open(path)
        .map_err(|source| RenderError::Io {
            context: format!("cannot open {}", path.display()),
            source,
        })?;
    Ok(std::io::BufWriter::new(file))
}

/// A failure while starting or rendering a node.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A factory returned a stream of the wrong kind (a bug in that factory).
    #[error("expected a stream of {0}, found {1}")]
    PortMismatch(&'static str, &'static str),
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
