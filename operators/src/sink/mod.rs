//! `file` and `stdout` sinks: readings as InfluxDB line protocol, JSON lines or text.
//!
//! ```yaml
//! store:
//!   type: file
//!   input: means_1m
//!   path: data/means_1m.lp     # relative to the pipeline file; parent folders are created
//!   format: line_protocol      # line_protocol (default) | json | text
//!   measurement: means_1m      # default: the input node's name
//!   precision: ns              # s | ms | us | ns (line protocol timestamps)
//!   tags: { site: home }       # added to every point, besides sensor_id and pipeline
//! show:
//!   type: stdout
//!   input: means_10s
//!   format: text               # text (default) | json | line_protocol
//! ```
//! Both write from one worker (records are routed there), flush whenever the input
//! frontier advances, and flush and close when the input ends.

pub mod format;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Deserialize;
use smartgrid_runtime::operator::open_output;
use smartgrid_runtime::{
    AnyStream, Arity, Diagnostic, NodeOperator, OperatorFactory, PlanContext, PortType,
    ProcessContext, RenderContext, RenderError,
};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use format::{Encoder, Format, Precision};

/// Settings of a `file` sink.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file to append to; relative to the pipeline file's folder.
    pub path: PathBuf,
    /// `line_protocol` (default), `json` or `text`.
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
    /// Start the file afresh instead of appending. Default false.
    #[serde(default)]
    pub truncate: bool,
}

/// Settings of a `stdout` sink.
#[derive(Debug, Deserialize)]
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
}

/// The `file` sink factory.
pub struct FileSinkFactory;
/// The `stdout` sink factory.
pub struct StdoutSinkFactory;

/// The encoder a sink writes with: measurement defaulting to the input node's name, and
/// a `pipeline` tag unless `tags` sets one.
pub(crate) fn encoder(
    ctx: &PlanContext<'_>,
    format: Format,
    precision: Precision,
    measurement: Option<String>,
    tags: BTreeMap<String, String>,
) -> Result<Encoder, Vec<Diagnostic>> {
    let schema = ctx.readings_input()?;
    let measurement = measurement.unwrap_or_else(|| ctx.node.inputs[0].value.clone());
    let mut tags: Vec<(String, String)> = tags.into_iter().collect();
    if !tags.iter().any(|(k, _)| k == "pipeline") {
        tags.push(("pipeline".into(), ctx.pipeline.to_string()));
    }
    Ok(Encoder::new(
        format,
        precision,
        &measurement,
        &tags,
        &schema,
    ))
}

impl OperatorFactory for FileSinkFactory {
    fn kind(&self) -> &'static str {
        "file"
    }
    fn summary(&self) -> &'static str {
        "sink: append readings to a file as line protocol, JSON lines or text"
    }
    fn arity(&self) -> Arity {
        Arity::One
    }
    fn plan(&self, ctx: &PlanContext<'_>) -> Result<Arc<dyn NodeOperator>, Vec<Diagnostic>> {
        let config: FileSinkConfig = ctx.node.settings()?;
        let encoder = encoder(
            ctx,
            config.format,
            config.precision,
            config.measurement,
            config.tags,
        )?;
        Ok(Arc::new(WriterSink {
            encoder,
            target: Target::File {
                path: ctx.resolve(&config.path),
                truncate: config.truncate,
            },
            writer: OnceLock::new(),
        }))
    }
}

impl OperatorFactory for StdoutSinkFactory {
    fn kind(&self) -> &'static str {
        "stdout"
    }
    fn summary(&self) -> &'static str {
        "sink: print readings (text, JSON lines or line protocol)"
    }
    fn arity(&self) -> Arity {
        Arity::One
    }
    fn plan(&self, ctx: &PlanContext<'_>) -> Result<Arc<dyn NodeOperator>, Vec<Diagnostic>> {
        let config: StdoutSinkConfig = ctx.node.settings()?;
        let format = config.format.unwrap_or(Format::Text);
        let encoder = encoder(
            ctx,
            format,
            config.precision,
            config.measurement,
            config.tags,
        )?;
        Ok(Arc::new(WriterSink {
            encoder,
            target: Target::Stdout,
            writer: OnceLock::new(),
        }))
    }
}

enum Target {
    File { path: PathBuf, truncate: bool },
    Stdout,
}

type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

struct WriterSink {
    encoder: Encoder,
    target: Target,
    /// Opened once per process in `start`, written by worker 0.
    writer: OnceLock<SharedWriter>,
}

impl NodeOperator for WriterSink {
    fn output(&self) -> Option<PortType> {
        None
    }

    fn start(&self, _ctx: &ProcessContext) -> Result<(), RenderError> {
        let writer: Box<dyn Write + Send> = match &self.target {
            Target::Stdout => Box::new(std::io::stdout()),
            Target::File { path, truncate } => Box::new(open_output(path, *truncate)?),
        };
        let _ = self.writer.set(Arc::new(Mutex::new(writer)));
        Ok(())
    }

    fn render<'s>(
        &self,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Result<Option<AnyStream<'s>>, RenderError> {
        let input = AnyStream::single_readings(inputs)?;
        let writer = Arc::clone(
            self.writer
                .get()
                .ok_or_else(|| RenderError::Other("sink rendered before it was started".into()))?,
        );
        let encoder = self.encoder.clone();
        let written = ctx.process.metrics.counter(format!("{}.written", ctx.node));
        let node = ctx.node.to_string();
        let mut text = String::new();
        let mut failed = false;
        // Every record goes to worker 0, so lines from many workers never interleave.
        input.sink(Exchange::new(|_| 0), ctx.node, move |(input, frontier)| {
            let mut count = 0;
            input.for_each(|_time, data| {
                for reading in data.iter() {
                    encoder.encode(reading, &mut text);
                    count += 1;
                }
            });
            if text.is_empty() && !frontier.is_empty() {
                return;
            }
            let mut w = writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let result = w.write_all(text.as_bytes()).and_then(|()| w.flush());
            text.clear();
            match result {
                Ok(()) => {
                    written.add(count);
                    failed = false;
                }
                Err(e) if !failed => {
                    tracing::error!(node = %node, "cannot write: {e}");
                    failed = true;
                }
                Err(_) => {}
            }
        });
        Ok(None)
    }
}
