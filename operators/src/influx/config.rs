//! The settings of the `influx` sink, and how they are planned into typed options.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use serde::Deserialize;
use smartgrid_runtime::PlanContext;
use smartgrid_runtime::spec::Duration;

use crate::delivery::config::{self as shared, RetryConfig, SpoolConfig};
use crate::formats::Precision;
use crate::io::TlsConfig;

pub use crate::delivery::ByteSize;

/// Which write API the server speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// InfluxDB 2.x / 3.x and VictoriaMetrics: `POST /api/v2/write?org=&bucket=`, token auth.
    #[default]
    V2,
    /// InfluxDB 1.x: `POST /write?db=&rp=`, user and password (basic auth).
    V1,
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
    shared::DEFAULT_QUEUE
}
fn default_true() -> bool {
    true
}

/// Settings of an `influx` sink.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// The server's base URL: `http://host:8086` or `https://…` (a path prefix is kept,
    /// for servers behind a reverse proxy).
    pub url: String,
    /// `v2` (default) or `v1`.
    #[serde(default)]
    pub api: Api,
    /// v2: the organization (name or id).
    #[serde(default)]
    pub org: Option<String>,
    /// v2: the bucket.
    #[serde(default)]
    pub bucket: Option<String>,
    /// v2: the API token, sent as `Authorization: Token …`; write `${INFLUX_TOKEN}`.
    /// Never logged.
    #[serde(default)]
    pub token: Option<String>,
    /// v1: the database.
    #[serde(default)]
    pub db: Option<String>,
    /// v1: the retention policy (default: the database's default).
    #[serde(default)]
    pub rp: Option<String>,
    /// v1: user name (basic auth).
    #[serde(default)]
    pub username: Option<String>,
    /// v1: password (basic auth); write `${INFLUX_PASSWORD}`. Never logged.
    #[serde(default)]
    pub password: Option<String>,
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
    /// Retries of failed requests: `{ initial_delay: 100ms, max_delay: 30s,
    /// attempts_before_spool: 3 }` (the defaults).
    #[serde(default)]
    pub retry: RetryConfig,
    /// The on-disk spool: `{ dir, max_size: 1GiB, when_full: backpressure, fsync: true }`;
    /// `dir` defaults to `data/spool/<pipeline>/<node>`.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// Where batches the server rejects as bad data (HTTP 400, 413, 422, …) go, one JSON
    /// line each with the server's message. Default `data/<node>.dead_letters.jsonl`,
    /// relative to `data_dir`.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
    /// Chunks of encoded lines waiting for the writer thread; when full, the sources
    /// pause (backpressure) and no worker waits. Default 64.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// On shutdown, how long to keep trying to deliver before leaving the rest in the
    /// spool for the next start. Default `10s`.
    #[serde(default = "shared::default_drain_timeout")]
    pub drain_timeout: Duration,
    /// For `https://`: `{ ca_file, client_cert, client_key }` (default: the system's
    /// trusted roots, no client certificate).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl fmt::Debug for InfluxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("InfluxConfig")
            .field("url", &crate::io::redact_url(&self.url))
            .field("api", &self.api)
            .field("token", &hide(&self.token))
            .field("username", &self.username)
            .field("password", &hide(&self.password))
            .finish_non_exhaustive()
    }
}

/// The write API with what it needs, planned: each variant carries its own fields.
#[derive(Clone)]
pub enum InfluxApi {
    /// `POST /api/v2/write?org=&bucket=`.
    V2 {
        /// The organization.
        org: String,
        /// The bucket.
        bucket: String,
        /// The token (never logged).
        token: Option<String>,
    },
    /// `POST /write?db=&rp=`.
    V1 {
        /// The database.
        db: String,
        /// The retention policy.
        rp: Option<String>,
        /// User and password for basic auth (never logged).
        credentials: Option<(String, Option<String>)>,
    },
}

impl fmt::Debug for InfluxApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InfluxApi::V2 { org, bucket, .. } => write!(f, "V2 {{ org: {org}, bucket: {bucket} }}"),
            InfluxApi::V1 { db, rp, .. } => write!(f, "V1 {{ db: {db}, rp: {rp:?} }}"),
        }
    }
}

/// The write API of `config`, or every problem reported: missing keys of the chosen
/// API, keys of the other one.
pub fn plan_api(config: &InfluxConfig, ctx: &mut PlanContext<'_>) -> Option<InfluxApi> {
    let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let mut problems = false;
    let mut need = |ctx: &mut PlanContext<'_>, key: &str, value: &Option<String>, hint: &str| {
        let value = given(value);
        if value.is_none() {
            let message = match config.api {
                Api::V2 => format!("the v2 write API needs `{key}`"),
                Api::V1 => format!("the v1 write API needs `{key}`"),
            };
            ctx.error_at_key(key, message).with_hint(hint.to_string());
            problems = true;
        }
        value.unwrap_or_default()
    };
    let api = match config.api {
        Api::V2 => {
            let hint = |k| format!("add `{k}: …`, or `api: v1` with `db:` for InfluxDB 1.x");
            let org = need(ctx, "org", &config.org, &hint("org"));
            let bucket = need(ctx, "bucket", &config.bucket, &hint("bucket"));
            if let Some(key) = foreign(config, &["db", "rp", "username", "password"]) {
                ctx.error_at_key(
                    key,
                    format!("`{key}` belongs to the v1 API, but `api` is v2"),
                )
                .with_hint("write `api: v1`, or use `org` and `bucket`");
                problems = true;
            }
            InfluxApi::V2 {
                org,
                bucket,
                token: given(&config.token),
            }
        }
        Api::V1 => {
            let db = need(ctx, "db", &config.db, "add `db: …` (the database name)");
            if let Some(key) = foreign(config, &["org", "bucket", "token"]) {
                ctx.error_at_key(
                    key,
                    format!("`{key}` belongs to the v2 API, but `api` is v1"),
                )
                .with_hint("write `api: v2`, or use `db`");
                problems = true;
            }
            InfluxApi::V1 {
                db,
                rp: given(&config.rp),
                credentials: config
                    .username
                    .clone()
                    .map(|user| (user, config.password.clone())),
            }
        }
    };
    (!problems).then_some(api)
}

/// The first of `keys` that is set.
fn foreign(config: &InfluxConfig, keys: &[&'static str]) -> Option<&'static str> {
    keys.iter().copied().find(|key| {
        match *key {
            "db" => &config.db,
            "rp" => &config.rp,
            "username" => &config.username,
            "password" => &config.password,
            "org" => &config.org,
            "bucket" => &config.bucket,
            _ => &config.token,
        }
        .is_some()
    })
}

/// Where a write goes: the parsed base URL.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Scheme, host, port and path prefix, without a trailing `/`.
    pub base: String,
}

/// The URL of `config`, or a problem at `url`.
pub fn plan_url(config: &InfluxConfig, ctx: &mut PlanContext<'_>) -> Option<Endpoint> {
    match parse_url(&config.url) {
        Ok(e) => Some(e),
        Err(reason) => {
            let message = format!(
                "invalid InfluxDB URL `{}`: {reason}",
                crate::io::redact_url(&config.url)
            );
            ctx.error_at_key("url", message)
                .with_hint("write http://host:8086 or https://host");
            None
        }
    }
}

/// `text` with any password in it replaced by `***`, for messages.
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
