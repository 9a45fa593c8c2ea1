//! An Azure IoT Hub device client speaking the hub's MQTT device protocol on rumqttc.
//!
//! ```text
//!  send_event ──▶ Outbox (memory or disk) ──▶ pump task ──▶ rumqttc EventLoop ──TLS──▶ hub
//!                    ▲                                           │
//!                    └──────── removed on PUBACK ◀───────────────┘
//!  events() ◀── C2D messages, desired-property patches, twin responses
//! ```
//! One thread runs a current-thread tokio runtime with two tasks: the event loop (connect
//! with backoff, dispatch incoming packets, match PUBACKs to outbox ids) and the pump
//! (send outbox records within an in-flight window, send twin requests, renew the SAS
//! token by reconnecting once in-flight messages are acknowledged, close).
//!
//! Every connection is a clean session: whatever was not acknowledged is sent again from
//! the outbox after reconnecting, in order. Delivery is at least once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rumqttc::AsyncClient;
use smartgrid_runtime::spec::Duration as SpecDuration;

use super::connection_string::{ConnectionString, Credential};
use super::events::CloudEvent;
use super::outbox::{Outbox, OutboxError};
use super::sas::{Clock, SystemClock, resource_uri, url_encode};
use super::session::{Counters, Link, Shared, Worker, new_token, subscriptions};
use crate::mqtt::{MqttConfig, MqttError, StopFlags, lock, mqtt_options};

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

/// A snapshot of the client's state.
#[derive(Clone, Debug)]
pub struct DeviceClientStats {
    /// Connected right now.
    pub connected: bool,
    /// Subscribed (C2D and twin topics) on the current connection.
    pub subscribed: bool,
    /// Successful connections so far (the first one included).
    pub connections: u64,
    /// Reconnections made to present a fresh SAS token.
    pub token_renewals: u64,
    /// Failed connection attempts and dropped connections.
    pub connection_errors: u64,
    /// Telemetry messages written to the connection (resends included).
    pub sent: u64,
    /// Telemetry messages acknowledged by the hub.
    pub acknowledged: u64,
    /// Telemetry messages in the outbox, not yet acknowledged.
    pub outbox_pending: usize,
    /// Events dropped because nobody read [`DeviceClient::events`].
    pub events_dropped: u64,
    /// The expiry (Unix seconds) of the token of the current or last connection.
    pub token_expiry: Option<u64>,
    /// The most recent connection error.
    pub last_error: Option<IotHubError>,
}

/// An IoT Hub device client. See the module documentation.
pub struct DeviceClient {
    shared: Arc<Shared>,
    events: Receiver<CloudEvent>,
    flags: StopFlags,
    events_topic: String,
    thread: Option<JoinHandle<()>>,
}

impl DeviceClient {
    /// Starts the client's thread; it connects (and reconnects) in the background.
    /// Errors are settings that cannot work and unreadable TLS files.
    pub fn connect(options: DeviceClientOptions, outbox: Outbox) -> Result<Self, IotHubError> {
        let key = match (&options.connection.credential, &options.x509) {
            (Credential::SharedAccessKey(key), None) => Some(key.clone()),
            (Credential::X509, Some(_)) => None,
            (Credential::SharedAccessKey(_), Some(_)) => {
                return Err(IotHubError::Config(
                    "the connection string has a SharedAccessKey and `x509` files are given; \
                     use one (`x509=true` in the connection string for certificates)"
                        .into(),
                ));
            }
            (Credential::X509, None) => {
                return Err(IotHubError::Config(
                    "the connection string says x509=true: give the certificate and key as \
                     `x509: {cert, key}`"
                        .into(),
                ));
            }
        };
        if options.max_in_flight == 0 {
            return Err(IotHubError::Config(
                "max_in_flight must be at least 1".into(),
            ));
        }
        let client_id = options.connection.client_id();
        let host = options
            .host
            .clone()
            .unwrap_or_else(|| options.connection.connect_host().to_string());
        let mut cfg = MqttConfig::new(format!("mqtts://{host}:{}", options.port));
        cfg.clean_session = true;
        cfg.ca_file = options.ca_file.clone();
        cfg.client_cert = options.x509.as_ref().map(|x| x.cert.clone());
        cfg.client_key = options.x509.as_ref().map(|x| x.key.clone());
        cfg.username = Some(options.username());
        cfg.keep_alive = SpecDuration(options.keep_alive);
        cfg.reconnect_min = SpecDuration(options.reconnect_min);
        cfg.reconnect_max = SpecDuration(options.reconnect_max);
        let resource = resource_uri(&options.connection);
        let first_token = key.as_ref().map(|key| new_token(&options, &resource, key));
        cfg.password = first_token.as_ref().map(|t| t.token.clone());
        let (mut mqtt, broker) = mqtt_options(&cfg, &client_id)?;
        let window = options.max_in_flight;
        mqtt.set_inflight(window);
        let channel = usize::from(window) * 2 + 16;
        let (client, eventloop) = AsyncClient::new(mqtt, channel);

        let (events_tx, events) = crossbeam_channel::bounded(options.events_capacity.max(1));
        let shared = Arc::new(Shared {
            outbox: Mutex::new(outbox),
            link: Mutex::new(Link {
                renew_at: first_token.as_ref().map(|t| t.renew_at),
                ..Link::default()
            }),
            wake: tokio::sync::Notify::new(),
            counters: Counters::default(),
            last_error: Mutex::new(None),
            next_rid: AtomicU64::new(1),
        });
        if let Some(t) = &first_token {
            shared
                .counters
                .token_expiry
                .store(t.expiry, Ordering::Relaxed);
        }
        let flags = StopFlags {
            shutdown: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MqttError::Spawn(Arc::new(e)))?;
        let events_topic = options.events_topic();
        let worker = Worker {
            client,
            broker,
            filters: subscriptions(&options),
            devicebound: options.devicebound_prefix(),
            events_topic: events_topic.clone(),
            username: options.username(),
            resource,
            key,
            options,
            shared: Arc::clone(&shared),
            flags: flags.clone(),
            events: events_tx,
        };
        let thread = thread::Builder::new()
            .name(format!("iothub-{client_id}"))
            .spawn(move || runtime.block_on(worker.run(eventloop)))
            .map_err(|e| MqttError::Spawn(Arc::new(e)))?;
        Ok(DeviceClient {
            shared,
            events,
            flags,
            events_topic,
            thread: Some(thread),
        })
    }

    /// Puts a telemetry message into the outbox (durable when the outbox is on disk)
    /// and returns; it is sent at QoS 1 and removed when acknowledged. `properties` are
    /// application properties (e.g. `type=prediction_error`) added to the JSON content
    /// type and encoding.
    pub fn send_event(
        &self,
        payload: &[u8],
        properties: &[(&str, &str)],
    ) -> Result<u64, IotHubError> {
        if self.is_finished() {
            return Err(IotHubError::Closed);
        }
        let mut bag = String::from(JSON_PROPERTIES);
        for (name, value) in properties {
            bag.push('&');
            bag.push_str(&url_encode(name));
            bag.push('=');
            bag.push_str(&url_encode(value));
        }
        let mut record = Vec::with_capacity(bag.len() + 1 + payload.len());
        record.extend_from_slice(bag.as_bytes());
        record.push(b'\n');
        record.extend_from_slice(payload);
        let id = lock(&self.shared.outbox).push(&record)?;
        self.shared.wake.notify_one();
        Ok(id)
    }

    /// Sends a patch of the twin's reported properties (a JSON object); the hub's answer
    /// comes as a [`CloudEvent::TwinResponse`] with the returned request id.
    pub fn report_properties(&self, patch: &serde_json::Value) -> Result<String, IotHubError> {
        let body = serde_json::to_vec(patch).map_err(|e| IotHubError::Config(e.to_string()))?;
        Ok(self.twin_request("$iothub/twin/PATCH/properties/reported/", body))
    }

    /// Asks for the full twin; it comes as a [`CloudEvent::TwinResponse`] (status 200).
    pub fn get_twin(&self) -> String {
        self.twin_request("$iothub/twin/GET/", Vec::new())
    }

    fn twin_request(&self, prefix: &str, body: Vec<u8>) -> String {
        let rid = self
            .shared
            .next_rid
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let topic = format!("{prefix}?$rid={rid}");
        lock(&self.shared.link)
            .twin_requests
            .push_back((topic, body));
        self.shared.wake.notify_one();
        rid
    }

    /// C2D messages, desired-property patches and twin responses, as they arrive.
    pub fn events(&self) -> &Receiver<CloudEvent> {
        &self.events
    }

    /// The topic telemetry goes to (without the property bag).
    pub fn events_topic(&self) -> &str {
        &self.events_topic
    }

    /// Connection state and counters.
    pub fn stats(&self) -> DeviceClientStats {
        let c = &self.shared.counters;
        let expiry = c.token_expiry.load(Ordering::Relaxed);
        let (connected, subscribed) = {
            let link = lock(&self.shared.link);
            (link.connected, link.subscribed)
        };
        DeviceClientStats {
            connected,
            subscribed,
            connections: c.connections.load(Ordering::Relaxed),
            token_renewals: c.token_renewals.load(Ordering::Relaxed),
            connection_errors: c.connection_errors.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            acknowledged: c.acknowledged.load(Ordering::Relaxed),
            outbox_pending: lock(&self.shared.outbox).pending(),
            events_dropped: c.events_dropped.load(Ordering::Relaxed),
            token_expiry: (expiry != 0).then_some(expiry),
            last_error: lock(&self.shared.last_error).clone(),
        }
    }

    /// Waits until connected; on timeout returns the last connection error if any.
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), IotHubError> {
        self.wait_until(Instant::now() + timeout, "the IoT Hub connection", || {
            lock(&self.shared.link).connected
        })
    }

    /// Waits until the outbox is empty (every message acknowledged).
    pub fn flush(&self, timeout: Duration) -> Result<(), IotHubError> {
        self.wait_until(Instant::now() + timeout, "acknowledgements", || {
            lock(&self.shared.outbox).pending() == 0
        })
        .map_err(|e| self.outstanding(e))
    }

    fn outstanding(&self, e: IotHubError) -> IotHubError {
        match e {
            IotHubError::Timeout { after, .. } => IotHubError::Timeout {
                after,
                waiting_for: format!(
                    "acknowledgements of {} message(s)",
                    lock(&self.shared.outbox).pending()
                ),
            },
            other => other,
        }
    }

    /// Sends what the outbox holds (for up to `timeout`), disconnects and ends the
    /// thread. Messages still unacknowledged stay in the outbox (on disk they are sent
    /// by the next run) and are reported as an error.
    pub fn close(mut self, timeout: Duration) -> Result<(), IotHubError> {
        let deadline = Instant::now() + timeout;
        lock(&self.shared.link).close_deadline = Some(deadline);
        self.shared.wake.notify_one();
        let _ = self.wait_until(deadline, "acknowledgements", || {
            lock(&self.shared.outbox).pending() == 0
        });
        // The pump disconnects once the outbox is empty or the deadline passed.
        let join_deadline = deadline.max(Instant::now()) + Duration::from_secs(2);
        while !self.is_finished() && Instant::now() < join_deadline {
            thread::sleep(Duration::from_millis(5));
        }
        self.flags.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        while !self.is_finished() && Instant::now() < join_deadline + Duration::from_secs(1) {
            thread::sleep(Duration::from_millis(5));
        }
        if self.is_finished()
            && let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the IoT Hub client thread panicked");
        }
        let pending = lock(&self.shared.outbox).pending();
        if pending == 0 {
            return Ok(());
        }
        Err(IotHubError::Unsent {
            pending,
            last_error: lock(&self.shared.last_error).clone().map(Box::new),
        })
    }

    fn wait_until(
        &self,
        deadline: Instant,
        what: &str,
        done: impl Fn() -> bool,
    ) -> Result<(), IotHubError> {
        let started = Instant::now();
        loop {
            if done() {
                return Ok(());
            }
            if self.is_finished() {
                return Err(IotHubError::Closed);
            }
            if Instant::now() >= deadline {
                let connected = lock(&self.shared.link).connected;
                return Err(match lock(&self.shared.last_error).clone() {
                    Some(error) if !connected => error,
                    _ => IotHubError::Timeout {
                        after: started.elapsed(),
                        waiting_for: what.to_string(),
                    },
                });
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for DeviceClient {
    fn drop(&mut self) {
        self.flags.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }
}

impl std::fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceClient")
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_records() {
        assert_eq!(
            crate::iothub::session::split_record(b"$.ct=x\n[1]"),
            ("$.ct=x", &b"[1]"[..])
        );
    }

    #[test]
    fn names_and_topics() {
        let cs: ConnectionString = "HostName=h.azure-devices.net;DeviceId=d1;SharedAccessKey=a2V5"
            .parse()
            .expect("valid");
        let options = DeviceClientOptions::new(cs);
        assert_eq!(
            options.username(),
            "h.azure-devices.net/d1/?api-version=2021-04-12"
        );
        assert_eq!(options.events_topic(), "devices/d1/messages/events/");
        let filters: Vec<String> = subscriptions(&options)
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert!(filters.contains(&"devices/d1/messages/devicebound/#".to_string()));

        let cs: ConnectionString = "HostName=h;DeviceId=d1;ModuleId=m;SharedAccessKey=a2V5"
            .parse()
            .expect("valid");
        let options = DeviceClientOptions::new(cs);
        assert_eq!(options.username(), "h/d1/m/?api-version=2021-04-12");
        assert_eq!(
            options.events_topic(),
            "devices/d1/modules/m/messages/events/"
        );
        assert_eq!(subscriptions(&options).len(), 2);
    }
}
