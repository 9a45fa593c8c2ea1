//! The `decode` node: its settings, checked at plan time, and its rendering.
//!
//! ```yaml
//! readings:
//!   type: decode
//!   input: clemap
//!   format: clemap            # clemap | struct | json; the format's own keys sit beside it
//!   feature_type: 16          # (clemap) 16 (default) or 17
//!   watermark_delay: 1s       # out-of-order allowance
//!   idle_timeout: 5s          # quiet input: the watermark follows the wall clock
//!   dead_letter:
//!     file: data/dead-letters.jsonl
//!     topic: smartgrid/dead-letters   # and/or publish them (url: defaults to embedded)
//!     url: mqtt://127.0.0.1:1883
//! ```

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration as StdDuration;

use serde::Deserialize;
use smartgrid_runtime::operator::open_output;
use smartgrid_runtime::operator::route_by_sensor;
use smartgrid_runtime::spec::{Duration, NodeSpec, Spanned};
use smartgrid_runtime::{
    AnyStream, Arity, Diagnostic, NodeOperator, OperatorFactory, PlanContext, PortType,
    ProcessContext, RenderContext, RenderError, Schema,
};

use super::errors::{DeadLetters, ErrorSink};
use super::operator::{DecodeCounters, DecodeExt, EventClock};
use super::{FormatConfig, PayloadDecoder};
use crate::mqtt::{Publisher, PublisherOptions, Qos};

/// The keys every format shares; the rest belong to the format.
const COMMON: [&str; 4] = ["format", "watermark_delay", "idle_timeout", "dead_letter"];
const FORMATS: &str = "clemap, struct, json";

/// Settings of a `decode` node shared by every format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeConfig {
    /// The payload format: `clemap`, `struct` or `json`. The format's own settings
    /// (e.g. `feature_type` for clemap) are keys of the same node.
    pub format: Spanned<String>,
    /// How far the watermark trails the largest event time seen: readings up to this
    /// much out of order are still on time. Default `1s`.
    #[serde(default)]
    pub watermark_delay: Option<Duration>,
    /// After this long without a reading, the watermark follows the wall clock so
    /// windows still close. Default `5s`.
    #[serde(default)]
    pub idle_timeout: Option<Duration>,
    /// Where undecodable payloads go besides the counters and the log.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
}

/// Dead-letter destinations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// A JSON-lines file (relative to the pipeline file): time, node, topic, reason,
    /// error and the payload in hex.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An MQTT topic to publish the same JSON to (QoS 1).
    #[serde(default)]
    pub topic: Option<String>,
    /// The broker for `topic`: `mqtt://…`, `mqtts://…` or `embedded` (default).
    #[serde(default)]
    pub url: Option<String>,
}

/// The `decode` factory.
pub struct DecodeFactory;

impl OperatorFactory for DecodeFactory {
    fn kind(&self) -> &'static str {
        "decode"
    }

    fn summary(&self) -> &'static str {
        "payloads → readings (clemap, struct layout, json); bad payloads counted and dead-lettered"
    }

    fn arity(&self) -> Arity {
        Arity::One
    }

    fn plan(&self, ctx: &PlanContext<'_>) -> Result<Arc<dyn NodeOperator>, Vec<Diagnostic>> {
        let input = ctx.messages_input();
        let common: DecodeConfig = ctx.node.select(|k| COMMON.contains(&k)).settings()?;
        input?;
        let own = ctx.node.select(|k| !COMMON.contains(&k));
        let decoder = build_decoder(&own, &common.format);
        let dead_letter = common.dead_letter.map(|d| DeadLetterConfig {
            file: d.file.map(|f| ctx.resolve(&f)),
            ..d
        });
        let no_destination = matches!(
            dead_letter,
            Some(DeadLetterConfig {
                file: None,
                topic: None,
                ..
            })
        );
        let decoder = match (decoder, no_destination) {
            (Ok(decoder), false) => decoder,
            (result, _) => {
                let mut errors = result.err().unwrap_or_default();
                if no_destination {
                    errors.push(
                        ctx.node
                            .error(
                                ctx.node.key_at("dead_letter"),
                                "dead_letter names no destination",
                            )
                            .hint("add `file:` and/or `topic:`"),
                    );
                }
                return Err(errors);
            }
        };
        Ok(Arc::new(DecodeNode {
            schema: decoder.schema(),
            decoder: Arc::from(decoder),
            clock: EventClock {
                delay: common
                    .watermark_delay
                    .map_or(StdDuration::from_secs(1), |d| d.0),
                idle: common
                    .idle_timeout
                    .map_or(StdDuration::from_secs(5), |d| d.0),
            },
            dead_letter,
            dead_letters: OnceLock::new(),
            input_partitioned: ctx.partitioned.first().copied().unwrap_or(false),
        }))
    }
}

fn build_decoder(
    own: &NodeSpec,
    format: &Spanned<String>,
) -> Result<Box<dyn PayloadDecoder>, Vec<Diagnostic>> {
    // Each format's keys are read as that format's own struct, so errors point at the
    // exact key; `FormatConfig::build` is the one place that turns a config into a decoder.
    let (config, at) = match format.value.as_str() {
        "clemap" => (
            FormatConfig::Clemap(own.settings()?),
            own.key_at("feature_type"),
        ),
        "struct" => (FormatConfig::Struct(own.settings()?), own.key_at("fields")),
        "json" => (FormatConfig::Json(own.settings()?), format.at),
        other => {
            return Err(vec![
                own.error(format.at, format!("unknown format `{other}`"))
                    .hint(format!("formats: {FORMATS}")),
            ]);
        }
    };
    config.build().map_err(|message| {
        vec![
            own.error(at, message)
                .hint("see the format's settings in the README"),
        ]
    })
}

struct DecodeNode {
    decoder: Arc<dyn PayloadDecoder>,
    schema: Schema,
    clock: EventClock,
    dead_letter: Option<DeadLetterConfig>,
    /// Opened once per process in `start`, shared by every worker.
    dead_letters: OnceLock<DeadLetters>,
    /// Whether the payloads arrive partitioned by sensor (a simulator's share);
    /// otherwise the readings are routed by sensor once, here, for every keyed node after.
    input_partitioned: bool,
}

impl NodeOperator for DecodeNode {
    fn output(&self) -> Option<PortType> {
        Some(PortType::Readings(self.schema.clone()))
    }

    fn partitioned(&self) -> bool {
        true
    }

    fn start(&self, ctx: &ProcessContext) -> Result<(), RenderError> {
        let mut letters = DeadLetters::default();
        if let Some(config) = &self.dead_letter {
            if let Some(path) = &config.file {
                letters.file = Some(Arc::new(Mutex::new(open_output(path, false)?)));
            }
            if let Some(topic) = &config.topic {
                let url = config.url.as_deref().unwrap_or("embedded");
                let publisher = Publisher::connect(
                    url,
                    format!("smartgrid-{}-dead-letters", ctx.pipeline),
                    PublisherOptions::default(),
                )
                .map_err(|e| RenderError::Other(format!("dead-letter topic: {e}")))?;
                let dropped = ctx.metrics.counter("dead_letters.dropped");
                let topic = topic.clone();
                let publisher = Mutex::new(publisher);
                letters.publish = Some(Arc::new(move |letter: Vec<u8>| {
                    let publisher = publisher
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    // Never block the dataflow on a slow broker: a full queue drops and counts.
                    if !matches!(
                        publisher.try_publish(&topic, letter, Qos::AtLeastOnce),
                        Ok(true)
                    ) {
                        dropped.inc();
                    }
                }));
            }
        }
        let _ = self.dead_letters.set(letters);
        Ok(())
    }

    fn render<'s>(
        &self,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Result<Option<AnyStream<'s>>, RenderError> {
        let input = AnyStream::single_messages(inputs)?;
        let metrics = &ctx.process.metrics;
        let counters = DecodeCounters {
            readings: metrics.counter(format!("{}.readings", ctx.node)),
            skipped: metrics.counter(format!("{}.skipped", ctx.node)),
        };
        let letters = self.dead_letters.get().cloned().unwrap_or_default();
        let errors = ErrorSink::new(ctx.node, metrics, letters);
        let readings = input.decode(
            ctx.node,
            Arc::clone(&self.decoder),
            self.clock,
            counters,
            errors,
        );
        Ok(Some(AnyStream::Readings(route_by_sensor(
            readings,
            self.input_partitioned,
        ))))
    }
}
