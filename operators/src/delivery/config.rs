//! The keys every sink reads the same way, and their checks. Each sink's `Config` names
//! them as fields (same names, same meaning); defaults that differ by sink (an HTTP
//! retry is quicker than an MQTT reconnect) are given by the sink when it plans.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};
use smartgrid_runtime::PlanContext;
use smartgrid_runtime::spec::ByteSize;
use smartgrid_runtime::spec::{Duration, error_with_hint};

use crate::spool::WhenFull;

/// `retry:` how failed attempts (requests, connections) are retried: exponential
/// backoff with ±25 % jitter from `initial_delay` up to `max_delay`; a server's
/// `Retry-After` wins when longer.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The first delay; it doubles after every failure.
    #[serde(default)]
    pub initial_delay: Option<Duration>,
    /// The longest delay between attempts.
    #[serde(default)]
    pub max_delay: Option<Duration>,
    /// `influx` only: attempts at a new batch before it goes to the spool (later batches
    /// follow it there, to keep the order). Default 3.
    #[serde(default)]
    pub attempts_before_spool: Option<u32>,
}

/// Retry delays, planned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// The first delay.
    pub initial: StdDuration,
    /// The longest delay.
    pub max: StdDuration,
}

impl RetryConfig {
    /// The delays, with this sink's defaults; a problem at `retry` if they are zero or
    /// out of order.
    pub fn plan(&self, defaults: Retry, ctx: &mut PlanContext<'_>) -> Option<Retry> {
        let retry = Retry {
            initial: self.initial_delay.map_or(defaults.initial, |d| d.get()),
            max: self.max_delay.map_or(defaults.max, |d| d.get()),
        };
        if retry.initial.is_zero() || retry.max < retry.initial {
            ctx.error_at_key(
                "retry",
                "retry delays must be above zero, with max_delay at least initial_delay",
            )
            .with_hint(format!(
                "for example retry: {{ initial_delay: {}, max_delay: {} }}",
                humantime::format_duration(defaults.initial),
                humantime::format_duration(defaults.max)
            ));
            return None;
        }
        Some(retry)
    }
}

/// `spool:` where and how much a sink keeps on disk until its server acknowledged it.
/// Written as a table (`spool: { dir: data/spool/store }`); an empty `spool:` takes
/// every default.
#[derive(Clone, Debug, Default)]
pub struct SpoolConfig {
    /// The spool directory (one per sink; locked while the pipeline runs), relative to
    /// `data_dir`.
    pub dir: Option<PathBuf>,
    /// Most bytes held, such as `512MiB` or `2GB`.
    pub max_size: Option<ByteSize>,
    /// When full: `backpressure` (default; the pipeline waits, nothing is lost) or
    /// `drop_oldest` (the oldest batches are deleted and counted).
    pub when_full: Option<WhenFull>,
    /// `fsync` every spooled batch and acknowledgement (survives a power loss). Default
    /// true; false still survives a crash of the process.
    pub fsync: Option<bool>,
}

/// The derived reading of [`SpoolConfig`]'s table; its schema is the spool's (an
/// empty `spool:` is every default).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SpoolConfig")]
struct SpoolTable {
    /// The spool directory (one per sink; locked while the pipeline runs), relative to
    /// `data_dir`.
    #[serde(default)]
    dir: Option<PathBuf>,
    /// Most bytes held, such as `512MiB` or `2GB`.
    #[serde(default)]
    max_size: Option<ByteSize>,
    /// When full: `backpressure` (default; the pipeline waits, nothing is lost) or
    /// `drop_oldest` (the oldest batches are deleted and counted).
    #[serde(default)]
    when_full: Option<WhenFull>,
    /// `fsync` every spooled batch and acknowledgement (survives a power loss). Default
    /// true; false still survives a crash of the process.
    #[serde(default)]
    fsync: Option<bool>,
}

impl schemars::JsonSchema for SpoolConfig {
    fn inline_schema() -> bool {
        // Its table is the named definition.
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SpoolConfigOrEmpty".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let table = generator.subschema_for::<SpoolTable>();
        schemars::json_schema!({"anyOf": [table, {"type": "null"}]})
    }
}

impl<'de> Deserialize<'de> for SpoolConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // By hand only to refuse the old `spool: <path>` with the new spelling.
        struct Table;
        impl<'de> Visitor<'de> for Table {
            type Value = SpoolConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table such as { dir: data/spool, max_size: 1GiB }")
            }
            fn visit_str<E: de::Error>(self, path: &str) -> Result<SpoolConfig, E> {
                Err(error_with_hint(
                    "`spool` is a table now, not a path",
                    &format!("write spool: {{ dir: {path} }}"),
                ))
            }
            fn visit_unit<E: de::Error>(self) -> Result<SpoolConfig, E> {
                Ok(SpoolConfig::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<SpoolConfig, E> {
                Ok(SpoolConfig::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SpoolConfig, A::Error> {
                let t = SpoolTable::deserialize(MapAccessDeserializer::new(map))?;
                Ok(SpoolConfig {
                    dir: t.dir,
                    max_size: t.max_size,
                    when_full: t.when_full,
                    fsync: t.fsync,
                })
            }
        }
        d.deserialize_any(Table)
    }
}

/// Spool settings, planned.
#[derive(Clone, Debug)]
pub struct Spool {
    /// The directory, resolved (`None`: the sink has no disk spool).
    pub dir: Option<PathBuf>,
    /// Most bytes.
    pub max_bytes: u64,
    /// What a full spool does.
    pub when_full: WhenFull,
    /// Sync every write.
    pub fsync: bool,
}

impl SpoolConfig {
    /// The settings with `default_dir` (resolved by the caller, since a default need not
    /// be relative to the data directory; `None`: no disk spool unless `dir` is given)
    /// and `default_max`; a problem at `spool` if `max_size` is under `min_bytes`.
    pub fn plan(
        &self,
        default_dir: Option<PathBuf>,
        default_max: u64,
        min_bytes: u64,
        ctx: &mut PlanContext<'_>,
    ) -> Option<Spool> {
        let max_bytes = self.max_size.map_or(default_max, |s| s.0);
        if max_bytes < min_bytes {
            ctx.error_at_key(
                "spool",
                format!("spool max_size {max_bytes} bytes is too small to hold a batch"),
            )
            .with_hint(format!("use at least {}", ByteSize(min_bytes)));
            return None;
        }
        Some(Spool {
            dir: self
                .dir
                .as_deref()
                .map(|d| ctx.resolve_data(d))
                .or(default_dir),
            max_bytes,
            when_full: self.when_full.unwrap_or_default(),
            fsync: self.fsync.unwrap_or(true),
        })
    }
}

impl Spool {
    /// Options for [`crate::spool::Spool::open`].
    pub fn options(&self) -> crate::spool::SpoolOptions {
        crate::spool::SpoolOptions {
            max_bytes: self.max_bytes,
            when_full: self.when_full,
            fsync: self.fsync,
            ..crate::spool::SpoolOptions::default()
        }
    }
}

/// The default `queue`: chunks (one per activation of the sink's operator, at most
/// 256 KiB of lines each) waiting for the writer thread.
pub const DEFAULT_QUEUE: usize = 64;

/// The default `drain_timeout`.
pub fn default_drain_timeout() -> Duration {
    Duration(StdDuration::from_secs(10))
}

/// The default dead-letter file of `node`: `data/<node>.dead_letters.jsonl`, relative to
/// `data_dir`.
pub fn default_dead_letter(node: &str) -> PathBuf {
    PathBuf::from(format!("data/{node}.dead_letters.jsonl"))
}
