//! The state a [`DeviceClient`](super::DeviceClient)'s handle and its connection
//! thread share: the outbox, the current connection's [`Link`], counters, and the
//! driver's connection state. Its own module so that the handle (`client.rs`) and the
//! thread (`session.rs`) both depend on it and not on each other.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::outbox::Outbox;
use crate::io::mqtt::driver::ConnectionState;

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

/// What the client counts beside the connection state.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) token_renewals: AtomicU64,
    pub(super) sent: AtomicU64,
    pub(super) acknowledged: AtomicU64,
    pub(super) events_dropped: AtomicU64,
    pub(super) token_expiry: AtomicU64,
}

/// Everything the handle and the thread share.
pub(super) struct Shared {
    pub(super) outbox: Mutex<Outbox>,
    pub(super) link: Mutex<Link>,
    /// Wakes the pump (a message queued, an ack, a state change).
    pub(super) wake: tokio::sync::Notify,
    pub(super) counters: Counters,
    /// Connected, connections, connection errors and the last error (the driver's).
    pub(super) state: Arc<ConnectionState>,
    pub(super) next_rid: AtomicU64,
}
