//! The settings of the `influx` sink, and their validation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};
use smartgrid_runtime::spec::{Duration, error_with_hint};

use crate::sink::format::Precision;
use crate::spool::WhenFull;

/// Which write API the server speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// InfluxDB 2.x / 3.x and VictoriaMetrics: `POST /api/v2/write?org=&bucket=`, token auth.
    #[default]
    V2,
    /// InfluxDB 1.x: `POST /write?db=&rp=`, user and password (basic auth).
    V1,
}

/// The `api:` key, read on its own so that a wrong value does not hide other problems.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// `v2` (default) or `v1`.
    #[serde(default)]
    pub api: Api,
}

/// The secret keys, read on their own so that an unset variable does not hide other
/// problems. Their values never appear in logs or errors.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// v2: the API token, sent as `Authorization: Token …`; write `${INFLUX_TOKEN}`.
    #[serde(default)]
    pub token: Option<String>,
    /// v1: user name (basic auth).
    #[serde(default)]
    pub username: Option<String>,
    /// v1: password (basic auth); write `${INFLUX_PASSWORD}`.
    #[serde(default)]
    pub password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("Credentials")
            .field("token", &hide(&self.token))
            .field("username", &self.username)
            .field("password", &hide(&self.password))
            .finish()
    }
}

/// The keys of [`Credentials`].
pub const CREDENTIAL_KEYS: [&str; 3] = ["token", "username", "password"];

/// The `spool:` key, read on its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolKey {
    /// See [`SpoolConfig`].
    #[serde(default)]
    pub spool: SpoolConfig,
}

/// The `retry:` key, read on its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryKey {
    /// See [`RetryConfig`].
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_batch_size() -> usize {
    5000
}
fn default_flush_interval() -> Duration {
    Duration(StdDuration::from_secs(1))
}
fn default_timeout() -> Duration {
    Duration(StdDuration::from_secs(10))
}
fn default_queue() -> usize {
    64
}
fn default_drain_timeout() -> Duration {
    Duration(StdDuration::from_secs(10))
}
fn default_true() -> bool {
    true
}

/// Settings of an `influx` sink. `api`, the credentials, `spool` and `retry` are read
/// apart ([`ApiKey`], [`Credentials`], [`SpoolKey`], [`RetryKey`]) so that a problem in
/// one does not hide the others; their keys are listed here (and skipped) so that the
/// hint for an unknown key names every valid key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// The server's base URL: `http://host:8086` or `https://…` (a path prefix is kept,
    /// for servers behind a reverse proxy).
    pub url: String,
    #[serde(default, rename = "api")]
    _api: Option<IgnoredAny>,
    #[serde(default, rename = "token")]
    _token: Option<IgnoredAny>,
    /// v2: the organization (name or id).
    #[serde(default)]
    pub org: Option<String>,
    /// v2: the bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// v1: the database.
    #[serde(default)]
    pub db: Option<String>,
    /// v1: the retention policy (default: the database's default).
    #[serde(default)]
    pub rp: Option<String>,
    #[serde(default, rename = "username")]
    _username: Option<IgnoredAny>,
    #[serde(default, rename = "password")]
    _password: Option<IgnoredAny>,
    /// Measurement name; default: the input node's name.
    #[serde(default)]
    pub measurement: Option<String>,
    /// Timestamp precision: `s`, `ms`, `us` or `ns` (default). Coarser precision makes
    /// smaller requests; readings are at millisecond resolution.
    #[serde(default)]
    pub precision: Precision,
    /// Extra tags on every point, besides `sensor_id` and `pipeline`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Compress request bodies (`Content-Encoding: gzip`). Default true.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Points per request. Default 5000.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// A batch that is not full is sent this long after its first point. Default `1s`.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Duration,
    /// Timeout of one HTTP request. Default `10s`.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    #[serde(default, rename = "retry")]
    _retry: Option<IgnoredAny>,
    #[serde(default, rename = "spool")]
    _spool: Option<IgnoredAny>,
    /// Where batches the server rejects as bad data (HTTP 400, 413, 422, …) go, one JSON
    /// line each with the server's message. Default `data/<node>.dead_letters.jsonl`,
    /// relative to the pipeline file.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
    /// Encoded batches waiting for the writer thread; when full, the dataflow waits
    /// (backpressure). Default 64.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// On shutdown, how long to keep trying to deliver before leaving the rest in the
    /// spool for the next start. Default `10s`.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: Duration,
}

fn default_initial() -> Duration {
    Duration(StdDuration::from_millis(100))
}
fn default_max_delay() -> Duration {
    Duration(StdDuration::from_secs(30))
}
fn default_attempts() -> u32 {
    3
}

/// How failed requests are retried.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The first delay. Default `100ms`; it doubles after every failure (with ±25 %
    /// jitter) up to `max_delay`.
    #[serde(default = "default_initial")]
    pub initial_delay: Duration,
    /// The longest delay between attempts. Default `30s`.
    #[serde(default = "default_max_delay")]
    pub max_delay: Duration,
    /// Attempts at a new batch before it goes to the spool (and later batches follow it
    /// there, to keep the order). Default 3.
    #[serde(default = "default_attempts")]
    pub attempts_before_spool: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_delay: default_initial(),
            max_delay: default_max_delay(),
            attempts_before_spool: default_attempts(),
        }
    }
}

/// Where and how much the sink spools.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// The spool directory (one per sink; it is locked while the pipeline runs). Default
    /// `data/spool/<pipeline>/<node>`, relative to the pipeline file.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Most bytes of pending batches, such as `512MiB` or `2GB`. Default `1GiB`.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// When full: `backpressure` (default; the pipeline waits, nothing is lost) or
    /// `drop_oldest` (the oldest batches are deleted and counted).
    #[serde(default)]
    pub when_full: WhenFull,
    /// `fsync` every spooled batch and acknowledgement (survives a power loss). Default
    /// true; false still survives a crash of the process.
    #[serde(default = "default_true")]
    pub fsync: bool,
}

fn default_max_size() -> ByteSize {
    ByteSize(1 << 30)
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_size: default_max_size(),
            when_full: WhenFull::default(),
            fsync: true,
        }
    }
}

/// A size in bytes: a number, or a number with a unit (`KB`, `MB`, `GB` are powers of
/// 1000; `KiB`, `MiB`, `GiB` powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            other => return Err(format!("unknown size unit `{other}`")),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a size"))?;
        Ok(ByteSize((value * factor as f64) as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|message: String| {
            error_with_hint::<D::Error>(&message, "write a size such as 512MiB, 2GB or 1000000")
        })
    }
}

/// Where a write goes: the parsed base URL.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Scheme, host, port and path prefix, without a trailing `/`.
    pub base: String,
}

/// One problem found by [`validate`]: the key at fault, what is wrong, a hint.
pub type Issue = (&'static str, String, String);

/// Check what `Deserialize` cannot: the URL, and the keys `api` needs.
pub fn validate(
    config: &InfluxConfig,
    api: Option<Api>,
    spool: Option<&SpoolConfig>,
    retry: Option<&RetryConfig>,
) -> Result<Endpoint, Vec<Issue>> {
    let mut issues = Vec::new();
    let endpoint = match parse_url(&config.url) {
        Ok(e) => Some(e),
        Err(reason) => {
            issues.push((
                "url",
                format!("invalid InfluxDB URL `{}`: {reason}", redacted(&config.url)),
                "write http://host:8086 or https://host".to_string(),
            ));
            None
        }
    };
    let empty = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
    match api {
        Some(Api::V2) => {
            for (key, value) in [("org", &config.org), ("bucket", &config.bucket)] {
                if empty(value) {
                    issues.push((
                        key,
                        format!("the v2 write API needs `{key}`"),
                        format!("add `{key}: …`, or `api: v1` with `db:` for InfluxDB 1.x"),
                    ));
                }
            }
            if config.db.is_some() || config.rp.is_some() {
                let key = if config.db.is_some() { "db" } else { "rp" };
                issues.push((
                    key,
                    format!("`{key}` belongs to the v1 API, but `api` is v2"),
                    "write `api: v1`, or use `org` and `bucket`".to_string(),
                ));
            }
        }
        Some(Api::V1) => {
            if empty(&config.db) {
                issues.push((
                    "db",
                    "the v1 write API needs `db`".to_string(),
                    "add `db: …` (the database name)".to_string(),
                ));
            }
            if config.org.is_some() || config.bucket.is_some() {
                let key = if config.org.is_some() {
                    "org"
                } else {
                    "bucket"
                };
                issues.push((
                    key,
                    format!("`{key}` belongs to the v2 API, but `api` is v1"),
                    "write `api: v2`, or use `db`".to_string(),
                ));
            }
        }
        None => {}
    }
    let positive = [
        ("batch_size", config.batch_size == 0),
        ("queue", config.queue == 0),
        ("flush_interval", config.flush_interval.get().is_zero()),
        ("timeout", config.timeout.get().is_zero()),
    ];
    for (key, zero) in positive {
        if zero {
            issues.push((
                key,
                format!("`{key}` must be above zero"),
                "leave it out for the default".to_string(),
            ));
        }
    }
    if let Some(spool) = spool
        && spool.max_size.0 < 1 << 20
    {
        issues.push((
            "spool",
            format!(
                "spool max_size {} bytes is too small to hold a batch",
                spool.max_size.0
            ),
            "use at least 1MiB".to_string(),
        ));
    }
    if let Some(retry) = retry
        && (retry.initial_delay.get().is_zero() || retry.max_delay < retry.initial_delay)
    {
        issues.push((
            "retry",
            "retry delays must be above zero, with max_delay at least initial_delay".to_string(),
            "for example retry: { initial_delay: 100ms, max_delay: 30s }".to_string(),
        ));
    }
    match (endpoint, issues.is_empty()) {
        (Some(endpoint), true) => Ok(endpoint),
        _ => Err(issues),
    }
}

/// `text` with any password in it replaced by `***`, for messages.
fn redacted(text: &str) -> String {
    match url::Url::parse(text.trim()) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_string(),
    }
}

/// Parse and check a server URL (`http://host:port[/prefix]`).
pub fn parse_url(text: &str) -> Result<Endpoint, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme `{}` is not supported; use http:// or https://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it names no host".to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "credentials do not belong in the URL; use `token` (v2) or `username`/`password` (v1)"
                .to_string(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "the URL has no query; org, bucket, db and precision are keys of their own".to_string(),
        );
    }
    let mut base = url.to_string();
    while base.ends_with('/') {
        base.pop();
    }
    Ok(Endpoint { base })
}
