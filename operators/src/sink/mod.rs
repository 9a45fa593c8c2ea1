//! `file` and `stdout` sinks: readings as InfluxDB line protocol, JSON lines or text.
//!
//! ```yaml
//! store:
//!   type: file
//!   input: means_1m
//!   path: data/means_1m.lp     # relative to the pipeline file; parent folders are created
//!   format: line_protocol      # line_protocol (default) | json | text | csv
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
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use smartgrid_runtime::operator::open_output;
use smartgrid_runtime::{
    AnyStream, Claim, Inputs, Node, PlanContext, PortType, RenderContext, Resource, Routing,
    Schema, StartContext, StartError,
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

/// A planned `file` sink.
pub struct FileSink(WriterSink);

impl Node for FileSink {
    const KIND: &'static str = "file";
    const SUMMARY: &'static str =
        "sink: append readings to a file as line protocol, JSON lines or text";
    const INPUTS: Inputs = Inputs::One(Routing::Any);

    type Config = FileSinkConfig;
    type State = SharedWriter;

    fn plan(config: FileSinkConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let schema = ctx.readings_input()?;
        let encoder = encoder(
            ctx,
            &schema,
            config.format,
            config.precision,
            config.measurement,
            config.tags,
        );
        Some(FileSink(WriterSink {
            encoder,
            target: Target::File {
                path: ctx.resolve(&config.path),
                truncate: config.truncate,
                at: ctx.node.key_at("path"),
            },
        }))
    }

    fn output(&self) -> Option<PortType> {
        None
    }

    fn resources(&self) -> Vec<Claim> {
        self.0.resources()
    }

    fn start(&self, _ctx: &StartContext<'_>) -> Result<SharedWriter, StartError> {
        self.0.start()
    }

    fn render<'s>(
        &self,
        writer: &SharedWriter,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        self.0.render(writer, ctx, inputs);
        None
    }
}

/// A planned `stdout` sink.
pub struct StdoutSink(WriterSink);

impl Node for StdoutSink {
    const KIND: &'static str = "stdout";
    const SUMMARY: &'static str = "sink: print readings (text, JSON lines or line protocol)";
    const INPUTS: Inputs = Inputs::One(Routing::Any);

    type Config = StdoutSinkConfig;
    type State = SharedWriter;

    fn plan(config: StdoutSinkConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let schema = ctx.readings_input()?;
        let format = config.format.unwrap_or(Format::Text);
        let encoder = encoder(
            ctx,
            &schema,
            format,
            config.precision,
            config.measurement,
            config.tags,
        );
        Some(StdoutSink(WriterSink {
            encoder,
            target: Target::Stdout,
        }))
    }

    fn output(&self) -> Option<PortType> {
        None
    }

    fn start(&self, _ctx: &StartContext<'_>) -> Result<SharedWriter, StartError> {
        self.0.start()
    }

    fn render<'s>(
        &self,
        writer: &SharedWriter,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        self.0.render(writer, ctx, inputs);
        None
    }
}

enum Target {
    File {
        path: PathBuf,
        truncate: bool,
        at: smartgrid_runtime::Location,
    },
    Stdout,
}

/// The output of a `file` or `stdout` sink, shared by the workers of a process.
pub type SharedWriter = Arc<Mutex<Box<dyn Write + Send>>>;

/// What `file` and `stdout` share: encode, and write from worker 0.
struct WriterSink {
    encoder: Encoder,
    target: Target,
}

impl WriterSink {
    fn resources(&self) -> Vec<Claim> {
        match &self.target {
            Target::File { path, at, .. } => vec![Claim {
                resource: Resource::FileWritten(path.clone()),
                at: *at,
            }],
            Target::Stdout => Vec::new(),
        }
    }

    /// The output, opened once per process and written by worker 0.
    fn start(&self) -> Result<SharedWriter, StartError> {
        let writer: Box<dyn Write + Send> = match &self.target {
            Target::Stdout => Box::new(std::io::stdout()),
            Target::File { path, truncate, .. } => {
                let mut file = open_output(path, *truncate)?;
                // A header starts a new (or emptied) file; appending runs add no second one.
                let empty = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
                if let Some(header) = self.encoder.header().filter(|_| empty) {
                    file.write_all(header.as_bytes())
                        .and_then(|()| file.flush())
                        .map_err(|source| StartError::Io {
                            context: format!("cannot write {}", path.display()),
                            source,
                        })?;
                }
                Box::new(file)
            }
        };
        Ok(Arc::new(Mutex::new(writer)))
    }

    fn render<'s>(
        &self,
        writer: &SharedWriter,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) {
        let input = ctx.single_readings(inputs);
        let writer = Arc::clone(writer);
        let encoder = self.encoder.clone();
        let written = ctx.counter("written");
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
    }
}
