//! The client's thread: the MQTT event loop (connect with backoff, dispatch incoming
//! packets, match PUBACKs to outbox ids) and the pump beside it (send outbox records
//! within the in-flight window, send twin requests, renew the SAS token, close).
//!
//! Both run on one current-thread tokio runtime and share [`Link`] (the state of the
//! current connection) under a mutex never held across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Outgoing, QoS, SubscribeFilter};

use super::client::{DeviceClientOptions, IotHubError};
use super::connection_string::SharedAccessKey;
use super::events::{CloudEvent, parse_incoming};
use super::outbox::Outbox;
use super::sas::Token;
use crate::mqtt::{MqttError, StopFlags, lock, next_backoff};

/// The event-loop side's view of the current connection.
#[derive(Default)]
pub(super) struct Link {
    pub(super) connected: bool,
    pub(super) subscribed: bool,
    /// The next outbox id to send on this connection.
    pub(super) cursor: u64,
    /// Telemetry sent on this connection and not acknowledged.
    pub(super) in_flight: usize,
    /// Publishes handed to rumqttc, waiting for their `Outgoing::Publish` event, which
    /// tells their packet id: `Some(outbox id)` for telemetry, `None` for twin requests.
    pub(super) handed: VecDeque<Option<u64>>,
    /// Packet id → outbox id of telemetry awaiting its PUBACK.
    pub(super) pkids: HashMap<u16, u64>,
    /// Twin requests waiting for a subscribed connection: topic and body.
    pub(super) twin_requests: VecDeque<(String, Vec<u8>)>,
    /// A DISCONNECT was requested (renewal or close).
    pub(super) disconnecting: bool,
    /// When the pump started waiting for acknowledgements before a renewal.
    pub(super) renew_wait_since: Option<Instant>,
    /// Renew at this Unix second (None for X.509).
    pub(super) renew_at: Option<u64>,
    /// `close` asked for: send what is pending until then, then disconnect.
    pub(super) close_deadline: Option<Instant>,
    /// The final DISCONNECT was requested: do not reconnect.
    pub(super) closed: bool,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) connections: AtomicU64,
    pub(super) token_renewals: AtomicU64,
    pub(super) connection_errors: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) acknowledged: AtomicU64,
    pub(super) events_dropped: AtomicU64,
    pub(super) token_expiry: AtomicU64,
}

pub(super) struct Shared {
    pub(super) outbox: Mutex<Outbox>,
    pub(super) link: Mutex<Link>,
    pub(super) wake: tokio::sync::Notify,
    pub(super) counters: Counters,
    pub(super) last_error: Mutex<Option<IotHubError>>,
    pub(super) next_rid: AtomicU64,
}

/// The longest a renewal waits for in-flight messages to be acknowledged before it
/// reconnects anyway (they are then sent again).
const RENEW_DRAIN: Duration = Duration::from_secs(5);

/// How often the pump looks at the clock when nothing else wakes it.
const TICK: Duration = Duration::from_millis(100);

pub(super) fn new_token(
    options: &DeviceClientOptions,
    resource: &str,
    key: &SharedAccessKey,
) -> Token {
    Token::new(
        resource,
        key,
        options.clock.unix_seconds(),
        options.token_ttl,
        options.renew_fraction,
    )
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

pub(super) struct Worker {
    pub(super) client: AsyncClient,
    pub(super) broker: String,
    pub(super) filters: Vec<SubscribeFilter>,
    pub(super) devicebound: String,
    pub(super) events_topic: String,
    pub(super) username: String,
    pub(super) resource: String,
    pub(super) key: Option<SharedAccessKey>,
    pub(super) options: DeviceClientOptions,
    pub(super) shared: Arc<Shared>,
    pub(super) flags: StopFlags,
    pub(super) events: Sender<CloudEvent>,
}

impl Worker {
    pub(super) async fn run(self, mut eventloop: EventLoop) {
        let worker = Arc::new(self);
        let pump = tokio::spawn(Arc::clone(&worker).pump());
        worker.event_loop(&mut eventloop).await;
        pump.abort();
        lock(&worker.shared.link).connected = false;
    }

    /// Whether to give up instead of (re)connecting: stopped, or closing with the
    /// deadline passed or nothing left to send.
    fn stop_now(&self, link: &Link) -> bool {
        self.flags.stopping()
            || link
                .close_deadline
                .is_some_and(|d| Instant::now() >= d || lock(&self.shared.outbox).pending() == 0)
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
                        tracing::info!(broker = %self.broker, "reconnected to IoT Hub");
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
        let Some(event) = parse_incoming(&publish.topic, publish.payload, &self.devicebound) else {
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
pub(super) fn split_record(record: &[u8]) -> (&str, &[u8]) {
    match record.iter().position(|&b| b == b'\n') {
        Some(i) => (
            std::str::from_utf8(&record[..i]).unwrap_or(""),
            &record[i + 1..],
        ),
        None => ("", record),
    }
}
