//! The subscriber: a connection (on the [`Driver`]) that subscribes to topic filters
//! and hands every message to a bounded channel the `mqtt` source drains. See
//! [`Subscriber`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError};
use rumqttc::{
    AsyncClient, ConnAck, Event, EventLoop, Incoming, Publish, QoS, SubscribeFilter,
    SubscribeReasonCode,
};
use smartgrid_runtime::record::Message;

use super::driver::{self, ConnectionState, Driver, Handler, STOP_POLL, StopFlags, lock};
use super::error::MqttError;
use super::journal::{Ack, Intake, Journal, Logged};
use super::options::{ConnectOptions, MAX_PACKET_SIZE, MQTT_MAX_PACKET, Qos};
use crate::io::ThrottledLog;

/// Capacity of rumqttc's request channel (subscribe requests, acks, disconnect). The
/// broker sends at most its in-flight window (mosquitto: 20, the embedded broker: 100)
/// of unacknowledged QoS 1 messages, so acks never come close to this.
const REQUEST_CAPACITY: usize = 1024;

/// At most this many distinct topic strings are kept for reuse (one `Arc<str>` per
/// sensor topic instead of an allocation per message).
const TOPIC_CACHE: usize = 4096;

/// What to subscribe to and how messages are handed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// Topic filters (checked by the caller: `rumqttc::valid_filter`).
    pub topics: Vec<String>,
    /// QoS of every subscription; with QoS 1 a message is acknowledged only after it
    /// is in the channel.
    pub qos: Qos,
    /// How many messages may wait in the channel (at least 1).
    pub channel_capacity: usize,
    /// The largest payload handed on. A larger one is acknowledged, counted and kept
    /// aside as a [`Refused`] (topic and size, not its body) instead.
    pub max_message_size: usize,
}

/// A message refused for its size: acknowledged to the broker (so it is not sent again)
/// and not handed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Its topic.
    pub topic: Arc<str>,
    /// Its payload's size in bytes.
    pub size: usize,
}

/// How many refused messages are kept for the consumer to take; past that they are
/// still counted.
const REFUSED_KEPT: usize = 1024;

impl SubscribeOptions {
    /// `topics` at QoS 1 with a channel of 10 000.
    pub fn new(topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        SubscribeOptions {
            topics: topics.into_iter().map(Into::into).collect(),
            qos: Qos::AtLeastOnce,
            channel_capacity: 10_000,
            max_message_size: MAX_PACKET_SIZE,
        }
    }
}

/// A snapshot of a subscriber's state.
#[derive(Debug, Clone)]
pub struct SubscriberStats {
    /// Connected to the broker right now.
    pub connected: bool,
    /// Connected and the subscriptions are in place (acknowledged, or kept by the
    /// broker's session).
    pub subscribed: bool,
    /// Successful connects after the first one.
    pub reconnects: u64,
    /// Failed connection attempts and dropped connections.
    pub connection_errors: u64,
    /// Messages handed into the channel.
    pub messages: u64,
    /// Messages refused for their size.
    pub oversized: u64,
    /// Whether the subscriptions were in place at some point of the run.
    pub ever_subscribed: bool,
    /// Reconnects the broker answered without the persistent session it had given us
    /// (restarted without persistence, or expired or dropped the session): messages
    /// published while we were away were not queued for us. Always 0 with
    /// `clean_session`, which asks for a fresh session on every connect.
    pub sessions_lost: u64,
    /// The most recent connection error, if any.
    pub last_error: Option<MqttError>,
}

type Wake = Box<dyn Fn() + Send>;

/// What the subscriber's thread and its handle share beside the connection state.
#[derive(Default)]
struct Shared {
    subscribed: AtomicBool,
    /// Subscribed at least once during the run.
    ever_subscribed: AtomicBool,
    messages: AtomicU64,
    oversized: AtomicU64,
    sessions_lost: AtomicU64,
    /// The latest refused messages, for [`Subscriber::take_refused`].
    refused: Mutex<VecDeque<Refused>>,
    wake: Mutex<Option<Wake>>,
}

impl Shared {
    fn wake(&self) {
        if let Some(wake) = lock(&self.wake).as_ref() {
            wake();
        }
    }
}

/// The subscriber: a background thread that keeps an MQTT connection alive and hands
/// every received message to a bounded channel the pipeline's source drains.
///
/// ```text
///  broker ──TCP/TLS──▶ rumqttc EventLoop ──▶ bounded channel ──▶ Subscriber::try_recv
///                       (Driver, own thread,  (channel_capacity;     (timely source,
///                        tokio current-        full = stop reading    never blocks)
///                        thread runtime)       from the broker)
/// ```
///
/// * **Acknowledgement.** With QoS 1 a message is acknowledged to the broker only after
///   it is in the channel, so a message the broker considers delivered is never lost
///   by this layer (a crash before the ack means the broker sends it again:
///   at-least-once). With a write-ahead log ([`spawn_logged_subscriber`]) it is
///   acknowledged once it is synced to disk, so it also survives a crash after the ack.
/// * **Backpressure.** When the channel is full the thread waits for room before it
///   reads the next packet; the broker's in-flight window then fills and it stops
///   sending. Memory stays bounded. (No pings go out while waiting: a pipeline stalled
///   for longer than 1.5 × `keep_alive` gets disconnected, reconnects, and receives the
///   unacknowledged messages again.)
/// * **Reconnects.** The [`Driver`] waits with a jittered backoff between attempts. The
///   subscriber subscribes on the first connect and whenever the broker has no session
///   for this client (`session_present` false, e.g. a broker restarted without
///   persistence). With a persistent session, such a reconnect after we had subscribed
///   means the broker forgot what it should have queued for us: it is counted
///   ([`SubscriberStats::sessions_lost`]) and logged as a warning, since nothing else
///   would show the gap.
/// * **Stopping.** When the shutdown flag (or [`Subscriber::stop`]) is set, the thread
///   sends DISCONNECT, exits, and the channel closes once drained, so the source can
///   finish.
///
/// Dropping it stops the connection thread (without waiting for it).
pub struct Subscriber {
    rx: Receiver<Message>,
    shared: Arc<Shared>,
    state: Arc<ConnectionState>,
    flags: StopFlags,
    thread: Option<JoinHandle<()>>,
}

/// Connects with `connect` in a background thread and subscribes as `subscribe` says.
///
/// Returns at once; the connection is made (and remade) in the background, so an
/// unreachable broker is not an error here (see [`Subscriber::stats`] and
/// [`Subscriber::wait_subscribed`]). Errors are a TLS configuration that cannot be
/// built, an embedded broker that cannot start, or a thread that cannot be spawned.
/// Setting `shutdown` stops the thread.
pub fn spawn_subscriber(
    connect: &ConnectOptions,
    subscribe: &SubscribeOptions,
    shutdown: Arc<AtomicBool>,
) -> Result<Subscriber, MqttError> {
    spawn(connect, subscribe, shutdown, None)
}

/// [`spawn_subscriber`] with a write-ahead log: every message is appended to `journal`
/// and synced before it is acknowledged, and only then put into the channel, in log
/// order (see [`super::journal`]).
pub fn spawn_logged_subscriber(
    connect: &ConnectOptions,
    subscribe: &SubscribeOptions,
    shutdown: Arc<AtomicBool>,
    journal: Journal,
) -> Result<Subscriber, MqttError> {
    spawn(connect, subscribe, shutdown, Some(journal))
}

fn spawn(
    connect: &ConnectOptions,
    subscribe: &SubscribeOptions,
    shutdown: Arc<AtomicBool>,
    journal: Option<Journal>,
) -> Result<Subscriber, MqttError> {
    // Read any packet the protocol can frame: one over our limit is then refused once,
    // not a broken connection the broker answers by sending it again.
    let mut connect = connect.clone();
    connect.max_incoming_packet = MQTT_MAX_PACKET;
    let connect = &connect;
    let (mut options, broker) = connect.rumqttc()?;
    let qos = subscribe.qos;
    // QoS 1 messages are acknowledged by us, after they are in the channel.
    options.set_manual_acks(qos == Qos::AtLeastOnce);
    let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let (tx, rx) = crossbeam_channel::bounded(subscribe.channel_capacity.max(1));
    let shared = Arc::new(Shared::default());
    let state = Arc::new(ConnectionState::default());
    let flags = StopFlags::new(shutdown);
    let journal = match journal {
        Some(journal) => {
            let shared = Arc::clone(&shared);
            let delivered = Box::new(move || {
                shared.messages.fetch_add(1, Ordering::Relaxed);
                shared.wake();
            });
            let capacity = subscribe.channel_capacity;
            let name = &connect.identity.client_id;
            Some(journal.spawn(name, tx.clone(), delivered, flags.clone(), capacity)?)
        }
        None => None,
    };
    let driver = Driver::new(
        eventloop,
        broker.clone(),
        connect.retry,
        flags.clone(),
        Arc::clone(&state),
        "MQTT broker",
    );
    let mut receiving = Receiving {
        client,
        filters: subscribe
            .topics
            .iter()
            .map(|topic| SubscribeFilter::new(topic.clone(), qos.to_rumqttc()))
            .collect(),
        tx: Some(tx),
        persistent: !connect.clean_session,
        broker,
        client_id: connect.identity.client_id.clone(),
        shared: Arc::clone(&shared),
        state: Arc::clone(&state),
        flags: flags.clone(),
        topics: HashMap::new(),
        pending_acks: VecDeque::new(),
        need_subscribe: false,
        max_message_size: subscribe.max_message_size,
        log: ThrottledLog::new(&connect.identity.client_id),
        journal,
    };
    let name = format!("mqtt-sub-{}", connect.identity.client_id);
    let thread = driver::spawn(name, move || async move {
        let client = receiving.client.clone();
        let watcher = tokio::spawn(
            receiving
                .flags
                .clone()
                .disconnect_on_stop(move || client.try_disconnect().is_ok()),
        );
        let acks = receiving.journal.as_ref().map(|journal| {
            tokio::spawn(journal.ack_sender(receiving.client.clone(), Arc::clone(&receiving.state)))
        });
        driver.run(&mut receiving).await;
        watcher.abort();
        if let Some(acks) = acks {
            acks.abort();
        }
        receiving.finish();
    })?;
    Ok(Subscriber {
        rx,
        shared,
        state,
        flags,
        thread: Some(thread),
    })
}

impl Subscriber {
    /// The next message, without blocking. `Err(Empty)`: nothing yet;
    /// `Err(Disconnected)`: the thread has stopped and every message was taken.
    pub fn try_recv(&self) -> Result<Message, TryRecvError> {
        self.rx.try_recv()
    }

    /// The messages refused for their size since the last call (the latest
    /// 1024 at most; [`SubscriberStats::oversized`] counts them all).
    pub fn take_refused(&self) -> Vec<Refused> {
        lock(&self.shared.refused).drain(..).collect()
    }

    /// The next message, waiting up to `timeout` (for tests and simple consumers).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }

    /// The channel itself, e.g. to `select!` on it or to drain it with `try_iter`.
    pub fn receiver(&self) -> &Receiver<Message> {
        &self.rx
    }

    /// Calls `wake` after each message is pushed into the channel, and once when the
    /// channel closes (hand in timely's `SyncActivator` here). Replaces an earlier
    /// callback. If messages are already waiting, `wake` is called right away.
    pub fn set_wake(&self, wake: Box<dyn Fn() + Send>) {
        let mut slot = lock(&self.shared.wake);
        if !self.rx.is_empty() || self.is_finished() {
            wake();
        }
        *slot = Some(wake);
    }

    /// Whether the subscriptions are in place now (acknowledged, or kept by the
    /// broker's session): one atomic load, cheap enough for every poll.
    pub fn is_subscribed(&self) -> bool {
        self.shared.subscribed.load(Ordering::Relaxed)
    }

    /// Show whether the connection is up in `gauge` (1 or 0) from now on.
    pub fn report_connection_to(&self, gauge: smartgrid_runtime::metrics::Gauge) {
        self.state.report_to(gauge);
    }

    /// Connection state and counters.
    pub fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            connected: self.state.connected(),
            subscribed: self.shared.subscribed.load(Ordering::Relaxed),
            reconnects: self.state.reconnects(),
            connection_errors: self.state.connection_errors(),
            messages: self.shared.messages.load(Ordering::Relaxed),
            oversized: self.shared.oversized.load(Ordering::Relaxed),
            ever_subscribed: self.shared.ever_subscribed.load(Ordering::Relaxed),
            sessions_lost: self.sessions_lost(),
            last_error: self.state.last_error(),
        }
    }

    /// How many times the broker lost our session ([`SubscriberStats::sessions_lost`]);
    /// cheaper than [`stats`](Self::stats), for a source that polls it.
    pub fn sessions_lost(&self) -> u64 {
        self.shared.sessions_lost.load(Ordering::Relaxed)
    }

    /// Waits until connected with the subscriptions in place. On timeout returns the
    /// last connection error (e.g. the broker's refusal) if there was one.
    pub fn wait_subscribed(&self, timeout: Duration) -> Result<(), MqttError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.subscribed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let last_error = self.state.last_error();
            if let Some(refused @ MqttError::SubscriptionRefused { .. }) = last_error {
                return Err(refused);
            }
            if self.is_finished() {
                return Err(last_error.unwrap_or(MqttError::Closed));
            }
            if Instant::now() >= deadline {
                return Err(self.state.explain(MqttError::Timeout {
                    after: timeout,
                    waiting_for: "the MQTT subscription".into(),
                }));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the connection thread has ended (after a stop or shutdown).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Disconnects and waits for the thread to end. Messages already in the channel
    /// can still be taken; then [`try_recv`](Self::try_recv) reports `Disconnected`.
    pub fn stop(&mut self) {
        self.flags.stop();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the MQTT subscriber thread panicked");
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.flags.stop();
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("stats", &self.stats())
            .field("queued", &self.rx.len())
            .finish()
    }
}

/// What happened to a received message.
enum Delivery {
    /// It is in the channel.
    Delivered,
    /// A stop flag was set while waiting for room; it was not delivered.
    Stopping,
    /// The receiver was dropped; nobody wants messages any more.
    ReceiverGone,
}

/// The subscriber's [`Handler`]: subscribe, deliver, acknowledge.
struct Receiving {
    client: AsyncClient,
    filters: Vec<SubscribeFilter>,
    /// `None` once the thread is done, so the channel closes before the last wake.
    tx: Option<Sender<Message>>,
    /// `clean_session` is off: the broker is expected to keep our session.
    persistent: bool,
    /// `host:port` and our client id, for the lost-session warning.
    broker: String,
    client_id: String,
    shared: Arc<Shared>,
    state: Arc<ConnectionState>,
    flags: StopFlags,
    /// Topic strings seen recently, shared by their messages.
    topics: HashMap<String, Arc<str>>,
    /// Acks that did not fit into rumqttc's request channel yet, in receive order.
    pending_acks: VecDeque<Publish>,
    need_subscribe: bool,
    max_message_size: usize,
    /// At most one line per reason per 10 s (a flood of large messages is one line).
    log: ThrottledLog,
    /// The write-ahead log: when there is one, every message goes through it.
    journal: Option<Intake>,
}

impl Handler for Receiving {
    fn connected(&mut self, eventloop: &mut EventLoop, ack: &ConnAck, first: bool) {
        // A refusal belongs to the subscription of the previous connection.
        self.state
            .clear_error_if(|e| matches!(e, MqttError::SubscriptionRefused { .. }));
        if !first && !ack.session_present {
            self.session_lost();
        }
        // The first connect always subscribes, so a changed `topics` list takes effect
        // even when the broker kept the old session; later ones only when the broker
        // has no session for us.
        if ack.session_present && !first {
            self.shared.subscribed.store(true, Ordering::Relaxed);
            self.shared.ever_subscribed.store(true, Ordering::Relaxed);
        } else {
            self.need_subscribe = true;
        }
        self.deliver_stale(eventloop);
    }

    fn event(&mut self, _eventloop: &mut EventLoop, event: Event) {
        match event {
            Event::Incoming(Incoming::Publish(publish)) => {
                if self.flags.stopping() {
                    // Not acknowledged: the broker keeps it for the next session.
                    return;
                }
                if publish.payload.len() > self.max_message_size {
                    self.refuse(&publish);
                    match &self.journal {
                        Some(journal) => journal.ack_only(Ack::of(&publish, self.epoch())),
                        None => self.ack(&publish),
                    }
                    return;
                }
                if self.journal.is_some() {
                    self.log_message(&publish, true);
                    return;
                }
                match self.deliver(&publish) {
                    Delivery::Delivered => self.ack(&publish),
                    Delivery::Stopping => {}
                    Delivery::ReceiverGone => self.flags.stop(),
                }
            }
            Event::Incoming(Incoming::SubAck(suback)) => self.check_suback(&suback.return_codes),
            _ => {}
        }
    }

    fn connection_lost(&mut self, _eventloop: &mut EventLoop) -> driver::Flow {
        self.shared.subscribed.store(false, Ordering::Relaxed);
        // rumqttc drops queued acks on a connection error; the broker resends the
        // unacknowledged messages instead.
        self.pending_acks.clear();
        self.need_subscribe = false;
        driver::Flow::Continue
    }

    fn after_poll(&mut self) {
        if self.need_subscribe && self.state.connected() {
            match self.client.try_subscribe_many(self.filters.clone()) {
                Ok(()) => self.need_subscribe = false,
                Err(_) => tracing::debug!("request channel full; subscribing later"),
            }
        }
        self.flush_acks();
    }
}

impl Receiving {
    /// After the driver ended: close the channel, then wake the consumer so it sees the
    /// end.
    fn finish(&mut self) {
        self.shared.subscribed.store(false, Ordering::Relaxed);
        if let Some(mut journal) = self.journal.take() {
            journal.close();
        }
        self.tx = None;
        self.shared.wake();
    }

    /// rumqttc keeps packets it had read but not yet returned when a connection broke,
    /// and returns them after the next CONNACK. Their packet ids belong to the old
    /// connection, so acking them could acknowledge a different message of the new
    /// one. Deliver them without an ack: a broker that kept our session sends them
    /// again (a duplicate, as at-least-once allows); one that did not has forgotten
    /// them, and they are not lost here either.
    fn deliver_stale(&mut self, eventloop: &mut EventLoop) {
        if eventloop.state.events.is_empty() {
            return;
        }
        let stale: Vec<Publish> = eventloop
            .state
            .events
            .drain(..)
            .filter_map(|event| match event {
                Event::Incoming(Incoming::Publish(publish)) => Some(publish),
                _ => None,
            })
            .collect();
        for publish in stale {
            if self.flags.stopping() {
                return;
            }
            if self.journal.is_some() {
                self.log_message(&publish, false);
                continue;
            }
            if let Delivery::ReceiverGone = self.deliver(&publish) {
                self.flags.stop();
                return;
            }
        }
    }

    /// A reconnect without our session. Only a persistent session that held our
    /// subscriptions can be lost: with `clean_session` a fresh one is what we asked for,
    /// and before the first SUBACK there was nothing for the broker to keep.
    fn session_lost(&self) {
        if !self.persistent || !self.shared.ever_subscribed.load(Ordering::Relaxed) {
            return;
        }
        let lost = self.shared.sessions_lost.fetch_add(1, Ordering::Relaxed) + 1;
        // Not throttled: a broker loses sessions when it restarts, which the backoff
        // already spaces out, and every loss is a gap in the data worth a line.
        tracing::warn!(
            broker = %self.broker,
            client_id = %self.client_id,
            sessions_lost = lost,
            "the MQTT broker lost our session (it restarted without persistence, or the \
             session expired or was cleared): messages published while we were disconnected \
             were not queued for us and are lost; subscribing again. To keep them, enable \
             persistence on the broker (docs/operations.md, \"The broker's sessions\")"
        );
        // So the source updates its counter now, not at the next message.
        self.shared.wake();
    }

    fn check_suback(&self, codes: &[SubscribeReasonCode]) {
        let mut ok = true;
        for (code, filter) in codes.iter().zip(&self.filters) {
            if matches!(code, SubscribeReasonCode::Failure) {
                ok = false;
                let error = MqttError::SubscriptionRefused {
                    filter: filter.path.clone(),
                };
                tracing::error!(%error, "MQTT subscription refused");
                self.state.set_error(error);
            }
        }
        if ok {
            self.shared.subscribed.store(true, Ordering::Relaxed);
            if self.shared.ever_subscribed.swap(true, Ordering::Relaxed) {
                // Only a reconnect without our session subscribes again: this line
                // closes the gap its warning opened.
                tracing::info!(broker = %self.broker, client_id = %self.client_id, "subscribed again");
            }
        }
    }

    /// Puts the message into the channel, waiting for room (that wait is the
    /// backpressure) but not past a stop.
    fn deliver(&mut self, publish: &Publish) -> Delivery {
        let Some(tx) = self.tx.as_ref() else {
            return Delivery::ReceiverGone;
        };
        let topic = intern(&mut self.topics, &publish.topic);
        let mut message = Message {
            topic,
            payload: publish.payload.clone(),
        };
        loop {
            match tx.send_timeout(message, STOP_POLL) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) => {
                    if self.flags.stopping() {
                        return Delivery::Stopping;
                    }
                    message = back;
                }
                Err(SendTimeoutError::Disconnected(_)) => return Delivery::ReceiverGone,
            }
        }
        self.shared.messages.fetch_add(1, Ordering::Relaxed);
        self.shared.wake();
        Delivery::Delivered
    }

    /// Hands the message to the write-ahead log, which acknowledges it (if `ack`) once
    /// it is durable.
    fn log_message(&mut self, publish: &Publish, ack: bool) {
        let Some(journal) = &self.journal else { return };
        let message = Message {
            topic: intern(&mut self.topics, &publish.topic),
            payload: publish.payload.clone(),
        };
        let ack = Ack::of(publish, self.epoch()).filter(|_| ack);
        if journal.receive(message, ack, &self.flags) == Logged::Ended {
            self.flags.stop();
        }
    }

    /// The connection the messages now received belong to.
    fn epoch(&self) -> u64 {
        self.state.connections()
    }

    /// Keeps a message that is too large aside (its topic and size), counted and logged.
    fn refuse(&mut self, publish: &Publish) {
        let refused = Refused {
            topic: intern(&mut self.topics, &publish.topic),
            size: publish.payload.len(),
        };
        self.shared.oversized.fetch_add(1, Ordering::Relaxed);
        self.log.warn(
            "oversized",
            format_args!(
                "a message of {} bytes on `{}` refused: over the {}-byte limit",
                refused.size, refused.topic, self.max_message_size
            ),
        );
        let mut kept = lock(&self.shared.refused);
        if kept.len() == REFUSED_KEPT {
            kept.pop_front();
        }
        kept.push_back(refused);
        drop(kept);
        self.shared.wake();
    }

    /// Acknowledges a delivered QoS 1 message (in receive order, as MQTT requires).
    fn ack(&mut self, publish: &Publish) {
        if publish.qos == QoS::AtMostOnce {
            return;
        }
        if self.pending_acks.is_empty() && self.client.try_ack(publish).is_ok() {
            return;
        }
        // Only pkid and QoS matter for an ack.
        let mut ack = Publish::from_bytes(String::new(), publish.qos, Bytes::new());
        ack.pkid = publish.pkid;
        self.pending_acks.push_back(ack);
    }

    fn flush_acks(&mut self) {
        while let Some(ack) = self.pending_acks.front() {
            if self.client.try_ack(ack).is_err() {
                return;
            }
            self.pending_acks.pop_front();
        }
    }
}

/// The shared `Arc<str>` for `topic`.
fn intern(cache: &mut HashMap<String, Arc<str>>, topic: &str) -> Arc<str> {
    if let Some(shared) = cache.get(topic) {
        return Arc::clone(shared);
    }
    if cache.len() >= TOPIC_CACHE {
        cache.clear();
    }
    let shared: Arc<str> = Arc::from(topic);
    cache.insert(topic.to_string(), Arc::clone(&shared));
    shared
}

#[cfg(test)]
#[path = "subscriber_tests.rs"]
mod tests;
