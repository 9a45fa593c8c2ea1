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

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use serde::Deserialize;
use smartgrid_runtime::liveness::Liveness;
use smartgrid_runtime::operator::open_output;
use smartgrid_runtime::spec::{Duration, Spanned};
use smartgrid_runtime::{
    AnyStream, Claim, Inputs, Limit, Node, PlanContext, PortType, RenderContext, Resource, Routing,
    Schema, StartContext, StartError,
};

use super::errors::{DeadLetters, ErrorSink};
use super::operator::{DecodeCheckpoint, DecodeCounters, DecodeExt, EventClock};
use crate::delivery::record_letters::{LetterConfig, dead_letter_publisher, per_process};
use crate::formats::{FormatConfig, PayloadDecoder};
use crate::io::mqtt::{Publisher, Qos};

/// How far ahead of this machine's clock a reading may be stamped, by default: clocks
/// of devices and of this machine may differ by a few seconds to minutes.
const DEFAULT_MAX_FUTURE: StdDuration = StdDuration::from_secs(300);

/// The keys every format shares; the rest belong to the format.
const COMMON: [&str; 5] = [
    "format",
    "watermark_delay",
    "idle_timeout",
    "max_future",
    "dead_letter",
];
const FORMATS: &str = "clemap, struct, json";

/// Settings of a `decode` node shared by every format.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecodeConfig {
    /// The payload format: `clemap`, `struct` or `json`. The format's own settings
    /// (e.g. `feature_type` for clemap) are keys of the same node.
    pub format: Spanned<String>,
    /// How far the watermark trails each sensor's largest event time: readings up to
    /// this much out of order are still on time. The watermark is the slowest active
    /// sensor's, so one sensor's clock running ahead makes no other reading late.
    /// Default `1s`.
    #[serde(default)]
    pub watermark_delay: Option<Duration>,
    /// A sensor silent this long no longer holds the watermark back; when every sensor
    /// is, the watermark follows the wall clock so windows still close. That happens
    /// only while the sources are connected and caught up: during a broker outage, a
    /// reconnection or a backlog, event time waits for what the broker queued.
    /// Default `5s`.
    #[serde(default)]
    pub idle_timeout: Option<Duration>,
    /// Readings stamped further ahead of this machine's clock are refused (counted as
    /// `<node>.errors.future`, dead-lettered): a device whose clock is wrong cannot
    /// make every other reading late. A sensor whose readings trail the other sensors'
    /// by more than this is not waited for either. Default `5m`.
    #[serde(default)]
    pub max_future: Option<Spanned<Duration>>,
    /// Where undecodable payloads go besides the counters and the log.
    #[serde(default)]
    pub dead_letter: Option<LetterConfig>,
}

/// How long a decode node waits, when the run ends, for the dead-letter broker to
/// acknowledge what it was sent.
const DEAD_LETTER_DRAIN: StdDuration = StdDuration::from_secs(5);

fn build_decoder(
    format: &Spanned<String>,
    ctx: &mut PlanContext<'_>,
) -> Option<Box<dyn PayloadDecoder>> {
    // Each format's keys are read as that format's own struct, so errors point at the
    // exact key; `FormatConfig::build` is the one place that turns a config into a decoder.
    let (config, at) = match format.value.as_str() {
        "clemap" => (
            FormatConfig::Clemap(ctx.settings_except(&COMMON)?),
            ctx.node.key_at("feature_type"),
        ),
        "struct" => (
            FormatConfig::Struct(ctx.settings_except(&COMMON)?),
            ctx.node.key_at("fields"),
        ),
        "json" => (FormatConfig::Json(ctx.settings_except(&COMMON)?), format.at),
        other => {
            ctx.error(format.at, format!("unknown format `{other}`"))
                .with_hint(format!("formats: {FORMATS}"));
            return None;
        }
    };
    config
        .build()
        .map_err(|message| {
            ctx.error(at, message)
                .with_hint("see the format's settings in docs/nodes.md (`decode`)");
        })
        .ok()
}

/// A planned `decode` node.
pub struct DecodeNode {
    decoder: Arc<dyn PayloadDecoder>,
    schema: Schema,
    clock: EventClock,
    dead_letter: Option<LetterConfig>,
    /// The dead-letter publisher's client id: one per node, so two decoders (or two
    /// processes, see `start`) do not knock each other off the broker.
    client_id: String,
    dead_letter_at: smartgrid_runtime::Location,
    /// The node it reads (for checkpoints: a replayable source's position).
    source: String,
}

/// What a decode node holds while it runs: its dead-letter destinations.
pub struct DecodeState {
    letters: DeadLetters,
    publisher: Option<Arc<Mutex<Option<Publisher>>>>,
    /// The watermark gauge, one slot per local worker.
    watermark: smartgrid_runtime::metrics::MinGauge,
}

impl DecodeNode {
    fn dead_letter_url(&self) -> Option<&str> {
        let config = self.dead_letter.as_ref()?;
        config.topic.as_ref()?;
        Some(config.url.as_deref().unwrap_or("embedded"))
    }
}

impl Node for DecodeNode {
    const KIND: &'static str = "decode";
    const SUMMARY: &'static str =
        "payloads → readings (clemap, struct layout, json); bad payloads counted and dead-lettered";
    const INPUTS: Inputs = Inputs::One(Routing::Any);
    const LIMITS: &'static [(&'static str, Limit)] = &[
        ("watermark_delay", Limit::seconds(0, 3600)),
        ("idle_timeout", Limit::millis_to_seconds(1, 86400)),
        ("max_future", Limit::seconds(0, 315360000)),
    ];
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&COMMON);

    type Config = DecodeConfig;

    type State = DecodeState;

    fn config_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        use schemars::JsonSchema;
        // The format's keys are the node's too (see `build_decoder`).
        smartgrid_runtime::config_schema::tagged_variants(
            DecodeConfig::json_schema(generator),
            "format",
            vec![
                (
                    "clemap",
                    crate::formats::ClemapConfig::json_schema(generator),
                ),
                (
                    "struct",
                    crate::formats::StructConfig::json_schema(generator),
                ),
                ("json", crate::formats::JsonConfig::json_schema(generator)),
            ],
        )
    }

    fn plan(common: DecodeConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        ctx.messages_input()?;
        let dead_letter = common.dead_letter.map(|d| LetterConfig {
            file: d.file.map(|f| ctx.resolve_data(&f)),
            ..d
        });
        if let Some(LetterConfig {
            file: None,
            topic: None,
            ..
        }) = dead_letter
        {
            ctx.error_at_key("dead_letter", "dead_letter names no destination")
                .with_hint("add `file:` and/or `topic:`");
        }
        let decoder = build_decoder(&common.format, ctx)?;
        let client_id = format!("smartgrid-{}-{}-dead-letters", ctx.pipeline, ctx.node.name);
        Some(DecodeNode {
            source: ctx
                .node
                .inputs
                .first()
                .map(|i| i.value.clone())
                .unwrap_or_default(),
            schema: decoder.schema(),
            decoder: Arc::from(decoder),
            clock: EventClock {
                delay: common
                    .watermark_delay
                    .map_or(StdDuration::from_secs(1), |d| d.0),
                idle: common
                    .idle_timeout
                    .map_or(StdDuration::from_secs(5), |d| d.0),
                max_future: common.max_future.map_or(DEFAULT_MAX_FUTURE, |d| d.value.0),
                // The process's, given at render.
                liveness: Liveness::default(),
            },
            dead_letter,
            client_id,
            dead_letter_at: ctx.node.key_at("dead_letter"),
        })
    }

    fn output(&self) -> Option<PortType> {
        Some(PortType::Readings(self.schema.clone()))
    }

    fn resources(&self) -> Vec<Claim> {
        let mut claims = Vec::new();
        if let Some(path) = self.dead_letter.as_ref().and_then(|d| d.file.as_ref()) {
            claims.push(Claim {
                resource: Resource::FileWritten(path.clone()),
                at: self.dead_letter_at,
            });
        }
        if let Some(url) = self.dead_letter_url() {
            claims.push(Claim {
                resource: Resource::MqttClientId {
                    broker: url.to_string(),
                    client_id: self.client_id.clone(),
                },
                at: self.dead_letter_at,
            });
        }
        claims
    }

    fn start(&self, ctx: &StartContext<'_>) -> Result<DecodeState, StartError> {
        let mut letters = DeadLetters::default();
        let mut owned = None;
        if let Some(config) = &self.dead_letter {
            if let Some(path) = &config.file {
                let path = per_process(path, ctx.process_index);
                letters.file = Some(Arc::new(Mutex::new(open_output(&path, false)?)));
            }
            if let (Some(topic), Some(url)) = (&config.topic, self.dead_letter_url()) {
                let publisher = dead_letter_publisher(url, &self.client_id, ctx)?;
                let dropped = ctx.counter("dead_letters.dropped");
                let topic = topic.clone();
                let publisher = Arc::new(Mutex::new(Some(publisher)));
                owned = Some(Arc::clone(&publisher));
                letters.publish = Some(Arc::new(move |letter: Vec<u8>| {
                    let publisher = publisher
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    // Never block the dataflow on a slow broker: a full queue drops and counts.
                    let sent = publisher
                        .as_ref()
                        .map(|p| p.try_publish(&topic, letter, Qos::AtLeastOnce));
                    if !matches!(sent, Some(Ok(true))) {
                        dropped.inc();
                    }
                }));
            }
        }
        Ok(DecodeState {
            letters,
            publisher: owned,
            watermark: smartgrid_runtime::metrics::MinGauge::new(
                ctx.gauge("watermark_ms"),
                ctx.workers,
            ),
        })
    }

    fn render<'s>(
        &self,
        state: &DecodeState,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        let input = ctx.single_messages(inputs);
        let counters = DecodeCounters {
            readings: ctx.counter("readings"),
            skipped: ctx.counter("skipped"),
            // Workers are numbered across processes; slots are this process's.
            watermark: state.watermark.for_worker(ctx.worker),
        };
        let errors = ErrorSink::new(ctx.node, &ctx.process.metrics, state.letters.clone());
        let readings = input.decode(
            ctx.node,
            Arc::clone(&self.decoder),
            EventClock {
                liveness: ctx.process.liveness.clone(),
                ..self.clock.clone()
            },
            counters,
            errors,
            Some(DecodeCheckpoint {
                state: ctx.state(),
                source: self.source.clone(),
            }),
        );
        Some(AnyStream::Readings(readings))
    }

    fn finish(&self, state: DecodeState, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        let publisher = state.publisher.and_then(|p| {
            p.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        });
        if let Some(publisher) = publisher {
            publisher
                .flush_and_close(DEAD_LETTER_DRAIN)
                .map_err(|e| StartError::other(format!("dead letters not all delivered: {e}")))?;
        }
        Ok(())
    }
}
