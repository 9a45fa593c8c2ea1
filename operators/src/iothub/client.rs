//! An Azure IoT Hub device client speaking the hub's MQTT device protocol on the MQTT
//! connection layer (`crate::io::mqtt`): [`DeviceClient`] is the handle.
//!
//! ```text
//!  send_event ──▶ Outbox (memory or disk) ──▶ pump task ──▶ rumqttc EventLoop ──TLS──▶ hub
//!                    ▲                                        (connection driver)
//!                    └──────── removed on PUBACK ◀───────────────┘
//!  events() ◀── C2D messages, desired-property patches, twin responses
//! ```
//! One thread runs a current-thread tokio runtime with two tasks: the connection driver
//! (connect with backoff; `session.rs` dispatches incoming packets and matches PUBACKs
//! to outbox ids) and the pump (send outbox records within an in-flight window, send
//! twin requests, renew the SAS token by reconnecting once in-flight messages are
//! acknowledged, close). The client gives the driver its own endpoint, identity (the
//! SAS token is the password) and TLS files; it shares no settings type with the
//! `mqtt` node.
//!
//! Every connection is a clean session: whatever was not acknowledged is sent again from
//! the outbox after reconnecting, in order. Delivery is at least once.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rumqttc::AsyncClient;

use super::connection_string::Credential;
use super::events::CloudEvent;
use super::outbox::Outbox;
use super::sas::{resource_uri, url_encode};
use super::session::{Worker, new_token};
use super::shared::{Counters, Link, Shared};
use crate::io::TlsConfig;
use crate::io::mqtt::driver::{self, ConnectionState, Driver, StopFlags, WaitEnd, lock};
use crate::io::mqtt::{ClientIdentity, ConnectOptions, Endpoint, Password, Retry, TlsOptions};

use super::options::subscriptions;
pub use super::options::{
    API_VERSION, DEFAULT_PORT, DeviceClientOptions, IotHubError, JSON_PROPERTIES, X509Files,
};

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
    /// Show whether the connection to the hub is up in `gauge` (1 or 0) from now on.
    pub fn report_connection_to(&self, gauge: smartgrid_runtime::metrics::Gauge) {
        self.shared.state.report_to(gauge);
    }

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
        let resource = resource_uri(&options.connection);
        let first_token = key.as_ref().map(|key| new_token(&options, &resource, key));
        let identity = ClientIdentity::new(client_id.clone()).with_login(
            options.username(),
            first_token.as_ref().map(|t| Password::new(t.token.clone())),
        );
        let mut connect = ConnectOptions::new(
            Endpoint::Remote {
                host,
                port: options.port,
                tls: true,
            },
            identity,
        );
        connect.tls = TlsOptions::load_first(&TlsConfig {
            ca_file: options.ca_file.clone(),
            client_cert: options.x509.as_ref().map(|x| x.cert.clone()),
            client_key: options.x509.as_ref().map(|x| x.key.clone()),
        })?;
        connect.clean_session = true;
        connect.keep_alive = options.keep_alive;
        connect.retry = Retry::new(options.reconnect_min, options.reconnect_max);
        let (mut mqtt, broker) = connect.rumqttc()?;
        let window = options.max_in_flight;
        mqtt.set_inflight(window);
        let channel = usize::from(window) * 2 + 16;
        let (client, eventloop) = AsyncClient::new(mqtt, channel);

        let (events_tx, events) = crossbeam_channel::bounded(options.events_capacity.max(1));
        let state = Arc::new(ConnectionState::default());
        let shared = Arc::new(Shared {
            outbox: Mutex::new(outbox),
            link: Mutex::new(Link {
                renew_at: first_token.as_ref().map(|t| t.renew_at),
                ..Link::default()
            }),
            wake: tokio::sync::Notify::new(),
            counters: Counters::default(),
            state: Arc::clone(&state),
            next_rid: AtomicU64::new(1),
        });
        if let Some(t) = &first_token {
            shared
                .counters
                .token_expiry
                .store(t.expiry, Ordering::Relaxed);
        }
        let flags = StopFlags::standalone();
        let driver = Driver::new(
            eventloop,
            broker,
            connect.retry,
            flags.clone(),
            state,
            "IoT Hub",
        );
        let events_topic = options.events_topic();
        let worker = Worker {
            client,
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
        let thread = driver::spawn(format!("iothub-{client_id}"), move || worker.run(driver))?;
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
            connections: self.shared.state.connections(),
            token_renewals: c.token_renewals.load(Ordering::Relaxed),
            connection_errors: self.shared.state.connection_errors(),
            sent: c.sent.load(Ordering::Relaxed),
            acknowledged: c.acknowledged.load(Ordering::Relaxed),
            outbox_pending: lock(&self.shared.outbox).pending(),
            events_dropped: c.events_dropped.load(Ordering::Relaxed),
            token_expiry: (expiry != 0).then_some(expiry),
            last_error: self.shared.state.last_error().map(IotHubError::Mqtt),
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
        self.flags.stop();
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
            last_error: self
                .shared
                .state
                .last_error()
                .map(|e| Box::new(IotHubError::Mqtt(e))),
        })
    }

    fn wait_until(
        &self,
        deadline: Instant,
        what: &str,
        done: impl Fn() -> bool,
    ) -> Result<(), IotHubError> {
        driver::wait_until(deadline, done, || self.is_finished()).map_err(|end| match end {
            WaitEnd::Finished => IotHubError::Closed,
            WaitEnd::TimedOut(after) => {
                let connected = lock(&self.shared.link).connected;
                match self.shared.state.last_error() {
                    Some(error) if !connected => IotHubError::Mqtt(error),
                    _ => IotHubError::Timeout {
                        after,
                        waiting_for: what.to_string(),
                    },
                }
            }
        })
    }

    fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for DeviceClient {
    fn drop(&mut self) {
        self.flags.stop();
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
    use crate::iothub::ConnectionString;

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
