//! How a [`DeviceClient`](super::DeviceClient) connects ([`DeviceClientOptions`]) and
//! what it reports ([`IotHubError`]): shared by the client's handle (`client.rs`) and
//! its connection thread (`session.rs`), so neither imports the other.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{QoS, SubscribeFilter};

use super::connection_string::ConnectionString;
use super::outbox::OutboxError;
use super::sas::{Clock, SystemClock};
use crate::io::mqtt::MqttError;

/// The MQTT API version IoT Hub is asked for.
pub const API_VERSION: &str = "2021-04-12";

/// IoT Hub's default MQTT-over-TLS port.
pub const DEFAULT_PORT: u16 = 8883;

/// The property bag every telemetry message carries: JSON in UTF-8, so hub routing
/// queries can look into the body.
pub const JSON_PROPERTIES: &str = "$.ct=application%2Fjson&$.ce=utf-8";

/// Files of a device that authenticates with an X.509 certificate.
#[derive(Clone, Debug)]
pub struct X509Files {
    /// PEM certificate (chain) of the device.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
}

/// How a [`DeviceClient`] connects.
#[derive(Clone)]
pub struct DeviceClientOptions {
    /// The device (or module) and its key or `x509=true`.
    pub connection: ConnectionString,
    /// The certificate and key for an `x509=true` device.
    pub x509: Option<X509Files>,
    /// Connect to this host instead of the gateway or hub named in the connection
    /// string (the hub name stays in the user name and token), e.g. a local test broker.
    pub host: Option<String>,
    /// The TLS port. Default 8883.
    pub port: u16,
    /// PEM CA certificate(s) of the hub or gateway; default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// How long a SAS token is valid. Default 1 h.
    pub token_ttl: Duration,
    /// The part of `token_ttl` after which the client reconnects with a new token.
    /// Default 0.8.
    pub renew_fraction: f64,
    /// MQTT keep-alive. Default 60 s.
    pub keep_alive: Duration,
    /// First wait before reconnecting (default 1 s); doubles per failed attempt …
    pub reconnect_min: Duration,
    /// … up to this (default 300 s).
    pub reconnect_max: Duration,
    /// Telemetry messages sent and not yet acknowledged, at most. Default 32.
    pub max_in_flight: u16,
    /// Received events kept for [`DeviceClient::events`]; more are dropped (and
    /// counted). Default 1024.
    pub events_capacity: usize,
    /// The time source for token expiries (tests inject one).
    pub clock: Arc<dyn Clock>,
}

impl DeviceClientOptions {
    /// Defaults for `connection`.
    pub fn new(connection: ConnectionString) -> Self {
        DeviceClientOptions {
            connection,
            x509: None,
            host: None,
            port: DEFAULT_PORT,
            ca_file: None,
            token_ttl: Duration::from_secs(3600),
            renew_fraction: 0.8,
            keep_alive: Duration::from_secs(60),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(300),
            max_in_flight: 32,
            events_capacity: 1024,
            clock: Arc::new(SystemClock),
        }
    }

    /// The MQTT user name: `{hub}/{device}[/{module}]/?api-version=…`.
    pub fn username(&self) -> String {
        format!(
            "{}/{}/?api-version={API_VERSION}",
            self.connection.host_name,
            self.connection.client_id()
        )
    }

    /// `devices/{device}[/modules/{module}]/messages/events/`.
    pub fn events_topic(&self) -> String {
        match &self.connection.module_id {
            Some(m) => format!(
                "devices/{}/modules/{m}/messages/events/",
                self.connection.device_id
            ),
            None => format!("devices/{}/messages/events/", self.connection.device_id),
        }
    }

    pub(super) fn devicebound_prefix(&self) -> String {
        format!(
            "devices/{}/messages/devicebound/",
            self.connection.device_id
        )
    }
}

impl std::fmt::Debug for DeviceClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceClientOptions")
            .field("connection", &self.connection)
            .field("x509", &self.x509)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("ca_file", &self.ca_file)
            .field("token_ttl", &self.token_ttl)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// What went wrong in the IoT Hub client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IotHubError {
    /// Connecting, TLS, or a setting the MQTT layer refused.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    /// A setting that cannot work.
    #[error("{0}")]
    Config(String),
    /// The outbox refused or failed.
    #[error("{0}")]
    Outbox(String),
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {waiting_for}")]
    Timeout {
        /// How long.
        after: Duration,
        /// What for.
        waiting_for: String,
    },
    /// The client's thread has stopped.
    #[error("the IoT Hub client has stopped")]
    Closed,
    /// [`DeviceClient::close`] ended with messages not acknowledged (they stay in the
    /// outbox).
    #[error(
        "{pending} message(s) not acknowledged by IoT Hub{}",
        last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    Unsent {
        /// Messages left in the outbox.
        pending: usize,
        /// The most recent connection error, if any.
        last_error: Option<Box<IotHubError>>,
    },
}

impl From<OutboxError> for IotHubError {
    fn from(e: OutboxError) -> Self {
        IotHubError::Outbox(e.to_string())
    }
}

/// C2D (devices only; modules get none) and the twin's topics.
pub(super) fn subscriptions(options: &DeviceClientOptions) -> Vec<SubscribeFilter> {
    let mut filters = vec![
        SubscribeFilter::new("$iothub/twin/res/#".into(), QoS::AtMostOnce),
        SubscribeFilter::new(
            "$iothub/twin/PATCH/properties/desired/#".into(),
            QoS::AtMostOnce,
        ),
    ];
    if options.connection.module_id.is_none() {
        filters.push(SubscribeFilter::new(
            format!("{}#", options.devicebound_prefix()),
            QoS::AtLeastOnce,
        ));
    }
    filters
}
