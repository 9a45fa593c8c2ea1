//! The client's connection thread: the IoT Hub [`Handler`] on the MQTT connection
//! driver (dispatch incoming packets, match PUBACKs to outbox ids, renew the SAS token
//! before connecting) and the pump beside it (send outbox records within the in-flight
//! window, send twin requests, ask for the renewal's reconnect, close).
//!
//! Both run on one current-thread tokio runtime and share [`Link`] (the state of the
//! current connection) under a mutex never held across an `.await`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use rumqttc::{AsyncClient, ConnAck, Event, EventLoop, Incoming, Outgoing, QoS, SubscribeFilter};

use super::connection_string::SharedAccessKey;
use super::events::{CloudEvent, parse_incoming};
use super::options::DeviceClientOptions;
use super::sas::Token;
use super::shared::{Link, Shared};
use crate::io::mqtt::driver::{Driver, Flow, Handler, StopFlags, lock};

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

/// The connection thread's state (shared by the handler and the pump).
pub(super) struct Worker {
    pub(super) client: AsyncClient,
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
    /// Runs the pump beside `driver` until the driver ends.
    pub(super) async fn run(self, driver: Driver) {
        let worker = Arc::new(self);
        let pump = tokio::spawn(Arc::clone(&worker).pump());
        driver.run(&mut HubLink(Arc::clone(&worker))).await;
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

    /// After a DISCONNECT or a broken connection: drop the socket and what rumqttc
    /// would resend (the outbox resends it); `Stop` if the client is done.
    fn link_down(&self, eventloop: &mut EventLoop) -> Flow {
        let mut link = lock(&self.shared.link);
        link.connected = false;
        link.subscribed = false;
        eventloop.clean();
        eventloop.pending.clear();
        if link.closed || self.stop_now(&link) {
            Flow::Stop
        } else {
            Flow::Continue
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

/// The IoT Hub client's [`Handler`] on the connection driver.
struct HubLink(Arc<Worker>);

impl Handler for HubLink {
    fn before_connect(&mut self, eventloop: &mut EventLoop) -> Flow {
        let mut link = lock(&self.0.shared.link);
        if self.0.stop_now(&link) {
            return Flow::Stop;
        }
        self.0.refresh_token_if_due(&mut link, eventloop);
        Flow::Continue
    }

    fn connected(&mut self, _eventloop: &mut EventLoop, _ack: &ConnAck, _first: bool) {
        let worker = &self.0;
        let mut link = lock(&worker.shared.link);
        *link = Link {
            connected: true,
            cursor: 0,
            twin_requests: std::mem::take(&mut link.twin_requests),
            renew_at: link.renew_at,
            close_deadline: link.close_deadline,
            ..Link::default()
        };
        // Every connection is a clean session: subscribe each time.
        if worker
            .client
            .try_subscribe_many(worker.filters.clone())
            .is_err()
        {
            tracing::warn!("cannot queue the IoT Hub subscriptions");
        }
        drop(link);
        worker.shared.wake.notify_one();
    }

    fn event(&mut self, _eventloop: &mut EventLoop, event: Event) {
        let worker = &self.0;
        match event {
            Event::Incoming(Incoming::SubAck(ack)) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                {
                    tracing::warn!("IoT Hub refused a subscription: {:?}", ack.return_codes);
                }
                lock(&worker.shared.link).subscribed = true;
                worker.shared.wake.notify_one();
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let mut link = lock(&worker.shared.link);
                if let Some(Some(id)) = link.handed.pop_front() {
                    link.pkids.insert(pkid, id);
                    worker.shared.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                let mut link = lock(&worker.shared.link);
                if let Some(id) = link.pkids.remove(&ack.pkid) {
                    link.in_flight = link.in_flight.saturating_sub(1);
                    if let Err(e) = lock(&worker.shared.outbox).ack(id) {
                        tracing::error!(
                            "cannot remove an acknowledged message from the outbox: {e}"
                        );
                    }
                    worker
                        .shared
                        .counters
                        .acknowledged
                        .fetch_add(1, Ordering::Relaxed);
                    drop(link);
                    worker.shared.wake.notify_one();
                }
            }
            Event::Incoming(Incoming::Publish(publish)) => worker.dispatch(publish),
            _ => {}
        }
    }

    /// A renewal's DISCONNECT reconnects (with the new token, in `before_connect`);
    /// the final one ends the driver.
    fn disconnected(&mut self, eventloop: &mut EventLoop) -> Flow {
        self.0.link_down(eventloop)
    }

    fn connection_lost(&mut self, eventloop: &mut EventLoop) -> Flow {
        self.0.link_down(eventloop)
    }

    /// A closing client waits no longer than its deadline.
    fn max_pause(&self) -> Option<Duration> {
        lock(&self.0.shared.link)
            .close_deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
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
