//! The settings of the `mqtt` source node, and their validation.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use serde::Deserialize;
use smartgrid_runtime::spec::Duration;

use super::error::MqttError;

/// The topic filter subscribed to when `topics` is not given: every Clemap monitor's
/// real-time feature stream.
pub const DEFAULT_TOPIC: &str = "data/realtime/feature/+";

/// The port used when an `mqtt://` URL names none.
pub const DEFAULT_PORT: u16 = 1883;

/// The port used when an `mqtts://` URL names none.
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// One problem found by [`MqttConfig::validate`]: the key at fault, what is wrong, and
/// a hint on how to fix it.
pub type ConfigIssue = (&'static str, String, String);

/// The delivery guarantee of a subscription or a publish. QoS 2 is not offered: the
/// pipeline is at-least-once end to end, so QoS 2's extra round trip buys nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Qos {
    /// QoS 0: fire and forget; a message in flight when a connection drops is lost.
    AtMostOnce,
    /// QoS 1: acknowledged; a message is redelivered until it was acknowledged.
    #[default]
    AtLeastOnce,
}

impl Qos {
    /// The QoS level, `0` or `1`.
    pub fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        }
    }

    pub(crate) fn to_rumqttc(self) -> rumqttc::QoS {
        match self {
            Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
            Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        }
    }
}

impl TryFrom<u8> for Qos {
    type Error = MqttError;

    fn try_from(level: u8) -> Result<Self, Self::Error> {
        match level {
            0 => Ok(Qos::AtMostOnce),
            1 => Ok(Qos::AtLeastOnce),
            _ => Err(MqttError::InvalidConfig {
                key: "qos",
                message: format!("QoS {level} is not supported; use 0 or 1"),
            }),
        }
    }
}

/// Where a URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// The in-process broker.
    Embedded,
    /// A broker at `host:port`; `host` is as the socket address wants it (an IPv6
    /// literal in brackets).
    Remote { host: String, port: u16, tls: bool },
}

impl Endpoint {
    /// Parses `mqtt://host[:port]`, `mqtts://host[:port]` or `embedded`.
    pub(crate) fn parse(url: &str) -> Result<Endpoint, MqttError> {
        let bad = |reason: &str| MqttError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = url.trim();
        if trimmed == "embedded" {
            return Ok(Endpoint::Embedded);
        }
        if trimmed.is_empty() {
            return Err(bad("it is empty"));
        }
        let parsed = url::Url::parse(trimmed).map_err(|e| bad(&e.to_string()))?;
        let tls = match parsed.scheme() {
            "mqtt" => false,
            "mqtts" => true,
            "tcp" => return Err(bad("the scheme `tcp://` is spelled `mqtt://` here")),
            "ssl" | "tls" => return Err(bad("the scheme for TLS is spelled `mqtts://` here")),
            other => {
                return Err(bad(&format!(
                    "the scheme `{other}` is not supported; use mqtt:// or mqtts://"
                )));
            }
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL; use the `username` and `password` keys",
            ));
        }
        if !matches!(parsed.path(), "" | "/") {
            return Err(bad("a broker URL has no path"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("a broker URL has no query or fragment"));
        }
        let host = match parsed.host() {
            None => return Err(bad("it names no host")),
            Some(url::Host::Domain("")) => return Err(bad("it names no host")),
            Some(url::Host::Domain(d)) => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => {
                if tls {
                    return Err(bad(
                        "an IPv6 address cannot be used with mqtts://; use a host name",
                    ));
                }
                format_ipv6(ip)
            }
        };
        let port = match parsed.port() {
            Some(0) => return Err(bad("port 0 is not a valid broker port")),
            Some(port) => port,
            None if tls => DEFAULT_TLS_PORT,
            None => DEFAULT_PORT,
        };
        Ok(Endpoint::Remote { host, port, tls })
    }
}

fn format_ipv6(ip: Ipv6Addr) -> String {
    // rumqttc joins host and port as `{host}:{port}`, so the brackets must be kept.
    format!("[{ip}]")
}

fn default_topics() -> Vec<String> {
    vec![DEFAULT_TOPIC.to_string()]
}

fn default_qos() -> u8 {
    1
}

fn default_keep_alive() -> Duration {
    Duration(StdDuration::from_secs(30))
}

fn default_channel_capacity() -> usize {
    10_000
}

fn default_reconnect_min() -> Duration {
    Duration(StdDuration::from_secs(1))
}

fn default_reconnect_max() -> Duration {
    Duration(StdDuration::from_secs(300))
}

/// Settings of the `mqtt` source: subscribe to topics on a broker and emit each
/// message's topic and payload.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker to connect to: `mqtt://host:port` (plain TCP, port 1883 if omitted),
    /// `mqtts://host:port` (TLS, port 8883 if omitted), or `embedded` to start a broker
    /// inside this process on 127.0.0.1 (shared by every node that says `embedded`;
    /// useful with the simulator and for tests).
    pub url: String,

    /// Topic filters to subscribe to; `+` matches one level, `#` the rest.
    /// Default: `["data/realtime/feature/+"]`.
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,

    /// Delivery guarantee: `1` (default) acknowledges a message only after it was handed
    /// to the pipeline, so a crash or disconnect never loses an acknowledged message
    /// (it may deliver one twice); `0` is cheaper but loses messages in flight when the
    /// connection drops.
    #[serde(default = "default_qos")]
    pub qos: u8,

    /// The MQTT client id. The broker keeps a persistent session under this id, so
    /// it must be unique among the broker's clients and stable across restarts.
    /// Default: `smartgrid-<pipeline>-<node>`.
    #[serde(default)]
    pub client_id: Option<String>,

    /// `false` (default): a persistent session; the broker keeps the subscriptions and
    /// queues QoS 1 messages while this pipeline is down, and delivers them when it
    /// reconnects. `true`: start afresh on every connect; messages published while
    /// disconnected are lost.
    #[serde(default)]
    pub clean_session: bool,

    /// User name for brokers that require a login.
    #[serde(default)]
    pub username: Option<String>,

    /// Password for `username`. Write it as `${VAR}` to take it from the environment
    /// instead of the file; it is never logged.
    #[serde(default)]
    pub password: Option<String>,

    /// PEM file with the CA certificate(s) that signed the broker's certificate
    /// (`mqtts://` only). Default: the system's trusted roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,

    /// PEM file with this client's certificate chain, for brokers that authenticate
    /// clients by certificate (`mqtts://` only; needs `client_key`).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,

    /// PEM file with the private key of `client_cert` (`mqtts://` only).
    #[serde(default)]
    pub client_key: Option<PathBuf>,

    /// How often to ping the broker when idle, e.g. `30s` (default). The broker drops
    /// the connection after 1.5 × this without traffic. `0s` disables pings; otherwise
    /// between 1 s and 65535 s.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Duration,

    /// How many received messages may wait for the pipeline (default 10000). When the
    /// pipeline falls behind and this fills up, the client stops reading from the
    /// broker (and stops acknowledging) until there is room: memory stays bounded.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,

    /// Wait this long before the first reconnect attempt after a connection failure
    /// (default `1s`); the wait doubles with each failed attempt.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min: Duration,

    /// The longest wait between reconnect attempts (default `300s`).
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: Duration,
}

impl MqttConfig {
    /// A config for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        MqttConfig {
            url: url.into(),
            topics: default_topics(),
            qos: default_qos(),
            client_id: None,
            clean_session: false,
            username: None,
            password: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            keep_alive: default_keep_alive(),
            channel_capacity: default_channel_capacity(),
            reconnect_min: default_reconnect_min(),
            reconnect_max: default_reconnect_max(),
        }
    }

    /// The client id: `client_id` if set, else `smartgrid-<pipeline>-<node>`.
    pub fn client_id(&self, pipeline: &str, node: &str) -> String {
        match &self.client_id {
            Some(id) => id.clone(),
            None => format!("smartgrid-{pipeline}-{node}"),
        }
    }

    /// The configured QoS; anything but 0 counts as 1 (`validate` refuses other values).
    pub fn qos(&self) -> Qos {
        if self.qos == 0 {
            Qos::AtMostOnce
        } else {
            Qos::AtLeastOnce
        }
    }

    pub(crate) fn endpoint(&self) -> Result<Endpoint, MqttError> {
        Endpoint::parse(&self.url)
    }

    /// Checks the settings without touching the network or the file system. Each
    /// problem names its key, says what is wrong and gives a hint.
    pub fn validate(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues: Vec<ConfigIssue> = Vec::new();
        let mut issue = |key: &'static str, message: String, hint: &str| {
            issues.push((key, message, hint.to_string()));
        };

        let endpoint = match self.endpoint() {
            Ok(endpoint) => Some(endpoint),
            Err(e) => {
                issue(
                    "url",
                    e.to_string(),
                    "write mqtt://host:port, mqtts://host:port or `embedded`",
                );
                None
            }
        };
        let tls = matches!(endpoint, Some(Endpoint::Remote { tls: true, .. }));
        let embedded = matches!(endpoint, Some(Endpoint::Embedded));

        if self.topics.is_empty() {
            issue(
                "topics",
                "no topic filter given".into(),
                &format!("subscribe to at least one filter, e.g. `{DEFAULT_TOPIC}`"),
            );
        }
        for topic in &self.topics {
            if topic.is_empty() {
                issue(
                    "topics",
                    "an empty topic filter".into(),
                    "remove it or write a filter",
                );
            } else if !rumqttc::valid_filter(topic) {
                issue(
                    "topics",
                    format!("`{topic}` is not a valid topic filter"),
                    "`+` must fill a whole level and `#` must be the last level, e.g. `data/+/feature/#`",
                );
            }
        }

        if self.qos > 1 {
            issue(
                "qos",
                format!("QoS {} is not supported", self.qos),
                "use 1 (at least once, the default) or 0 (at most once)",
            );
        }

        if let Some(id) = &self.client_id {
            if id.is_empty() {
                issue(
                    "client_id",
                    "the client id is empty".into(),
                    "remove the key to use smartgrid-<pipeline>-<node>, or give a unique id",
                );
            } else if id.len() > usize::from(u16::MAX) {
                issue(
                    "client_id",
                    "the client id is too long".into(),
                    "use a short id",
                );
            }
        }

        if self.password.is_some() && self.username.is_none() {
            issue(
                "password",
                "a password without a username".into(),
                "MQTT 3.1.1 sends a password only with a username; set `username`",
            );
        }
        if embedded && (self.username.is_some() || self.password.is_some()) {
            let key = if self.username.is_some() {
                "username"
            } else {
                "password"
            };
            issue(
                key,
                "the embedded broker does not check logins".into(),
                "remove the credentials, or use an external broker",
            );
        }

        for (key, value) in [
            ("ca_file", &self.ca_file),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ] {
            if value.is_some() && !tls {
                issue(
                    key,
                    format!("`{key}` only applies to TLS connections"),
                    "use an mqtts:// URL, or remove the key",
                );
            }
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => issue(
                "client_cert",
                "a client certificate without its key".into(),
                "set `client_key` to the PEM file with the certificate's private key",
            ),
            (None, Some(_)) => issue(
                "client_key",
                "a client key without a certificate".into(),
                "set `client_cert` to the PEM file with the client certificate",
            ),
            _ => {}
        }

        let keep_alive = self.keep_alive.0;
        if !keep_alive.is_zero() && keep_alive < StdDuration::from_secs(1) {
            issue(
                "keep_alive",
                format!("{keep_alive:?} is shorter than a second"),
                "use whole seconds, e.g. `30s`, or `0s` to disable pings",
            );
        } else if keep_alive > StdDuration::from_secs(u64::from(u16::MAX)) {
            issue(
                "keep_alive",
                format!("{keep_alive:?} is longer than MQTT allows (65535 s)"),
                "use e.g. `30s`",
            );
        }

        if self.channel_capacity == 0 {
            issue(
                "channel_capacity",
                "the capacity must be at least 1".into(),
                "use e.g. 10000 (the default)",
            );
        }

        if self.reconnect_min.0.is_zero() {
            issue(
                "reconnect_min",
                "a zero reconnect delay would hammer an unreachable broker".into(),
                "use e.g. `1s` (the default)",
            );
        }
        if self.reconnect_max.0 < self.reconnect_min.0 {
            issue(
                "reconnect_max",
                format!(
                    "reconnect_max ({:?}) is shorter than reconnect_min ({:?})",
                    self.reconnect_max.0, self.reconnect_min.0
                ),
                "make reconnect_max at least reconnect_min",
            );
        }

        if issues.is_empty() {
            Ok(())
        } else {
            Err(issues)
        }
    }

    /// The first problem `validate` finds, as an error.
    pub(crate) fn check(&self) -> Result<(), MqttError> {
        match self.validate() {
            Ok(()) => Ok(()),
            Err(issues) => {
                let (key, message, hint) = issues
                    .into_iter()
                    .next()
                    .expect("validate returns Err only with at least one issue");
                Err(MqttError::InvalidConfig {
                    key,
                    message: format!("{message} ({hint})"),
                })
            }
        }
    }
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("topics", &self.topics)
            .field("qos", &self.qos)
            .field("client_id", &self.client_id)
            .field("clean_session", &self.clean_session)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("keep_alive", &self.keep_alive.0)
            .field("channel_capacity", &self.channel_capacity)
            .field("reconnect_min", &self.reconnect_min.0)
            .field("reconnect_max", &self.reconnect_max.0)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(cfg: &MqttConfig) -> Vec<&'static str> {
        match cfg.validate() {
            Ok(()) => Vec::new(),
            Err(issues) => issues.into_iter().map(|(key, _, _)| key).collect(),
        }
    }

    #[test]
    fn defaults_are_as_documented() {
        let cfg: MqttConfig =
            serde_json::from_str(r#"{"url": "mqtt://127.0.0.1:1883"}"#).expect("valid");
        assert_eq!(cfg.topics, vec!["data/realtime/feature/+".to_string()]);
        assert_eq!(cfg.qos(), Qos::AtLeastOnce);
        assert!(!cfg.clean_session);
        assert_eq!(cfg.channel_capacity, 10_000);
        assert_eq!(cfg.reconnect_min.0, StdDuration::from_secs(1));
        assert_eq!(cfg.reconnect_max.0, StdDuration::from_secs(300));
        assert_eq!(cfg.keep_alive.0, StdDuration::from_secs(30));
        assert_eq!(cfg.client_id("home", "meters"), "smartgrid-home-meters");
        assert_eq!(cfg.validate(), Ok(()));
    }

    /// Through the pipeline file's own deserializer: durations with units, `${VAR}`
    /// for the password, paths.
    #[test]
    fn from_a_pipeline_file() {
        use smartgrid_runtime::spec::{Env, parse_str};
        let yaml = r#"
pipeline: home
nodes:
  meters:
    type: mqtt
    url: mqtts://broker.local:8883
    topics: [a/+, b/#]
    qos: 0
    clean_session: true
    username: meter
    password: ${MQTT_PASSWORD}
    ca_file: certs/ca.pem
    keep_alive: 1m
    channel_capacity: 500
    reconnect_min: 500ms
    reconnect_max: 1m
"#;
        let env = Env::Fixed([("MQTT_PASSWORD".to_string(), "hunter2".to_string())].into());
        let spec = parse_str(yaml, "pipeline.yaml", ".".into(), env).expect("parses");
        let node = spec.nodes.first().expect("one node");
        let cfg: MqttConfig = node.settings().expect("valid settings");
        assert_eq!(cfg.password.as_deref(), Some("hunter2"));
        assert_eq!(cfg.topics, ["a/+", "b/#"]);
        assert_eq!(cfg.qos(), Qos::AtMostOnce);
        assert_eq!(cfg.keep_alive.0, StdDuration::from_secs(60));
        assert_eq!(cfg.reconnect_min.0, StdDuration::from_millis(500));
        assert_eq!(cfg.ca_file, Some(PathBuf::from("certs/ca.pem")));
        assert_eq!(cfg.validate(), Ok(()));
        assert!(!format!("{cfg:?}").contains("hunter2"));

        let typo = yaml.replace("clean_session", "clean_sesion");
        let spec = parse_str(
            &typo,
            "pipeline.yaml",
            ".".into(),
            Env::Fixed(Default::default()),
        )
        .expect("parses");
        let node = spec.nodes.first().expect("one node");
        assert!(node.settings::<MqttConfig>().is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<MqttConfig>(r#"{"url": "embedded", "qso": 1}"#)
            .expect_err("unknown key");
        assert!(err.to_string().contains("qso"), "{err}");
    }

    #[test]
    fn urls() {
        assert_eq!(Endpoint::parse("embedded").ok(), Some(Endpoint::Embedded));
        assert_eq!(
            Endpoint::parse("mqtt://broker.local:1884").ok(),
            Some(Endpoint::Remote {
                host: "broker.local".into(),
                port: 1884,
                tls: false
            })
        );
        assert_eq!(
            Endpoint::parse("mqtts://broker.local").ok(),
            Some(Endpoint::Remote {
                host: "broker.local".into(),
                port: 8883,
                tls: true
            })
        );
        assert_eq!(
            Endpoint::parse("mqtt://[::1]:1883").ok(),
            Some(Endpoint::Remote {
                host: "[::1]".into(),
                port: 1883,
                tls: false
            })
        );
        for bad in [
            "",
            "broker:1883",
            "http://broker:1883",
            "tcp://broker:1883",
            "mqtt://",
            "mqtt://broker:0",
            "mqtt://broker:99999",
            "mqtt://user:pw@broker:1883",
            "mqtt://broker:1883/topic",
            "mqtt://broker:1883?x=1",
            "mqtts://[::1]:8883",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn validation_points_at_the_key() {
        let mut cfg = MqttConfig::new("mqtt://127.0.0.1:1883");
        cfg.qos = 2;
        cfg.ca_file = Some("ca.pem".into());
        cfg.client_key = Some("key.pem".into());
        cfg.password = Some("secret".into());
        cfg.topics = vec!["a/#/b".into()];
        cfg.channel_capacity = 0;
        cfg.reconnect_min = Duration(StdDuration::from_secs(10));
        cfg.reconnect_max = Duration(StdDuration::from_secs(5));
        cfg.keep_alive = Duration(StdDuration::from_millis(500));
        let mut found = keys(&cfg);
        found.sort_unstable();
        assert_eq!(
            found,
            vec![
                "ca_file",
                "channel_capacity",
                "client_key",
                "client_key",
                "keep_alive",
                "password",
                "qos",
                "reconnect_max",
                "topics",
            ]
        );

        let mut tls = MqttConfig::new("mqtts://broker:8883");
        tls.ca_file = Some("ca.pem".into());
        tls.client_cert = Some("cert.pem".into());
        tls.client_key = Some("key.pem".into());
        tls.username = Some("u".into());
        tls.password = Some("p".into());
        assert_eq!(keys(&tls), Vec::<&str>::new());

        let mut embedded = MqttConfig::new("embedded");
        embedded.username = Some("u".into());
        assert_eq!(keys(&embedded), vec!["username"]);

        let bad_url = MqttConfig::new("htp://x");
        assert_eq!(keys(&bad_url), vec!["url"]);
    }

    #[test]
    fn debug_redacts_the_password() {
        let mut cfg = MqttConfig::new("mqtt://127.0.0.1:1883");
        cfg.username = Some("meter".into());
        cfg.password = Some("hunter2".into());
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
