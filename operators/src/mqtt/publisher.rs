//! The publisher: see [`Publisher`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rumqttc::{Client, ClientError, Event, EventLoop, Incoming, Outgoing, Request};

use super::client::{StopFlags, lock, next_backoff};
use super::config::{MqttConfig, Qos};
use super::error::MqttError;
use super::options::mqtt_options;

/// How a [`Publisher`] connects. `Default` gives a plain anonymous connection.
#[derive(Clone)]
pub struct PublisherOptions {
    /// User name for brokers that require a login.
    pub username: Option<String>,
    /// Password for `username` (never logged).
    pub password: Option<String>,
    /// PEM file with the CA certificate(s) for `mqtts://` (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for `mqtts://`.
    pub client_cert: Option<PathBuf>,
    /// PEM key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Ping interval when idle (0 or 1 s to 65535 s). Default 30 s.
    pub keep_alive: Duration,
    /// Ask the broker for a clean session (default `true`: a publisher has no
    /// subscriptions to keep; unacknowledged messages are resent by this side).
    pub clean_session: bool,
    /// How many messages may wait to be sent before `publish` blocks. Default 1000.
    pub queue_capacity: usize,
    /// First wait before reconnecting (default 1 s); doubles per failed attempt …
    pub reconnect_min: Duration,
    /// … up to this (default 30 s).
    pub reconnect_max: Duration,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            username: None,
            password: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            keep_alive: Duration::from_secs(30),
            clean_session: true,
            queue_capacity: 1000,
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for PublisherOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherOptions")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("keep_alive", &self.keep_alive)
            .field("clean_session", &self.clean_session)
            .field("queue_capacity", &self.queue_capacity)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .finish()
    }
}

impl PublisherOptions {
    fn to_config(&self, url: &str) -> MqttConfig {
        use smartgrid_runtime::spec::Duration as SpecDuration;
        let mut cfg = MqttConfig::new(url);
        cfg.clean_session = self.clean_session;
        cfg.username = self.username.clone();
        cfg.password = self.password.clone();
        cfg.ca_file = self.ca_file.clone();
        cfg.client_cert = self.client_cert.clone();
        cfg.client_key = self.client_key.clone();
        cfg.keep_alive = SpecDuration(self.keep_alive);
        cfg.channel_capacity = self.queue_capacity;
        cfg.reconnect_min = SpecDuration(self.reconnect_min);
        cfg.reconnect_max = SpecDuration(self.reconnect_max);
        cfg
    }
}

/// A snapshot of a publisher's state.
#[derive(Debug, Clone)]
pub struct PublisherStats {
    /// Connected to the broker right now.
    pub connected: bool,
    /// Successful connects after the first one.
    pub reconnects: u64,
    /// Failed connection attempts and dropped connections.
    pub connection_errors: u64,
    /// Messages accepted by `publish`.
    pub published: u64,
    /// Messages done: QoS 1 acknowledged by the broker, QoS 0 written to the socket.
    pub completed: u64,
    /// The most recent connection error, if any.
    pub last_error: Option<MqttError>,
}

impl PublisherStats {
    /// Messages accepted but not yet done.
    pub fn outstanding(&self) -> u64 {
        self.published.saturating_sub(self.completed)
    }
}

#[derive(Default)]
struct Shared {
    connected: AtomicBool,
    reconnects: AtomicU64,
    connection_errors: AtomicU64,
    published: AtomicU64,
    completed: AtomicU64,
    last_error: Mutex<Option<MqttError>>,
}

/// A small blocking publisher, for the simulator, the dead-letter topic and
/// `smartgrid simulate --broker URL`.
///
/// [`Publisher::publish`] puts a message into a bounded queue and returns; a background
/// thread sends it. When the queue is full, `publish` blocks until there is room (or use
/// [`Publisher::try_publish`]). The connection is remade with the same exponential
/// backoff as the subscriber's, and messages that were queued or unacknowledged when a
/// connection dropped are sent again on the next one, even when the broker lost the
/// session. [`Publisher::flush_and_close`] waits until every QoS 1 message is
/// acknowledged by the broker (and every QoS 0 message written), then disconnects.
///
/// Dropping it disconnects without waiting for outstanding messages.
pub struct Publisher {
    client: Client,
    shared: Arc<Shared>,
    flags: StopFlags,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Connects to `url` (`mqtt://host:port`, `mqtts://host:port` or `embedded`) as
    /// `client_id`, in the background: returns at once, and an unreachable broker is
    /// not an error here (see [`wait_connected`](Self::wait_connected)).
    pub fn connect(
        url: &str,
        client_id: impl Into<String>,
        options: PublisherOptions,
    ) -> Result<Self, MqttError> {
        Self::from_config(&options.to_config(url), client_id)
    }

    /// Connects with the connection settings of an `mqtt` node's config (`topics` and
    /// `qos` are not used; `channel_capacity` is the queue size).
    pub fn from_config(cfg: &MqttConfig, client_id: impl Into<String>) -> Result<Self, MqttError> {
        let client_id = client_id.into();
        let (options, broker) = mqtt_options(cfg, &client_id)?;
        let (client, connection) = Client::new(options, cfg.channel_capacity.max(1));
        // Run the event loop on our own thread, with reconnect backoff; the runtime
        // rumqttc made for its blocking iterator is not needed.
        let eventloop = connection.eventloop;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| MqttError::Spawn(Arc::new(e)))?;
        let shared = Arc::new(Shared::default());
        let flags = StopFlags {
            shutdown: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let worker = Worker {
            client: client.clone(),
            broker,
            reconnect_min: cfg.reconnect_min.0,
            reconnect_max: cfg.reconnect_max.0,
            shared: Arc::clone(&shared),
            flags: flags.clone(),
        };
        let thread = thread::Builder::new()
            .name(format!("mqtt-pub-{client_id}"))
            .spawn(move || runtime.block_on(worker.run(eventloop)))
            .map_err(|e| MqttError::Spawn(Arc::new(e)))?;
        Ok(Publisher {
            client,
            shared,
            flags,
            thread: Some(thread),
        })
    }

    /// Queues a message, blocking while the queue is full.
    pub fn publish(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        qos: Qos,
    ) -> Result<(), MqttError> {
        check_topic(topic)?;
        self.client
            .publish(topic, qos.to_rumqttc(), false, payload)
            .map_err(|_| MqttError::Closed)?;
        self.shared.published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Queues a message if there is room; `Ok(false)` if the queue is full.
    pub fn try_publish(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        qos: Qos,
    ) -> Result<bool, MqttError> {
        check_topic(topic)?;
        match self
            .client
            .try_publish(topic, qos.to_rumqttc(), false, payload)
        {
            Ok(()) => {
                self.shared.published.fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(ClientError::TryRequest(_)) if !self.is_finished() => Ok(false),
            Err(_) => Err(MqttError::Closed),
        }
    }

    /// Connection state and counters.
    pub fn stats(&self) -> PublisherStats {
        PublisherStats {
            connected: self.shared.connected.load(Ordering::Relaxed),
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
            connection_errors: self.shared.connection_errors.load(Ordering::Relaxed),
            published: self.shared.published.load(Ordering::Relaxed),
            completed: self.shared.completed.load(Ordering::Relaxed),
            last_error: lock(&self.shared.last_error).clone(),
        }
    }

    /// Waits until connected. On timeout returns the last connection error (e.g. the
    /// broker's refusal) if there was one.
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), MqttError> {
        self.wait_until(Instant::now() + timeout, "the MQTT connection", || {
            self.shared.connected.load(Ordering::Relaxed)
        })
    }

    /// Waits until every message published so far is done (QoS 1: acknowledged).
    pub fn flush(&self, timeout: Duration) -> Result<(), MqttError> {
        self.flush_until(Instant::now() + timeout)
    }

    fn flush_until(&self, deadline: Instant) -> Result<(), MqttError> {
        let result = self.wait_until(deadline, "acknowledgements", || {
            self.stats().outstanding() == 0
        });
        result.map_err(|e| match e {
            MqttError::Timeout { after, .. } => MqttError::Timeout {
                after,
                waiting_for: format!(
                    "acknowledgements of {} published message(s)",
                    self.stats().outstanding()
                ),
            },
            other => other,
        })
    }

    fn wait_until(
        &self,
        deadline: Instant,
        what: &str,
        done: impl Fn() -> bool,
    ) -> Result<(), MqttError> {
        let started = Instant::now();
        loop {
            if done() {
                return Ok(());
            }
            if self.is_finished() {
                return Err(MqttError::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                let timeout = MqttError::Timeout {
                    after: now - started,
                    waiting_for: what.to_string(),
                };
                return Err(match lock(&self.shared.last_error).clone() {
                    Some(error) if !self.shared.connected.load(Ordering::Relaxed) => error,
                    _ => timeout,
                });
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (up to `timeout` in all) until every message is done, then disconnects and
    /// ends the thread. On timeout it disconnects anyway and reports how many messages
    /// were not confirmed.
    pub fn flush_and_close(mut self, timeout: Duration) -> Result<(), MqttError> {
        let deadline = Instant::now() + timeout;
        let flushed = self.flush_until(deadline);
        self.flags.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
        // The thread ends after sending DISCONNECT, or within a moment if it is not
        // connected. Do not wait past the deadline (plus a grace for the DISCONNECT).
        let join_deadline = deadline.max(Instant::now()) + Duration::from_secs(1);
        while !self.is_finished() && Instant::now() < join_deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if self.is_finished()
            && let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the MQTT publisher thread panicked");
        }
        flushed
    }

    fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.flags.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("stats", &self.stats())
            .finish()
    }
}

fn check_topic(topic: &str) -> Result<(), MqttError> {
    if rumqttc::valid_topic(topic) && !topic.is_empty() {
        Ok(())
    } else {
        Err(MqttError::InvalidTopic(topic.to_string()))
    }
}

struct Worker {
    client: Client,
    broker: String,
    reconnect_min: Duration,
    reconnect_max: Duration,
    shared: Arc<Shared>,
    flags: StopFlags,
}

impl Worker {
    async fn run(self, mut eventloop: EventLoop) {
        let client = self.client.clone();
        let watcher = tokio::spawn(
            self.flags
                .clone()
                .disconnect_on_stop(move || client.try_disconnect().is_ok()),
        );
        let mut backoff = self.reconnect_min;
        let mut first_connect = true;
        let mut connected = false;
        // What rumqttc would resend after the last connection error: it drops this
        // when the broker has no session for us, so we put it back.
        let mut resend: Vec<Request> = Vec::new();
        loop {
            if self.flags.stopping() && !connected {
                break;
            }
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    connected = true;
                    backoff = self.reconnect_min;
                    self.shared.connected.store(true, Ordering::Relaxed);
                    if !first_connect {
                        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(broker = %self.broker, "MQTT publisher reconnected");
                    }
                    first_connect = false;
                    if !ack.session_present && !resend.is_empty() {
                        tracing::debug!(count = resend.len(), "resending unconfirmed messages");
                        eventloop.pending.extend(resend.drain(..));
                    }
                    resend.clear();
                }
                Ok(Event::Incoming(Incoming::PubAck(_))) => {
                    self.shared.completed.fetch_add(1, Ordering::Relaxed);
                }
                // Packet id 0: a QoS 0 publish was written; it needs no ack.
                Ok(Event::Outgoing(Outgoing::Publish(0))) => {
                    self.shared.completed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(error) => {
                    connected = false;
                    self.shared.connected.store(false, Ordering::Relaxed);
                    if self.flags.stopping() {
                        break;
                    }
                    resend = resendable(&eventloop);
                    let errors = self
                        .shared
                        .connection_errors
                        .fetch_add(1, Ordering::Relaxed)
                        + 1;
                    let error = MqttError::from_connection(&self.broker, &error);
                    tracing::warn!(
                        broker = %self.broker,
                        %error,
                        failures = errors,
                        retry_in = ?backoff,
                        "MQTT publisher connection failed"
                    );
                    *lock(&self.shared.last_error) = Some(error);
                    if self.flags.pause(backoff).await {
                        break;
                    }
                    backoff = next_backoff(backoff, self.reconnect_max);
                }
            }
        }
        watcher.abort();
        self.shared.connected.store(false, Ordering::Relaxed);
    }
}

/// The requests rumqttc holds for resending (unacknowledged and queued publishes, a
/// pending DISCONNECT), made fit for a new session: publishes get fresh packet ids;
/// acks and pings of the old session are dropped.
fn resendable(eventloop: &EventLoop) -> Vec<Request> {
    eventloop
        .pending
        .iter()
        .filter_map(|request| match request {
            Request::Publish(publish) => {
                let mut publish = publish.clone();
                publish.pkid = 0;
                publish.dup = false;
                Some(Request::Publish(publish))
            }
            Request::Disconnect(_) => Some(request.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::embedded::start_embedded_broker;

    #[test]
    fn invalid_topics_are_refused() {
        let broker = start_embedded_broker(0).expect("broker");
        let publisher =
            Publisher::connect(&broker.url(), "topics", PublisherOptions::default()).expect("pub");
        for topic in ["", "a/+/b", "a/#"] {
            let err = publisher
                .publish(topic, b"x".to_vec(), Qos::AtMostOnce)
                .expect_err("invalid");
            assert!(matches!(err, MqttError::InvalidTopic(_)), "{err}");
        }
        publisher
            .flush_and_close(Duration::from_secs(5))
            .expect("nothing outstanding");
    }

    #[test]
    fn flush_times_out_without_a_broker() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let publisher = Publisher::connect(
            &format!("mqtt://127.0.0.1:{port}"),
            "nobody",
            PublisherOptions::default(),
        )
        .expect("pub");
        publisher
            .publish("a/b", b"x".to_vec(), Qos::AtLeastOnce)
            .expect("queued");
        let started = Instant::now();
        let err = publisher
            .flush_and_close(Duration::from_millis(300))
            .expect_err("nothing acknowledges");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(
            matches!(
                err,
                MqttError::Connection { .. } | MqttError::Timeout { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn resend_gets_fresh_packet_ids_and_drops_old_acks() {
        let options = rumqttc::MqttOptions::new("id", "127.0.0.1", 1883);
        let mut eventloop = EventLoop::new(options, 10);
        let mut publish = rumqttc::Publish::new("a/b", rumqttc::QoS::AtLeastOnce, vec![1]);
        publish.pkid = 7;
        publish.dup = true;
        eventloop.pending.extend([
            Request::Publish(publish),
            Request::PubAck(rumqttc::PubAck::new(3)),
            Request::PingReq(rumqttc::PingReq),
            Request::Disconnect(rumqttc::Disconnect),
        ]);
        let resend = resendable(&eventloop);
        assert_eq!(resend.len(), 2);
        match &resend[0] {
            Request::Publish(p) => {
                assert_eq!((p.pkid, p.dup, p.topic.as_str()), (0, false, "a/b"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(resend[1], Request::Disconnect(_)));
    }

    #[test]
    fn options_debug_redacts_the_password() {
        let options = PublisherOptions {
            password: Some("hunter2".into()),
            ..PublisherOptions::default()
        };
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
