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

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use percent_encoding::percent_decode_str;
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Outgoing, QoS, SubscribeFilter};
use smartgrid_runtime::spec::Duration as SpecDuration;

use super::connection_string::{ConnectionString, Credential, SharedAccessKey};
use super::outbox::{Outbox, OutboxError};
use super::sas::{Clock, SystemClock, Token, resource_uri, url_encode};
use crate::mqtt::{MqttConfig, MqttError, StopFlags, lock, mqtt_options, next_backoff};

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

    fn devicebound_prefix(&self) -> String {
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
}

impl From<OutboxError> for IotHubError {
    fn from(e: OutboxError) -> Self {
        IotHubError::Outbox(e.to_string())
    }
}

/// A cloud-to-device message.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudMessage {
    /// The full topic it came on.
    pub topic: String,
    /// Its properties (system ones like `$.mid` and the application's), decoded.
    pub properties: Vec<(String, String)>,
    /// Its body.
    pub payload: Bytes,
}

/// A patch of the twin's desired properties.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredPatch {
    /// The desired properties' version after the patch (`$version`).
    pub version: Option<u64>,
    /// The patch (a JSON object).
    pub patch: serde_json::Value,
}

/// The hub's answer to a twin request ([`DeviceClient::get_twin`],
/// [`DeviceClient::report_properties`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TwinResponse {
    /// The request id the call returned.
    pub rid: String,
    /// HTTP-like status: 200 (GET), 204 (reported patch accepted), 4xx/5xx errors.
    pub status: u16,
    /// The reported properties' new version (PATCH responses).
    pub version: Option<u64>,
    /// The body: the full twin for a GET; empty for a PATCH.
    pub body: Option<serde_json::Value>,
}

/// Something the hub sent to the device.
#[derive(Clone, Debug, PartialEq)]
pub enum CloudEvent {
    /// A cloud-to-device message.
    Message(CloudMessage),
    /// A desired-properties patch.
    Desired(DesiredPatch),
    /// An answer to a twin request.
    TwinResponse(TwinResponse),
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

/// The event-loop side's view of the current connection.
#[derive(Default)]
struct Link {
    connected: bool,
    subscribed: bool,
    /// The next outbox id to send on this connection.
    cursor: u64,
    /// Telemetry sent on this connection and not acknowledged.
    in_flight: usize,
    /// Publishes handed to rumqttc, waiting for their `Outgoing::Publish` event, which
    /// tells their packet id: `Some(outbox id)` for telemetry, `None` for twin requests.
    handed: VecDeque<Option<u64>>,
    /// Packet id → outbox id of telemetry awaiting its PUBACK.
    pkids: HashMap<u16, u64>,
    /// Twin requests waiting for a subscribed connection: topic and body.
    twin_requests: VecDeque<(String, Vec<u8>)>,
    /// A DISCONNECT was requested (renewal or close).
    disconnecting: bool,
    /// When the pump started waiting for acknowledgements before a renewal.
    renew_wait_since: Option<Instant>,
    /// Renew at this Unix second (None for X.509).
    renew_at: Option<u64>,
    /// `close` asked for: send what is pending until then, then disconnect.
    close_deadline: Option<Instant>,
    /// The final DISCONNECT was requested: do not reconnect.
    closed: bool,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    token_renewals: AtomicU64,
    connection_errors: AtomicU64,
    sent: AtomicU64,
    acknowledged: AtomicU64,
    events_dropped: AtomicU64,
    token_expiry: AtomicU64,
}

struct Shared {
    outbox: Mutex<Outbox>,
    link: Mutex<Link>,
    wake: tokio::sync::Notify,
    counters: Counters,
    last_error: Mutex<Option<IotHubError>>,
    next_rid: AtomicU64,
}

/// The longest a renewal waits for in-flight messages to be acknowledged before it
/// reconnects anyway (they are then sent again).
const RENEW_DRAIN: Duration = Duration::from_secs(5);

/// How often the pump looks at the clock when nothing else wakes it.
const TICK: Duration = Duration::from_millis(100);

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
        let flushed = self
            .wait_until(deadline, "acknowledgements", || {
                lock(&self.shared.outbox).pending() == 0
            })
            .map_err(|e| self.outstanding(e));
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
        match flushed {
            Err(IotHubError::Closed) if lock(&self.shared.outbox).pending() == 0 => Ok(()),
            other => other,
        }
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

fn new_token(options: &DeviceClientOptions, resource: &str, key: &SharedAccessKey) -> Token {
    Token::new(
        resource,
        key,
        options.clock.unix_seconds(),
        options.token_ttl,
        options.renew_fraction,
    )
}

/// C2D (devices only; modules get none) and the twin's topics.
fn subscriptions(options: &DeviceClientOptions) -> Vec<SubscribeFilter> {
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

struct Worker {
    client: AsyncClient,
    broker: String,
    filters: Vec<SubscribeFilter>,
    devicebound: String,
    events_topic: String,
    username: String,
    resource: String,
    key: Option<SharedAccessKey>,
    options: DeviceClientOptions,
    shared: Arc<Shared>,
    flags: StopFlags,
    events: Sender<CloudEvent>,
}

impl Worker {
    async fn run(self, mut eventloop: EventLoop) {
        let worker = Arc::new(self);
        let pump = tokio::spawn(Arc::clone(&worker).pump());
        worker.event_loop(&mut eventloop).await;
        pump.abort();
        lock(&worker.shared.link).connected = false;
    }

    fn stop_now(&self, link: &Link) -> bool {
        self.flags.stopping() || link.close_deadline.is_some_and(|d| Instant::now() >= d)
    }

    async fn event_loop(&self, eventloop: &mut EventLoop) {
        let mut backoff = self.options.reconnect_min;
        loop {
            {
                let mut link = lock(&self.shared.link);
                if !link.connected {
                    if self.stop_now(&link) {
                        return;
                    }
                    self.refresh_token_if_due(&mut link, eventloop);
                }
            }
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    backoff = self.options.reconnect_min;
                    let mut link = lock(&self.shared.link);
                    *link = Link {
                        connected: true,
                        cursor: 0,
                        twin_requests: std::mem::take(&mut link.twin_requests),
                        renew_at: link.renew_at,
                        close_deadline: link.close_deadline,
                        ..Link::default()
                    };
                    let n = self
                        .shared
                        .counters
                        .connections
                        .fetch_add(1, Ordering::Relaxed);
                    if n == 0 {
                        tracing::info!(broker = %self.broker, "connected to IoT Hub");
                    } else {
                        tracing::debug!(broker = %self.broker, "reconnected to IoT Hub");
                    }
                    if self
                        .client
                        .try_subscribe_many(self.filters.clone())
                        .is_err()
                    {
                        tracing::warn!("cannot queue the IoT Hub subscriptions");
                    }
                    drop(link);
                    self.shared.wake.notify_one();
                }
                Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                    {
                        tracing::warn!("IoT Hub refused a subscription: {:?}", ack.return_codes);
                    }
                    lock(&self.shared.link).subscribed = true;
                    self.shared.wake.notify_one();
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    let mut link = lock(&self.shared.link);
                    if let Some(Some(id)) = link.handed.pop_front() {
                        link.pkids.insert(pkid, id);
                        self.shared.counters.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                    let mut link = lock(&self.shared.link);
                    if let Some(id) = link.pkids.remove(&ack.pkid) {
                        link.in_flight = link.in_flight.saturating_sub(1);
                        if let Err(e) = lock(&self.shared.outbox).ack(id) {
                            tracing::error!(
                                "cannot remove an acknowledged message from the outbox: {e}"
                            );
                        }
                        self.shared
                            .counters
                            .acknowledged
                            .fetch_add(1, Ordering::Relaxed);
                        drop(link);
                        self.shared.wake.notify_one();
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(publish))) => self.dispatch(publish),
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    let mut link = lock(&self.shared.link);
                    link.connected = false;
                    link.subscribed = false;
                    // Drop the socket; what was in flight is resent from the outbox.
                    eventloop.clean();
                    eventloop.pending.clear();
                    if link.closed || self.stop_now(&link) {
                        return;
                    }
                    self.refresh_token_if_due(&mut link, eventloop);
                }
                Ok(_) => {}
                Err(error) => {
                    let stop = {
                        let mut link = lock(&self.shared.link);
                        link.connected = false;
                        link.subscribed = false;
                        eventloop.clean();
                        eventloop.pending.clear();
                        self.stop_now(&link)
                    };
                    if stop {
                        return;
                    }
                    let error = MqttError::from_connection(&self.broker, &error);
                    let failures = self
                        .shared
                        .counters
                        .connection_errors
                        .fetch_add(1, Ordering::Relaxed)
                        + 1;
                    tracing::warn!(
                        broker = %self.broker,
                        %error,
                        failures,
                        retry_in = ?backoff,
                        "IoT Hub connection failed"
                    );
                    *lock(&self.shared.last_error) = Some(IotHubError::Mqtt(error));
                    let deadline = lock(&self.shared.link).close_deadline;
                    let pause = match deadline {
                        Some(d) => backoff.min(d.saturating_duration_since(Instant::now())),
                        None => backoff,
                    };
                    if self.flags.pause(pause).await {
                        return;
                    }
                    backoff = next_backoff(backoff, self.options.reconnect_max);
                }
            }
        }
    }

    /// Before connecting: a fresh token if the current one is due for renewal.
    fn refresh_token_if_due(&self, link: &mut Link, eventloop: &mut EventLoop) {
        let (Some(key), Some(renew_at)) = (&self.key, link.renew_at) else {
            return;
        };
        if self.options.clock.unix_seconds() < renew_at {
            return;
        }
        let token = new_token(&self.options, &self.resource, key);
        eventloop
            .mqtt_options
            .set_credentials(self.username.clone(), token.token.clone());
        link.renew_at = Some(token.renew_at);
        self.shared
            .counters
            .token_expiry
            .store(token.expiry, Ordering::Relaxed);
        if link.disconnecting {
            self.shared
                .counters
                .token_renewals
                .fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(expiry = token.expiry, "new SAS token");
    }

    fn dispatch(&self, publish: rumqttc::Publish) {
        let topic = publish.topic.as_str();
        let event = if let Some(bag) = topic.strip_prefix(&self.devicebound) {
            CloudEvent::Message(CloudMessage {
                topic: topic.to_string(),
                properties: parse_bag(bag),
                payload: publish.payload,
            })
        } else if let Some(rest) = topic.strip_prefix("$iothub/twin/PATCH/properties/desired/") {
            let query = parse_bag(rest.trim_start_matches('?'));
            match serde_json::from_slice(&publish.payload) {
                Ok(patch) => CloudEvent::Desired(DesiredPatch {
                    version: find(&query, "$version").and_then(|v| v.parse().ok()),
                    patch,
                }),
                Err(e) => {
                    tracing::warn!("a desired-properties patch is not JSON: {e}");
                    return;
                }
            }
        } else if let Some(rest) = topic.strip_prefix("$iothub/twin/res/") {
            let (status, query) = rest.split_once('/').unwrap_or((rest, ""));
            let query = parse_bag(query.trim_start_matches('?'));
            let body = if publish.payload.is_empty() {
                None
            } else {
                serde_json::from_slice(&publish.payload).ok()
            };
            CloudEvent::TwinResponse(TwinResponse {
                rid: find(&query, "$rid").unwrap_or_default().to_string(),
                status: status.parse().unwrap_or(0),
                version: find(&query, "$version").and_then(|v| v.parse().ok()),
                body,
            })
        } else {
            tracing::debug!(topic, "ignoring a message on an unexpected topic");
            return;
        };
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self
                    .shared
                    .counters
                    .events_dropped
                    .fetch_add(1, Ordering::Relaxed);
                if n == 0 {
                    tracing::warn!("nobody reads the IoT Hub events; dropping them");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Sends outbox records and twin requests while connected, renews the token and
    /// closes. Runs beside the event loop on the same thread.
    async fn pump(self: Arc<Self>) {
        loop {
            let _ = tokio::time::timeout(TICK, self.shared.wake.notified()).await;
            self.pump_once();
        }
    }

    fn pump_once(&self) {
        let mut link = lock(&self.shared.link);
        if self.flags.stopping() && link.connected && !link.closed {
            link.disconnecting = true;
            link.closed = true;
            let _ = self.client.try_disconnect();
            return;
        }
        if !link.connected || link.disconnecting {
            return;
        }
        if let Some(deadline) = link.close_deadline {
            let empty = lock(&self.shared.outbox).pending() == 0;
            if (empty && link.in_flight == 0) || Instant::now() >= deadline {
                link.disconnecting = true;
                link.closed = true;
                let _ = self.client.try_disconnect();
                return;
            }
        }
        let renew_due = link
            .renew_at
            .is_some_and(|at| self.options.clock.unix_seconds() >= at);
        if renew_due {
            // Stop sending, let in-flight messages be acknowledged, then reconnect.
            let since = *link.renew_wait_since.get_or_insert_with(Instant::now);
            if link.in_flight == 0 || since.elapsed() >= RENEW_DRAIN {
                link.disconnecting = true;
                let _ = self.client.try_disconnect();
            }
            return;
        }
        if link.subscribed {
            while let Some((topic, body)) = link.twin_requests.pop_front() {
                match self
                    .client
                    .try_publish(topic.clone(), QoS::AtMostOnce, false, body.clone())
                {
                    Ok(()) => link.handed.push_back(None),
                    Err(_) => {
                        link.twin_requests.push_front((topic, body));
                        break;
                    }
                }
            }
        }
        let window = usize::from(self.options.max_in_flight);
        if link.in_flight >= window {
            return;
        }
        let records =
            match lock(&self.shared.outbox).read_from(link.cursor, window - link.in_flight) {
                Ok(records) => records,
                Err(e) => {
                    tracing::error!("cannot read the outbox: {e}");
                    return;
                }
            };
        for (id, record) in records {
            let (bag, payload) = split_record(&record);
            let topic = format!("{}{bag}", self.events_topic);
            match self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            {
                Ok(()) => {
                    link.handed.push_back(Some(id));
                    link.in_flight += 1;
                    link.cursor = id + 1;
                }
                Err(_) => break,
            }
        }
    }
}

/// An outbox record is `{property bag}\n{payload}`.
fn split_record(record: &[u8]) -> (&str, &[u8]) {
    match record.iter().position(|&b| b == b'\n') {
        Some(i) => (
            std::str::from_utf8(&record[..i]).unwrap_or(""),
            &record[i + 1..],
        ),
        None => ("", record),
    }
}

/// `a=b&c=d` with percent-decoding.
fn parse_bag(bag: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    bag.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn find<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_bags() {
        assert_eq!(
            parse_bag(
                "%24.mid=abc&%24.to=%2Fdevices%2Fd%2Fmessages%2Fdevicebound&kind=model+update"
            ),
            vec![
                ("$.mid".to_string(), "abc".to_string()),
                (
                    "$.to".to_string(),
                    "/devices/d/messages/devicebound".to_string()
                ),
                ("kind".to_string(), "model update".to_string()),
            ]
        );
        assert_eq!(split_record(b"$.ct=x\n[1]"), ("$.ct=x", &b"[1]"[..]));
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
