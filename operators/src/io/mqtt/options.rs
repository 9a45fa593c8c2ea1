//! Typed connection options, made once and then only read ("parse, don't validate"):
//! where the broker is ([`Endpoint`]), who we are ([`ClientIdentity`], whose password
//! never shows in `Debug`, logs or errors), the delivery guarantee ([`Qos`]), how to
//! retry ([`Retry`]) and TLS ([`TlsOptions`]). [`ConnectOptions`] holds them all and is
//! the only thing turned into rumqttc's `MqttOptions`, for every client of this layer.

use std::fmt;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use super::embedded;
use super::error::MqttError;
use super::tls::TlsOptions;
use crate::io::Backoff;

/// The port used when an `mqtt://` URL names none.
pub const DEFAULT_PORT: u16 = 1883;

/// The port used when an `mqtts://` URL names none.
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// The largest packet sent (matches the embedded broker's limit), and the default for
/// the largest payload a subscriber hands on.
pub const MAX_PACKET_SIZE: usize = 1024 * 1024;

/// The largest packet MQTT can frame (a 4-byte remaining length). A subscriber reads up
/// to this, so that a message over its own limit is read, acknowledged and refused once
/// instead of breaking the connection (and being redelivered) for ever.
pub const MQTT_MAX_PACKET: usize = 268_435_455;

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

/// Where a broker is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// The process's embedded broker (started on first use).
    Embedded,
    /// A broker at `host:port`; `host` is as the socket address wants it (an IPv6
    /// literal in brackets).
    Remote {
        /// Host name or address.
        host: String,
        /// TCP port.
        port: u16,
        /// TLS (`mqtts://`) or plain TCP (`mqtt://`).
        tls: bool,
    },
}

impl Endpoint {
    /// Parses `mqtt://host[:port]`, `mqtts://host[:port]` or `embedded`.
    pub fn parse(url: &str) -> Result<Endpoint, MqttError> {
        let bad = |reason: &str| MqttError::InvalidUrl {
            url: crate::io::redact_url(url),
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
            None | Some(url::Host::Domain("")) => return Err(bad("it names no host")),
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

    /// Whether the connection uses TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Endpoint::Remote { tls: true, .. })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Embedded => f.write_str("embedded"),
            Endpoint::Remote { host, port, tls } => {
                let scheme = if *tls { "mqtts" } else { "mqtt" };
                write!(f, "{scheme}://{host}:{port}")
            }
        }
    }
}

fn format_ipv6(ip: Ipv6Addr) -> String {
    // rumqttc joins host and port as `{host}:{port}`, so the brackets must be kept.
    format!("[{ip}]")
}

/// A password or token. It is shown as `<redacted>` by `Debug` and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Password(secret.into())
    }

    /// The secret itself, for the CONNECT packet only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Who connects: the client id (the broker keeps a session under it) and an optional
/// login. MQTT 3.1.1 sends a password only with a user name, so the password lives
/// inside the login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The MQTT client id.
    pub client_id: String,
    /// User name and password (`None`: anonymous).
    pub login: Option<(String, Option<Password>)>,
}

impl ClientIdentity {
    /// An anonymous client.
    pub fn new(client_id: impl Into<String>) -> Self {
        ClientIdentity {
            client_id: client_id.into(),
            login: None,
        }
    }

    /// With a user name and (optional) password.
    pub fn with_login(mut self, username: impl Into<String>, password: Option<Password>) -> Self {
        self.login = Some((username.into(), password));
        self
    }
}

/// How long to wait between connection attempts: [`Backoff`] from `initial` doubling
/// up to `max`, with jitter, reset after a successful connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Retry {
    /// From `initial` up to `max` (`max` is raised to `initial` if shorter).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Retry {
            initial,
            max: max.max(initial),
        }
    }

    pub(crate) fn backoff(self) -> Backoff {
        Backoff::new(self.initial, self.max)
    }
}

impl Default for Retry {
    /// 1 s up to 300 s.
    fn default() -> Self {
        Retry::new(Duration::from_secs(1), Duration::from_secs(300))
    }
}

/// Everything a connection needs. Build it once (the `mqtt` node does at plan time);
/// the subscriber, the publisher and the IoT Hub client all connect through it.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// The broker.
    pub endpoint: Endpoint,
    /// Client id and login.
    pub identity: ClientIdentity,
    /// Trust and client certificate, for a TLS endpoint (default: system roots).
    pub tls: TlsOptions,
    /// Ping interval when idle; `0` disables pings, otherwise whole seconds from 1 to
    /// 65535 (shorter or longer values are clamped).
    pub keep_alive: Duration,
    /// Ask the broker to forget the session on connect.
    pub clean_session: bool,
    /// The wait between attempts.
    pub retry: Retry,
    /// The largest packet read from the broker ([`MAX_PACKET_SIZE`] unless a subscriber
    /// raises it to [`MQTT_MAX_PACKET`]).
    pub max_incoming_packet: usize,
}

impl ConnectOptions {
    /// Defaults for `endpoint` and `identity`: 30 s keep-alive, persistent session,
    /// retries from 1 s to 300 s, system roots for TLS.
    pub fn new(endpoint: Endpoint, identity: ClientIdentity) -> Self {
        ConnectOptions {
            endpoint,
            identity,
            tls: TlsOptions::default(),
            keep_alive: Duration::from_secs(30),
            clean_session: false,
            retry: Retry::default(),
            max_incoming_packet: MAX_PACKET_SIZE,
        }
    }

    /// rumqttc's options and `host:port` for messages. `Endpoint::Embedded` starts the
    /// process's embedded broker if it is not running yet; a TLS endpoint gets its rustls
    /// configuration here. Manual acks, inflight and the request channel are left to the
    /// caller.
    pub(crate) fn rumqttc(&self) -> Result<(MqttOptions, String), MqttError> {
        let (host, port, tls) = match &self.endpoint {
            Endpoint::Embedded => {
                let addr = embedded::embedded_broker()?;
                (addr.ip().to_string(), addr.port(), false)
            }
            Endpoint::Remote { host, port, tls } => (host.clone(), *port, *tls),
        };
        let broker = format!("{host}:{port}");
        let mut options = MqttOptions::new(self.identity.client_id.clone(), host, port);
        let keep_alive = match self.keep_alive.as_secs() {
            0 if self.keep_alive.is_zero() => 0,
            secs => secs.clamp(1, u64::from(u16::MAX)),
        };
        options
            .set_keep_alive(Duration::from_secs(keep_alive))
            .set_clean_session(self.clean_session)
            .set_max_packet_size(self.max_incoming_packet, MAX_PACKET_SIZE);
        if let Some((username, password)) = &self.identity.login {
            let password = password.as_ref().map(Password::expose).unwrap_or_default();
            options.set_credentials(username.clone(), password);
        }
        if tls {
            let config = self.tls.client_config()?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(config),
            )));
        }
        Ok((options, broker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            Endpoint::parse("mqtt://h").map(|e| e.to_string()).ok(),
            Some("mqtt://h:1883".to_string())
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
    fn plain_url_gives_host_port_and_login() {
        let identity =
            ClientIdentity::new("id-1").with_login("meter", Some(Password::new("hunter2")));
        let options = ConnectOptions::new(
            Endpoint::parse("mqtt://127.0.0.1:18830").expect("valid"),
            identity,
        );
        assert!(!format!("{options:?}").contains("hunter2"), "{options:?}");
        let (mqtt, broker) = options.rumqttc().expect("valid");
        assert_eq!(broker, "127.0.0.1:18830");
        assert_eq!(mqtt.broker_address(), ("127.0.0.1".to_string(), 18830));
        assert_eq!(mqtt.client_id(), "id-1");
        assert!(!mqtt.clean_session());
        assert_eq!(mqtt.keep_alive(), Duration::from_secs(30));
        assert!(mqtt.credentials().is_some());
        assert!(matches!(mqtt.transport(), Transport::Tcp));
    }

    #[test]
    fn reconnect_delays_are_jittered_and_capped() {
        let retry = Retry::new(Duration::from_millis(100), Duration::from_millis(800));
        // Many runs of the same schedule: every delay within ±25 % of its base and
        // never above the cap, and not all runs alike (jitter).
        let runs: Vec<Vec<Duration>> = (0..20)
            .map(|_| {
                let mut backoff = retry.backoff();
                (0..8).map(|_| backoff.delay(None)).collect()
            })
            .collect();
        let bases = [100u64, 200, 400, 800, 800, 800, 800, 800];
        for run in &runs {
            for (delay, base) in run.iter().zip(bases) {
                let base = Duration::from_millis(base);
                assert!(*delay >= base.mul_f64(0.75), "{delay:?} vs {base:?}");
                assert!(*delay <= retry.max, "{delay:?} above the cap");
            }
        }
        assert!(runs.iter().any(|r| r != &runs[0]), "no jitter");
        // A max shorter than the first wait is raised to it.
        assert_eq!(
            Retry::new(Duration::from_secs(2), Duration::from_secs(1)).max,
            Duration::from_secs(2)
        );
    }
}
