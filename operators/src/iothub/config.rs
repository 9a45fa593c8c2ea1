//! The settings of the `iothub` sink, and their validation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use serde::Deserialize;
use smartgrid_runtime::spec::Duration;

use super::batch::{BLOCK_BYTES, MAX_MESSAGE_BYTES};
use super::client::DEFAULT_PORT;
use super::connection_string::{ConnectionString, Credential};
use crate::delivery::{RetryConfig, SpoolConfig};
use crate::io::TlsConfig;

pub(crate) fn default_port() -> u16 {
    DEFAULT_PORT
}
pub(crate) fn port<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let value = u64::deserialize(deserializer)?;
    match u16::try_from(value) {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(smartgrid_runtime::spec::error_with_hint(
            "not a TCP port",
            "a port is 1..=65535; IoT Hub and IoT Edge listen for MQTT over TLS on 8883 (the default)",
        )),
    }
}

pub(crate) fn default_token_ttl() -> Duration {
    Duration(StdDuration::from_secs(3600))
}
fn default_max_message_bytes() -> usize {
    BLOCK_BYTES
}
fn default_flush_interval() -> Duration {
    Duration(StdDuration::from_secs(30 * 60))
}
pub(crate) fn default_keep_alive() -> Duration {
    Duration(StdDuration::from_secs(60))
}
fn default_queue() -> usize {
    crate::delivery::config::DEFAULT_QUEUE
}

/// The certificate and key of a device that authenticates with X.509.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct X509Config {
    /// PEM file with the device's certificate (chain); relative to the pipeline file.
    pub cert: PathBuf,
    /// PEM file with the certificate's private key (unencrypted).
    pub key: PathBuf,
}

/// Settings of the `iothub` sink: send readings to Azure IoT Hub as JSON, packed into
/// messages that fit the hub's 4 KB billing block, through a durable outbox.
#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IotHubConfig {
    /// The device's connection string,
    /// `HostName=<hub>.azure-devices.net;DeviceId=<device>;SharedAccessKey=<key>`
    /// (optionally `ModuleId=…`, and `GatewayHostName=…` behind an IoT Edge gateway;
    /// `x509=true` instead of the key for a certificate device). Write it as
    /// `${IOTHUB_CONNECTION_STRING}`: it holds a secret and is never logged.
    pub connection_string: String,

    /// For an `x509=true` device: `{cert: device.pem, key: device.key}`.
    #[serde(default)]
    pub x509: Option<X509Config>,

    /// Connect to this host instead of the connection string's `GatewayHostName` or
    /// `HostName` (the hub's name stays in the login). Rarely needed: a local broker
    /// or a proxy.
    #[serde(default)]
    pub host: Option<String>,

    /// The MQTT-over-TLS port (default 8883).
    #[serde(default = "default_port", deserialize_with = "port")]
    pub port: u16,

    /// `{ ca_file: gateway-ca.pem }`: the CA certificate(s) of the hub or the IoT Edge
    /// gateway (default: the system's trusted roots; a gateway usually needs its own
    /// CA). The device's own certificate is `x509`, not `tls.client_cert`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,

    /// How long each SAS token is valid (default `1h`); the client reconnects with a
    /// new token after 80 % of it.
    #[serde(default = "default_token_ttl")]
    pub token_ttl: Duration,

    /// The largest message, in bytes (default 4096: IoT Hub bills each started 4 KB
    /// block as one message; at most 262144, the hub's limit).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,

    /// Send a message at the latest this long after its first record (default `30m`).
    /// Records that trickle in (a triplet a minute) need time to fill a 4 KB block:
    /// every flush started early is a billed message that could have held more.
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Duration,

    /// Application properties on every message, e.g. `{type: prediction_error}`, for
    /// the hub's message routing.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,

    /// The outbox: messages wait there until the hub acknowledged them, across outages,
    /// restarts and crashes. `{ dir: outbox, max_size: 256MiB, fsync: true }`: on disk,
    /// in `dir` (relative to `data_dir`) or by default under the state directory
    /// (`<state_dir>/p0/<node>/outbox`). When it is full, new messages go to the
    /// dead-letter file.
    #[serde(default)]
    pub spool: SpoolConfig,

    /// Reconnecting: `{ initial_delay: 1s, max_delay: 300s }` (the defaults); the delay
    /// doubles per failed attempt.
    #[serde(default)]
    pub retry: RetryConfig,

    /// MQTT keep-alive (default `60s`, between 1 s and 1177 s as IoT Hub requires).
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Duration,

    /// On exit (end of input, SIGINT, SIGTERM), wait this long for the hub to
    /// acknowledge what is pending (default `10s`). What is left stays in the spool
    /// folder for the next run.
    #[serde(default = "crate::delivery::config::default_drain_timeout")]
    pub drain_timeout: Duration,

    /// Records waiting for the uplink thread, in chunks; when full, the sources pause
    /// and no worker waits. Default 64.
    #[serde(default = "default_queue")]
    pub queue: usize,

    /// Where records that cannot be sent go (a record too big for a message, a full
    /// outbox), one JSON line each. Default `data/<node>.dead_letters.jsonl`.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,

    /// At start, wait this long for the first connection (default `10s`). A hub not
    /// reached by then is logged, and the run starts anyway: the messages wait in the
    /// outbox on disk until the hub is reached.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
}

fn default_connect_timeout() -> Duration {
    Duration(StdDuration::from_secs(10))
}

const CONNECTION_STRING_HINT: &str = "use the device's connection string from the Azure portal \
     (IoT Hub → Devices → <device> → Primary connection string): \
     HostName=<hub>.azure-devices.net;DeviceId=<device>;SharedAccessKey=<base64 key>";

impl IotHubConfig {
    /// The sink's settings with only the connection given and the rest at their
    /// defaults: another user of a device connection (a predict node's
    /// `updates.iothub`) is checked by the same [`IotHubConfig::validate`].
    pub(crate) fn connection_only(
        connection_string: String,
        x509: Option<X509Config>,
        host: Option<String>,
        port: u16,
        tls: Option<TlsConfig>,
        token_ttl: Duration,
        keep_alive: Duration,
    ) -> Self {
        IotHubConfig {
            connection_string,
            x509,
            host,
            port,
            tls,
            token_ttl,
            max_message_bytes: default_max_message_bytes(),
            flush_interval: default_flush_interval(),
            properties: BTreeMap::new(),
            spool: SpoolConfig::default(),
            retry: RetryConfig::default(),
            keep_alive,
            drain_timeout: crate::delivery::config::default_drain_timeout(),
            queue: default_queue(),
            dead_letter: None,
            connect_timeout: default_connect_timeout(),
        }
    }

    /// Checks the settings without touching the network or the file system; the parsed
    /// connection string, or `None` after every problem went to `report` (the key at
    /// fault, the message, a hint).
    pub fn validate(
        &self,
        report: &mut dyn FnMut(&'static str, String, &str),
    ) -> Option<ConnectionString> {
        let mut problems = 0;
        let mut issue = |key: &'static str, message: String, hint: &str| {
            problems += 1;
            report(key, message, hint);
        };
        let connection = match self.connection_string.parse::<ConnectionString>() {
            Ok(cs) => Some(cs),
            Err(e) => {
                issue(
                    "connection_string",
                    format!("invalid IoT Hub connection string: {e}"),
                    CONNECTION_STRING_HINT,
                );
                None
            }
        };
        if let Some(cs) = &connection {
            match (&cs.credential, &self.x509) {
                (Credential::X509, None) => issue(
                    "connection_string",
                    "the connection string says x509=true but no certificate is given".into(),
                    "add `x509: {cert: device.pem, key: device.key}`",
                ),
                (Credential::SharedAccessKey(_), Some(_)) => issue(
                    "x509",
                    "a certificate is given but the connection string has a SharedAccessKey".into(),
                    "use `x509=true` instead of the key in the connection string, or remove `x509`",
                ),
                _ => {}
            }
        }
        if let Some(host) = &self.host
            && (host.is_empty() || host.contains(['/', ':', ' ']))
        {
            issue(
                "host",
                format!("`{host}` is not a host name"),
                "write a bare host name or IPv4 address, without scheme or port",
            );
        }
        if self.port == 0 {
            issue(
                "port",
                "port 0 is not a valid port".into(),
                "IoT Hub and IoT Edge listen for MQTT over TLS on 8883 (the default)",
            );
        }
        if !(256..=MAX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            issue(
                "max_message_bytes",
                format!("{} bytes is outside 256..=262144", self.max_message_bytes),
                "use 4096 (one billing block, the default) or a multiple of it up to 262144",
            );
        }
        if self.flush_interval.0.is_zero() {
            issue(
                "flush_interval",
                "a zero flush interval would send every record alone".into(),
                "use e.g. `30m` (the default)",
            );
        }
        let ttl = self.token_ttl.0;
        if ttl < StdDuration::from_secs(60) || ttl > StdDuration::from_secs(365 * 86_400) {
            issue(
                "token_ttl",
                format!("{ttl:?} is outside 1 minute..=365 days"),
                "use e.g. `1h` (the default)",
            );
        }
        let keep_alive = self.keep_alive.0;
        if keep_alive < StdDuration::from_secs(1) || keep_alive > StdDuration::from_secs(1177) {
            issue(
                "keep_alive",
                format!("{keep_alive:?} is outside 1 s..=1177 s"),
                "IoT Hub accepts keep-alives up to 1177 s; use e.g. `60s` (the default)",
            );
        }
        for name in self.properties.keys() {
            if name.is_empty() || name.starts_with('$') {
                issue(
                    "properties",
                    format!("`{name}` cannot be an application property name"),
                    "names starting with `$` are IoT Hub's system properties; pick another name",
                );
            }
        }
        if self.retry.attempts_before_spool.is_some() {
            issue(
                "retry",
                "`retry.attempts_before_spool` does not apply to IoT Hub".into(),
                "every message waits in the outbox until the hub acknowledges it; remove the key",
            );
        }
        if self.spool.when_full == Some(crate::spool::WhenFull::DropOldest) {
            issue(
                "spool",
                "the IoT Hub outbox cannot drop its oldest messages".into(),
                "remove `when_full`: a full outbox sends new records to the dead-letter file",
            );
        }
        if self
            .tls
            .as_ref()
            .is_some_and(|t| t.client_cert.is_some() || t.client_key.is_some())
        {
            issue(
                "tls",
                "a device authenticates with `x509`, not with `tls.client_cert`".into(),
                "write `x509: {cert: device.pem, key: device.key}` and `x509=true` in the connection string",
            );
        }
        connection.filter(|_| problems == 0)
    }
}

impl fmt::Debug for IotHubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IotHubConfig")
            .field("connection_string", &"<redacted>")
            .field("x509", &self.x509)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("token_ttl", &self.token_ttl.0)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("flush_interval", &self.flush_interval.0)
            .field("properties", &self.properties)
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use smartgrid_runtime::spec::{Env, parse_str};

    use super::*;

    const CS: &str =
        "HostName=h.azure-devices.net;DeviceId=meter-7;SharedAccessKey=c2VjcmV0LWtleQ==";

    fn config(extra: &str) -> Result<IotHubConfig, String> {
        let yaml = format!(
            "pipeline: t\nnodes:\n  up:\n    type: iothub\n    input: x\n    connection_string: ${{IOTHUB_CONNECTION_STRING}}\n{extra}"
        );
        let env = Env::Fixed([("IOTHUB_CONNECTION_STRING".to_string(), CS.to_string())].into());
        let spec = parse_str(&yaml, "p.yaml", ".".into(), env).map_err(|e| format!("{e:?}"))?;
        spec.nodes[0].settings().map_err(|e| format!("{e:?}"))
    }

    /// Every problem `cfg.validate` reports: key, message, hint.
    fn problems(cfg: &IotHubConfig) -> Vec<(&'static str, String, String)> {
        let mut found = Vec::new();
        cfg.validate(&mut |key, message, hint| found.push((key, message, hint.to_string())));
        found
    }

    fn keys(cfg: &IotHubConfig) -> Vec<&'static str> {
        problems(cfg).into_iter().map(|(k, _, _)| k).collect()
    }

    #[test]
    fn defaults_and_redaction() {
        let cfg = config("").expect("valid");
        assert_eq!(cfg.port, 8883);
        assert_eq!(cfg.max_message_bytes, 4096);
        assert_eq!(cfg.token_ttl.0, StdDuration::from_secs(3600));
        assert_eq!(cfg.flush_interval.0, StdDuration::from_secs(1800));
        let cs = cfg.validate(&mut |_, m, _| panic!("{m}")).expect("valid");
        assert_eq!(cs.device_id, "meter-7");
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("SharedAccessKey"),
            "{shown}"
        );
    }

    #[test]
    fn every_problem_names_its_key() {
        let mut cfg = config(
            "    max_message_bytes: 100\n    flush_interval: 0s\n    token_ttl: 5s\n    keep_alive: 2000s\n    properties: {$ct: x}\n    retry: {attempts_before_spool: 2}\n    host: mqtts://x\n    x509: {cert: a.pem, key: a.key}\n",
        )
        .expect("parses");
        cfg.port = 0;
        let mut found = keys(&cfg);
        found.sort_unstable();
        assert_eq!(
            found,
            [
                "flush_interval",
                "host",
                "keep_alive",
                "max_message_bytes",
                "port",
                "properties",
                "retry",
                "token_ttl",
                "x509"
            ]
        );
        let mut bad = config("").expect("parses");
        bad.connection_string = "HostName=h;DeviceId=d".into();
        let issues = problems(&bad);
        assert_eq!(issues[0].0, "connection_string");
        assert!(
            issues[0].2.contains("Primary connection string"),
            "{issues:?}"
        );
        assert!(
            config("    prot: 8883\n").is_err(),
            "unknown keys are refused"
        );
        let err = config("    port: 70000\n").expect_err("ports are u16");
        assert!(
            err.contains("not a TCP port") && err.contains("8883"),
            "{err}"
        );
        assert!(config("    port: 0\n").is_err());
    }
}
