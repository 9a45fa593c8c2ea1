//! The publisher: a connection (on the [`Driver`]) that sends queued messages and
//! counts their acknowledgements. See [`Publisher`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rumqttc::{Client, ClientError, ConnAck, Event, EventLoop, Incoming, Outgoing, Request};

use super::driver::{self, ConnectionState, Driver, Flow, Handler, StopFlags, WaitEnd};
use super::error::MqttError;
use super::options::{
    ClientIdentity, ConnectOptions, Endpoint, MAX_PACKET_SIZE, Password, Qos, Retry,
};
use super::tls::TlsOptions;
use crate::io::TlsConfig;

/// How [`Publisher::connect`] connects. `Default` gives a plain anonymous connection.
#[derive(Clone, Debug)]
pub struct PublisherOptions {
    /// User name for brokers that require a login.
    pub username: Option<String>,
    /// Password for `username` (never shown).
    pub password: Option<Password>,
    /// CA and client certificate files for `mqtts://` (default: the system's roots).
    pub tls: TlsConfig,
    /// Ping interval when idle (0 or 1 s to 65535 s). Default 30 s.
    pub keep_alive: Duration,
    /// Ask the broker for a clean session (default `true`: a publisher has no
    /// subscriptions to keep; unacknowledged messages are resent by this side).
    pub clean_session: bool,
    /// How many messages may wait to be sent before `publish` blocks. Default 1000.
    pub queue_capacity: usize,
    /// The wait between connection attempts (default 1 s up to 30 s, jittered).
    pub retry: Retry,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            username: None,
            password: None,
            tls: TlsConfig::default(),
            keep_alive: Duration::from_secs(30),
            clean_session: true,
            queue_capacity: 1000,
            retry: Retry::new(Duration::from_secs(1), Duration::from_secs(30)),
        }
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

/// Message counters, beside the connection state.
#[derive(Default)]
struct Shared {
    published: AtomicU64,
    completed: AtomicU64,
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
    state: Arc<ConnectionState>,
    flags: StopFlags,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Connects to `url` (`mqtt://host:port`, `mqtts://host:port` or `embedded`) as
    /// `client_id`, in the background: returns at once, and an unreachable broker is
    /// not an error here (see [`wait_connected`](Self::wait_connected)). Errors are a
    /// bad URL, unreadable TLS files, or a thread that cannot start.
    pub fn connect(
        url: &str,
        client_id: impl Into<String>,
        options: PublisherOptions,
    ) -> Result<Self, MqttError> {
        let mut identity = ClientIdentity::new(client_id);
        if let Some(username) = options.username {
            identity = identity.with_login(username, options.password);
        }
        let mut connect = ConnectOptions::new(Endpoint::parse(url)?, identity);
        connect.tls = TlsOptions::load_first(&options.tls)?;
        connect.keep_alive = options.keep_alive;
        connect.clean_session = options.clean_session;
        connect.retry = options.retry;
        Self::start(&connect, options.queue_capacity)
    }

    /// Connects with `connect`, queueing up to `queue_capacity` messages.
    pub fn start(connect: &ConnectOptions, queue_capacity: usize) -> Result<Self, MqttError> {
        let (options, broker) = connect.rumqttc()?;
        let (client, connection) = Client::new(options, queue_capacity.max(1));
        // The driver polls the event loop on our own thread; the runtime rumqttc made
        // for its blocking iterator is not needed.
        let eventloop = connection.eventloop;
        let shared = Arc::new(Shared::default());
        let state = Arc::new(ConnectionState::default());
        let flags = StopFlags::standalone();
        let driver = Driver::new(
            eventloop,
            broker,
            connect.retry,
            flags.clone(),
            Arc::clone(&state),
            "MQTT broker (publisher)",
        );
        let mut sending = Sending {
            shared: Arc::clone(&shared),
            resend: Vec::new(),
        };
        let watcher_client = client.clone();
        let watcher_flags = flags.clone();
        let name = format!("mqtt-pub-{}", connect.identity.client_id);
        let thread = driver::spawn(name, move || async move {
            let watcher = tokio::spawn(
                watcher_flags.disconnect_on_stop(move || watcher_client.try_disconnect().is_ok()),
            );
            driver.run(&mut sending).await;
            watcher.abort();
        })?;
        Ok(Publisher {
            client,
            shared,
            state,
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
        self.send(topic, payload.into(), qos, false)
    }

    /// Queues a message the broker keeps as the topic's retained message (what a
    /// client subscribing later gets first), blocking while the queue is full.
    pub fn publish_retained(
        &self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        qos: Qos,
    ) -> Result<(), MqttError> {
        self.send(topic, payload.into(), qos, true)
    }

    fn send(&self, topic: &str, payload: Vec<u8>, qos: Qos, retain: bool) -> Result<(), MqttError> {
        check_topic(topic)?;
        check_size(topic, &payload)?;
        self.client
            .publish(topic, qos.to_rumqttc(), retain, payload)
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
        let payload = payload.into();
        check_topic(topic)?;
        check_size(topic, &payload)?;
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
            connected: self.state.connected(),
            reconnects: self.state.reconnects(),
            connection_errors: self.state.connection_errors(),
            published: self.shared.published.load(Ordering::Relaxed),
            completed: self.shared.completed.load(Ordering::Relaxed),
            last_error: self.state.last_error(),
        }
    }

    /// Waits until connected. On timeout returns the last connection error (e.g. the
    /// broker's refusal) if there was one.
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), MqttError> {
        self.wait_until(Instant::now() + timeout, "the MQTT connection", || {
            self.state.connected()
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
        driver::wait_until(deadline, done, || self.is_finished()).map_err(|end| match end {
            WaitEnd::Finished => MqttError::Closed,
            WaitEnd::TimedOut(after) => self.state.explain(MqttError::Timeout {
                after,
                waiting_for: what.to_string(),
            }),
        })
    }

    /// Waits (up to `timeout` in all) until every message is done, then disconnects and
    /// ends the thread. On timeout it disconnects anyway and reports how many messages
    /// were not confirmed.
    pub fn flush_and_close(mut self, timeout: Duration) -> Result<(), MqttError> {
        let deadline = Instant::now() + timeout;
        let flushed = self.flush_until(deadline);
        self.flags.stop();
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
        self.flags.stop();
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

/// Refuses a message whose packet would be over [`MAX_PACKET_SIZE`]: rumqttc would fail
/// the connection on it, reconnect and try the same message again, for ever.
fn check_size(topic: &str, payload: &[u8]) -> Result<(), MqttError> {
    // Fixed header (at most 5), topic length and topic, packet id.
    let size = 5 + 2 + topic.len() + 2 + payload.len();
    if size > MAX_PACKET_SIZE {
        return Err(MqttError::TooLarge {
            size,
            limit: MAX_PACKET_SIZE,
        });
    }
    Ok(())
}

fn check_topic(topic: &str) -> Result<(), MqttError> {
    if rumqttc::valid_topic(topic) && !topic.is_empty() {
        Ok(())
    } else {
        Err(MqttError::InvalidTopic(topic.to_string()))
    }
}

/// The publisher's [`Handler`]: count completions, resend what a lost session forgot.
struct Sending {
    shared: Arc<Shared>,
    /// What rumqttc would resend after the last connection error: it drops this when
    /// the broker has no session for us, so we put it back.
    resend: Vec<Request>,
}

impl Handler for Sending {
    fn connected(&mut self, eventloop: &mut EventLoop, ack: &ConnAck, _first: bool) {
        if !ack.session_present && !self.resend.is_empty() {
            tracing::debug!(count = self.resend.len(), "resending unconfirmed messages");
            eventloop.pending.extend(self.resend.drain(..));
        }
        self.resend.clear();
    }

    fn event(&mut self, _eventloop: &mut EventLoop, event: Event) {
        match event {
            Event::Incoming(Incoming::PubAck(_))
            // Packet id 0: a QoS 0 publish was written; it needs no ack.
            | Event::Outgoing(Outgoing::Publish(0)) => {
                self.shared.completed.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    fn connection_lost(&mut self, eventloop: &mut EventLoop) -> Flow {
        self.resend = resendable(eventloop);
        Flow::Continue
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
    use crate::io::mqtt::embedded::start_embedded_broker;

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
            password: Some(Password::new("hunter2")),
            ..PublisherOptions::default()
        };
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
