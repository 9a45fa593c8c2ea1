//! `file` and `stdout` sinks: readings as InfluxDB line protocol, JSON lines or text.
//!
//! ```yaml
//! store:
//!   type: file
//!   input: means_1m
//!   path: data/means_1m.lp     # relative to `data_dir`; parent folders are created
//!   format: line_protocol      # line_protocol (default) | json | text | csv
//!   measurement: means_1m      # default: the input node's name
//!   precision: ns              # s | ms | us | ns (line protocol timestamps)
//!   tags: { site: home }       # added to every point, besides sensor_id and pipeline
//! show:
//!   type: stdout
//!   input: means_10s
//!   format: text               # text (default) | json | line_protocol
//! ```
//! Both encode on worker 0 (records are routed there) and write from their own writer
//! thread, fed by the sink toolkit's hand-off ([`crate::delivery`]): a slow disk or a
//! blocked terminal pauses the sources instead of a worker. The writer flushes whenever
//! it has nothing more to read, and flushes and closes when the input ends.
//!
//! A `file` sink takes part in checkpoints with its file's synced length, and a run
//! that restores a checkpoint first cuts the file back to it ([`output`]); `stdout`
//! takes no part (at least once after a crash).

pub mod output;

use std::collections::BTreeMap;
use std::io::Write;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::Deserialize;
use smartgrid_runtime::operator::open_output;
use smartgrid_runtime::{
    AnyStream, Claim, Inputs, Limit, Node, PlanContext, PortType, RenderContext, Resource, Routing,
    Schema, StartContext, StartError,
};

use crate::delivery::config::DEFAULT_QUEUE;
use crate::delivery::{Lines, SinkCheckpoint, SinkState, ThrottledLog, render_lines};
use crate::formats::{Encoder, Format, Precision};
use output::Output;

fn default_queue() -> usize {
    DEFAULT_QUEUE
}

/// Settings of a `file` sink.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to; relative to `data_dir` (default: the pipeline file's folder).
    pub path: PathBuf,
    /// `line_protocol` (default), `json`, `text` or `csv` (with a header line).
    #[serde(default)]
    pub format: Format,
    /// Measurement name; default: the input node's name.
    #[serde(default)]
    pub measurement: Option<String>,
    /// Line-protocol timestamp precision: `s`, `ms`, `us` or `ns` (default).
    #[serde(default)]
    pub precision: Precision,
    /// Extra tags on every point.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Start the file afresh instead of appending (and do not cut it back to the
    /// length of a checkpoint restored). Default false.
    #[serde(default)]
    pub truncate: bool,
    /// Chunks of lines waiting for the writer thread; when full, the sources pause.
    /// Default 64.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

/// Settings of a `stdout` sink.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {
    /// `text` (default), `json` or `line_protocol`.
    #[serde(default)]
    pub format: Option<Format>,
    /// Measurement name; default: the input node's name.
    #[serde(default)]
    pub measurement: Option<String>,
    /// Line-protocol timestamp precision.
    #[serde(default)]
    pub precision: Precision,
    /// Extra tags on every point.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Chunks of lines waiting for the writer thread; when full, the sources pause.
    /// Default 64.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

/// The encoder a sink writes with: measurement defaulting to the input node's name, and
/// a `pipeline` tag unless `tags` sets one.
pub(crate) fn encoder(
    ctx: &PlanContext<'_>,
    schema: &Schema,
    format: Format,
    precision: Precision,
    measurement: Option<String>,
    tags: BTreeMap<String, String>,
) -> Encoder {
    let measurement = measurement.unwrap_or_else(|| ctx.node.inputs[0].value.clone());
    let mut tags: Vec<(String, String)> = tags.into_iter().collect();
    if !tags.iter().any(|(k, _)| k == "pipeline") {
        tags.push(("pipeline".into(), ctx.pipeline.to_string()));
    }
    Encoder::new(format, precision, &measurement, &tags, schema)
}

/// What tells `file` and `stdout` apart: their name, their settings, and where the
/// lines go. Everything else is [`WriterSink`]'s.
pub trait WriterKind: Send + Sync + 'static {
    /// The `type:` name.
    const KIND: &'static str;
    /// One line for `smartgrid kinds`.
    const SUMMARY: &'static str;
    /// The node's settings.
    type Config: serde::de::DeserializeOwned + schemars::JsonSchema;
    /// The settings as the shared parts.
    fn parts(config: Self::Config, ctx: &PlanContext<'_>) -> Parts;
}

/// The settings both kinds have, read from either's config.
pub struct Parts {
    format: Format,
    precision: Precision,
    measurement: Option<String>,
    tags: BTreeMap<String, String>,
    queue: usize,
    target: Target,
}

/// The `file` kind.
pub struct File;
/// The `stdout` kind.
pub struct Stdout;

/// A planned `file` sink.
pub type FileSink = WriterSink<File>;
/// A planned `stdout` sink.
pub type StdoutSink = WriterSink<Stdout>;

impl WriterKind for File {
    const KIND: &'static str = "file";
    const SUMMARY: &'static str =
        "sink: append readings to a file as line protocol, JSON lines or text";
    type Config = FileSinkConfig;

    fn parts(config: FileSinkConfig, ctx: &PlanContext<'_>) -> Parts {
        Parts {
            format: config.format,
            precision: config.precision,
            measurement: config.measurement,
            tags: config.tags,
            queue: config.queue,
            target: Target::File {
                path: ctx.resolve_data(&config.path),
                truncate: config.truncate,
                at: ctx.node.key_at("path"),
            },
        }
    }
}

impl WriterKind for Stdout {
    const KIND: &'static str = "stdout";
    const SUMMARY: &'static str = "sink: print readings (text, JSON lines or line protocol)";
    type Config = StdoutSinkConfig;

    fn parts(config: StdoutSinkConfig, _ctx: &PlanContext<'_>) -> Parts {
        Parts {
            format: config.format.unwrap_or(Format::Text),
            precision: config.precision,
            measurement: config.measurement,
            tags: config.tags,
            queue: config.queue,
            target: Target::Stdout,
        }
    }
}

impl<K: WriterKind> Node for WriterSink<K> {
    const KIND: &'static str = K::KIND;
    const SUMMARY: &'static str = K::SUMMARY;
    const INPUTS: Inputs = Inputs::One(Routing::Any);
    const LIMITS: &'static [(&'static str, Limit)] = &[("queue", Limit::count(1, 65_536))];

    type Config = K::Config;
    type State = SinkState<Lines>;

    fn plan(config: K::Config, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let schema = ctx.readings_input()?;
        let parts = K::parts(config, ctx);
        let encoder = encoder(
            ctx,
            &schema,
            parts.format,
            parts.precision,
            parts.measurement,
            parts.tags,
        );
        Some(WriterSink {
            encoder,
            format: parts.format,
            queue: parts.queue,
            target: parts.target,
            kind: PhantomData,
        })
    }

    fn output(&self) -> Option<PortType> {
        None
    }

    fn resources(&self) -> Vec<Claim> {
        match &self.target {
            Target::File { path, at, .. } => vec![Claim {
                resource: Resource::FileWritten(path.clone()),
                at: *at,
            }],
            Target::Stdout => Vec::new(),
        }
    }

    /// Cut a file back to its checkpointed length, open the output (once per process;
    /// only worker 0's process writes) and start the writer thread.
    fn start(&self, ctx: &StartContext<'_>) -> Result<SinkState<Lines>, StartError> {
        if ctx.process_index != 0 {
            return Ok(SinkState::idle());
        }
        let checkpoint = match &self.target {
            Target::File { path, truncate, .. } => {
                let checkpoint = SinkCheckpoint::register(ctx);
                if !truncate {
                    let part = checkpoint.restored(&output::fingerprint(path, self.format));
                    let restored =
                        output::restore_length(path, part.as_deref()).map_err(|source| {
                            StartError::Io {
                                context: format!(
                                    "cannot cut {} back to its checkpointed length",
                                    path.display()
                                ),
                                source,
                            }
                        })?;
                    output::log_restored(ctx.node, path, &restored);
                }
                Some(checkpoint)
            }
            Target::Stdout => None,
        };
        let writer = self.open()?;
        let written = ctx.counter("written");
        let log = ThrottledLog::new(ctx.node);
        let format = self.format;
        SinkState::start(ctx, self.queue, checkpoint, move |inbox| {
            output::write_lines(inbox, writer, format, &written, log)
        })
    }

    fn render<'s>(
        &self,
        state: &Self::State,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        render_lines(
            ctx,
            ctx.single_readings(inputs),
            state,
            self.encoder.clone(),
        );
        None
    }

    /// Wait until the writer has written and flushed everything.
    fn finish(&self, state: Self::State, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        state.finish()
    }
}

/// Where the lines go.
enum Target {
    File {
        path: PathBuf,
        truncate: bool,
        at: smartgrid_runtime::Location,
    },
    Stdout,
}

/// A planned `file` or `stdout` sink: encode on worker 0, write from a writer thread.
pub struct WriterSink<K> {
    encoder: Encoder,
    format: Format,
    queue: usize,
    target: Target,
    kind: PhantomData<fn() -> K>,
}

impl<K> WriterSink<K> {
    /// The output, with a header written to a new (or emptied) file; appending runs add
    /// no second one.
    fn open(&self) -> Result<Output, StartError> {
        let Target::File { path, truncate, .. } = &self.target else {
            return Ok(Output::Stdout(std::io::stdout()));
        };
        let mut file = open_output(path, *truncate)?;
        let empty = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        if let Some(header) = self.encoder.header().filter(|_| empty) {
            file.write_all(header.as_bytes())
                .and_then(|()| file.flush())
                .map_err(|source| StartError::Io {
                    context: format!("cannot write {}", path.display()),
                    source,
                })?;
        }
        Ok(Output::File {
            path: path.clone(),
            file,
        })
    }
}
