//! The subscriber's write-ahead log: with one, every received message is appended to a
//! [`Wal`] and synced *before* it is acknowledged to the broker, so a message the broker
//! considers delivered survives a crash of the process (kill -9) or of the machine; the
//! next run replays what the last checkpoint had not covered.
//!
//! ```text
//!  driver thread                 committer thread                       driver thread
//!  PUBLISH ─▶ Intake::receive ─▶ append … append, one fsync ─▶ acks ─▶ ack task: PUBACK,
//!             (waits while the     (the group), then each                in receive order,
//!              log is full or      message into the channel              on the connection
//!              too many wait)      the source drains                     that received it
//! ```
//!
//! * **Group commit.** The committer syncs everything queued while its previous sync
//!   ran: under load a group is what the broker had in flight, at a trickle every
//!   message gets its own sync, and nobody waits for a timer. `commit_interval` holds a
//!   group open longer (fewer syncs, more latency); `Fsync::Always` syncs and
//!   acknowledges each message alone.
//! * **Acknowledgements** go out from the driver's thread (a task on its runtime), and
//!   only on the connection that received the message: a packet id of a lost connection
//!   may name another message on the next one, which must not be acknowledged before it
//!   is durable. Between the driver noticing a lost connection and the next one there is
//!   no await, so the check and the ack cannot straddle a reconnect.
//! * **Positions.** Records go into the channel in log order, each once, and only the
//!   committer puts messages there; so the consumer knows every live message's position
//!   by counting from [`Journal::end`] as it was when the subscriber started. A stop
//!   ends the deliveries for good (the rest is replayed by the next run), never leaves
//!   a gap.
//! * **Backpressure.** The driver waits (and so stops reading from the broker, which
//!   stops sending once its in-flight window is unacknowledged) while the log is full,
//!   until a checkpoint lets [`JournalHandle::commit`] truncate it, or while
//!   `channel_capacity` messages wait to be delivered. Nothing is dropped.
//! * **Failure.** A log that cannot be written stops the subscriber: what was not synced
//!   is not acknowledged and the broker sends it again to the next run.
//!   [`JournalHandle::failure`] says why.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{SendTimeoutError, Sender};
use rumqttc::{AsyncClient, Publish, QoS};
use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::record::Message;

use super::driver::{ConnectionState, STOP_POLL, StopFlags, lock};
use super::error::MqttError;
use crate::spool::segment::FRAME_HEADER;
use crate::wal::{Replay, Wal, WalError, WalOptions};

/// How often a log that stays full is reported.
const FULL_WARNING: Duration = Duration::from_secs(60);

/// When a received message is synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Each message alone, then its acknowledgement.
    Always,
    /// A group at a time (see the module docs).
    Group,
}

/// Where and how the subscriber logs messages before acknowledging them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalOptions {
    /// The log's directory.
    pub dir: PathBuf,
    /// Most bytes on disk.
    pub max_bytes: u64,
    /// When to sync.
    pub fsync: Fsync,
    /// `Group` only: how long a group stays open after its first message (zero: it
    /// closes as soon as the previous sync is done).
    pub commit_interval: Duration,
}

/// What the journal counts.
#[derive(Clone, Debug, Default)]
pub struct JournalCounters {
    /// Records appended.
    pub appended: Counter,
    /// Bytes appended, framing included.
    pub bytes: Counter,
    /// Syncs (appended / syncs is the mean group).
    pub syncs: Counter,
}

/// A message as a record: `[topic length u16 LE][topic][payload]` (an MQTT topic is at
/// most 65535 bytes).
fn encode(message: &Message, out: &mut Vec<u8>) {
    let topic = message.topic.as_bytes();
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(&message.payload);
}

fn encoded_len(message: &Message) -> u64 {
    (2 + message.topic.len() + message.payload.len()) as u64
}

fn decode(record: Vec<u8>) -> Option<Message> {
    let len = usize::from(u16::from_le_bytes([*record.first()?, *record.get(1)?]));
    let topic = std::str::from_utf8(record.get(2..2 + len)?).ok()?;
    let topic: Arc<str> = Arc::from(topic);
    let payload = Bytes::from(record).slice(2 + len..);
    Some(Message { topic, payload })
}

/// An acknowledgement owed to the broker, and the connection it belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ack {
    pkid: u16,
    qos: QoS,
    epoch: u64,
}

impl Ack {
    /// The ack `publish` needs (none at QoS 0), received on connection `epoch`.
    pub(crate) fn of(publish: &Publish, epoch: u64) -> Option<Ack> {
        (publish.qos != QoS::AtMostOnce).then_some(Ack {
            pkid: publish.pkid,
            qos: publish.qos,
            epoch,
        })
    }
}

enum Item {
    Record {
        message: Message,
        ack: Option<Ack>,
    },
    /// A message acknowledged without a record (refused for its size), in its place.
    Ack(Ack),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Item>,
    /// Frames queued and not yet appended.
    queued_bytes: u64,
    /// The log's bytes, as of the committer's last append or truncation.
    log_bytes: u64,
    /// Records queued or appended that are not in the channel yet.
    undelivered: usize,
    /// When the oldest queued record arrived.
    oldest: Option<Instant>,
    /// The latest position a checkpoint committed.
    commit: u64,
    /// The driver waits for room.
    blocked: bool,
    /// When the driver last said that the log is full.
    warned_full: Option<Instant>,
    closing: bool,
    /// The channel's receiver is gone.
    gone: bool,
    failure: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    max_bytes: u64,
    acks: Mutex<VecDeque<Ack>>,
    acks_ready: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>, timeout: Duration) -> MutexGuard<'a, State> {
        self.changed
            .wait_timeout(state, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    fn push_acks(&self, acks: &mut Vec<Ack>) {
        if acks.is_empty() {
            return;
        }
        lock(&self.acks).extend(acks.drain(..));
        self.acks_ready.notify_one();
    }
}

/// A handle on a running journal: commits, and its failure.
#[derive(Clone)]
pub struct JournalHandle(Arc<Shared>);

impl JournalHandle {
    /// A checkpoint covers the records before `position`: the log may drop them. Cheap
    /// and non-blocking (the committer truncates), so it may be called under a lock.
    pub fn commit(&self, position: u64) {
        let mut state = self.0.lock();
        if position > state.commit {
            state.commit = position;
            self.0.changed.notify_all();
        }
    }

    /// Why the log stopped the subscriber, if it did.
    pub fn failure(&self) -> Option<String> {
        self.0.lock().failure.clone()
    }
}

impl std::fmt::Debug for JournalHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalHandle").finish_non_exhaustive()
    }
}

/// An open log, before the subscriber runs: where it stands, and what to replay.
pub struct Journal {
    wal: Wal,
    options: JournalOptions,
    counters: JournalCounters,
    shared: Arc<Shared>,
}

impl Journal {
    /// Opens (and recovers) the log in `options.dir`.
    pub fn open(options: JournalOptions, counters: JournalCounters) -> Result<Self, WalError> {
        let wal = Wal::open(&options.dir, WalOptions::new(options.max_bytes))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                log_bytes: wal.bytes(),
                commit: wal.start(),
                ..State::default()
            }),
            changed: Condvar::new(),
            max_bytes: options.max_bytes,
            acks: Mutex::default(),
            acks_ready: tokio::sync::Notify::new(),
        });
        Ok(Journal {
            wal,
            options,
            counters,
            shared,
        })
    }

    /// The first position kept: without a checkpoint, replay starts here.
    pub fn start(&self) -> u64 {
        self.wal.start()
    }

    /// The position the next message gets: the first live one.
    pub fn end(&self) -> u64 {
        self.wal.end()
    }

    /// Numbers the next message `position` if the log ends before it (see
    /// [`Wal::advance_to`]).
    pub fn advance_to(&mut self, position: u64) -> Result<(), WalError> {
        self.wal.advance_to(position)?;
        self.shared.lock().log_bytes = self.wal.bytes();
        Ok(())
    }

    /// The logged messages from `from` to the current end, with their positions.
    pub fn replay(&mut self, from: u64) -> Result<Replayed, WalError> {
        Ok(Replayed {
            replay: self.wal.replay(from)?,
            undecodable: 0,
        })
    }

    /// A handle for commits and failures.
    pub fn handle(&self) -> JournalHandle {
        JournalHandle(Arc::clone(&self.shared))
    }

    /// Starts the committer thread: it syncs what the returned [`Intake`] queues, hands
    /// the messages to `tx` (calling `delivered` after each) and queues their acks.
    pub(crate) fn spawn(
        self,
        name: &str,
        tx: Sender<Message>,
        delivered: Box<dyn Fn() + Send>,
        flags: StopFlags,
        capacity: usize,
    ) -> Result<Intake, MqttError> {
        let shared = Arc::clone(&self.shared);
        let committer = std::thread::Builder::new()
            .name(format!("mqtt-wal-{name}"))
            .spawn(move || {
                Committer {
                    wal: self.wal,
                    options: self.options,
                    counters: self.counters,
                    shared: self.shared,
                    tx,
                    delivered,
                    flags,
                    delivering: true,
                }
                .run();
            })
            .map_err(|e| MqttError::Spawn(Arc::new(e)))?;
        Ok(Intake {
            shared,
            capacity: capacity.max(1),
            committer: Some(committer),
        })
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("wal", &self.wal)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Logged messages read back, as `(position, message)`; a record that is not a message
/// (which this log never writes) is skipped and counted.
#[derive(Debug)]
pub struct Replayed {
    replay: Replay,
    undecodable: u64,
}

impl Replayed {
    /// Messages not read yet.
    pub fn remaining(&self) -> u64 {
        self.replay.remaining()
    }

    /// The position after the last message.
    pub fn end(&self) -> u64 {
        self.replay.end()
    }

    /// Records skipped: unreadable or not a message.
    pub fn lost(&self) -> u64 {
        self.replay.lost() + self.undecodable
    }
}

impl Iterator for Replayed {
    type Item = Result<(u64, Message), WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.replay.next()? {
                Ok((position, record)) => match decode(record) {
                    Some(message) => return Some(Ok((position, message))),
                    None => {
                        tracing::warn!("write-ahead log: record {position} is not a message");
                        self.undecodable += 1;
                    }
                },
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// What became of a received message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Logged {
    /// Queued: it is synced, acknowledged and delivered in turn.
    Queued,
    /// A stop flag was set while waiting for room; it was not queued.
    Stopping,
    /// The log failed or the channel's receiver is gone: stop.
    Ended,
}

/// The driver's side of a running journal.
pub(crate) struct Intake {
    shared: Arc<Shared>,
    capacity: usize,
    committer: Option<JoinHandle<()>>,
}

impl Intake {
    /// Queues `message` for the log, waiting (not past a stop) while the log is full
    /// or `capacity` messages wait for the channel.
    pub(crate) fn receive(&self, message: Message, ack: Option<Ack>, flags: &StopFlags) -> Logged {
        let needed = FRAME_HEADER + encoded_len(&message);
        let mut state = self.shared.lock();
        loop {
            if state.failure.is_some() || state.gone {
                return Logged::Ended;
            }
            let fits = state.log_bytes + state.queued_bytes + needed <= self.shared.max_bytes;
            if fits && state.undelivered < self.capacity {
                break;
            }
            if !fits
                && state
                    .warned_full
                    .is_none_or(|at| at.elapsed() >= FULL_WARNING)
            {
                state.warned_full = Some(Instant::now());
                tracing::warn!(
                    "the write-ahead log is full ({} bytes): the subscriber waits for a \
                     checkpoint to free space, and the broker holds the messages meanwhile; \
                     give wal.max_size room for several checkpoint intervals",
                    self.shared.max_bytes
                );
            }
            if flags.stopping() {
                state.blocked = false;
                return Logged::Stopping;
            }
            state.blocked = true;
            state = self.shared.wait(state, STOP_POLL);
        }
        state.blocked = false;
        state.queued_bytes += needed;
        state.undelivered += 1;
        state.oldest.get_or_insert_with(Instant::now);
        self.push(state, Item::Record { message, ack });
        Logged::Queued
    }

    /// Queues an acknowledgement for a message that is not logged, behind the
    /// messages received before it.
    pub(crate) fn ack_only(&self, ack: Option<Ack>) {
        if let Some(ack) = ack {
            let state = self.shared.lock();
            self.push(state, Item::Ack(ack));
        }
    }

    fn push(&self, mut state: MutexGuard<'_, State>, item: Item) {
        let was_empty = state.queue.is_empty();
        state.queue.push_back(item);
        // A committer with work queued is busy, or waits out a group's interval.
        if was_empty {
            self.shared.changed.notify_all();
        }
    }

    /// The task that sends the acks, on the driver's runtime.
    pub(crate) fn ack_sender(
        &self,
        client: AsyncClient,
        connection: Arc<ConnectionState>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let shared = Arc::clone(&self.shared);
        async move {
            let mut held: VecDeque<Ack> = VecDeque::new();
            loop {
                if held.is_empty() {
                    shared.acks_ready.notified().await;
                } else {
                    // rumqttc's request channel was full.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                held.extend(lock(&shared.acks).drain(..));
                let (connected, epoch) = (connection.connected(), connection.connections());
                while let Some(ack) = held.front() {
                    // Of a lost connection: the broker sends the message again.
                    if connected && ack.epoch == epoch {
                        let mut publish = Publish::from_bytes(String::new(), ack.qos, Bytes::new());
                        publish.pkid = ack.pkid;
                        if client.try_ack(&publish).is_err() {
                            break;
                        }
                    }
                    held.pop_front();
                }
            }
        }
    }

    /// Lets the committer log and deliver what is queued (delivery gives up at a
    /// stop when the channel is full), and waits for it to end.
    pub(crate) fn close(&mut self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        if let Some(committer) = self.committer.take()
            && committer.join().is_err()
        {
            tracing::error!("the MQTT write-ahead log thread panicked");
        }
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.close();
    }
}

struct Committer {
    wal: Wal,
    options: JournalOptions,
    counters: JournalCounters,
    shared: Arc<Shared>,
    tx: Sender<Message>,
    delivered: Box<dyn Fn() + Send>,
    flags: StopFlags,
    /// False once a delivery was given up: none may follow it.
    delivering: bool,
}

impl Committer {
    fn run(mut self) {
        let mut committed = self.wal.start();
        let window = match self.options.fsync {
            Fsync::Group => self.options.commit_interval,
            Fsync::Always => Duration::ZERO,
        };
        let mut record = Vec::new();
        loop {
            let (batch, commit, closing) = self.next_batch(committed, window);
            if commit > committed {
                committed = commit;
                match self.wal.truncate(commit) {
                    Ok(_) => self.update(|state| state.log_bytes = self.wal.bytes()),
                    // The next commit tries again; meanwhile the log only grows.
                    Err(e) => tracing::warn!("{e}"),
                }
            }
            if batch.is_empty() {
                if closing {
                    return;
                }
                continue;
            }
            let messages = match self.log(batch, &mut record) {
                Ok(messages) => messages,
                Err(e) => {
                    tracing::error!("{e}; the MQTT subscriber stops");
                    self.update(|state| state.failure = Some(e.to_string()));
                    return;
                }
            };
            for message in messages {
                self.deliver(message);
            }
        }
    }

    /// Waits for records, a commit or the close, then takes what is queued.
    fn next_batch(&self, committed: u64, window: Duration) -> (Vec<Item>, u64, bool) {
        let mut state = self.shared.lock();
        loop {
            if state.commit > committed || state.closing {
                break;
            }
            if !state.queue.is_empty() {
                let now = Instant::now();
                match state.oldest.map(|t| t + window) {
                    Some(due) if due > now => state = self.shared.wait(state, due - now),
                    _ => break,
                }
                continue;
            }
            state = self.shared.wait(state, STOP_POLL);
        }
        state.oldest = None;
        let batch = state.queue.drain(..).collect();
        (batch, state.commit, state.closing)
    }

    /// Appends and syncs `batch`, queues its acks in order; the messages to deliver.
    fn log(&mut self, batch: Vec<Item>, record: &mut Vec<u8>) -> Result<Vec<Message>, WalError> {
        let always = self.options.fsync == Fsync::Always;
        let mut messages = Vec::with_capacity(batch.len());
        let mut acks = Vec::new();
        let (mut appended, mut unsynced) = (0u64, false);
        for item in batch {
            match item {
                Item::Record { message, ack } => {
                    record.clear();
                    encode(&message, record);
                    self.wal.append(record)?;
                    appended += FRAME_HEADER + record.len() as u64;
                    self.counters.appended.inc();
                    messages.push(message);
                    acks.extend(ack);
                    unsynced = true;
                    if always {
                        self.sync()?;
                        unsynced = false;
                        self.shared.push_acks(&mut acks);
                    }
                }
                Item::Ack(ack) => acks.push(ack),
            }
        }
        if unsynced {
            self.sync()?;
        }
        self.shared.push_acks(&mut acks);
        self.counters.bytes.add(appended);
        let bytes = self.wal.bytes();
        self.update(|state| {
            state.queued_bytes -= appended;
            state.log_bytes = bytes;
        });
        Ok(messages)
    }

    fn sync(&mut self) -> Result<(), WalError> {
        self.wal.sync()?;
        self.counters.syncs.inc();
        Ok(())
    }

    /// Into the channel, waiting for room but not past a stop.
    fn deliver(&mut self, mut message: Message) {
        while self.delivering {
            match self.tx.send_timeout(message, STOP_POLL) {
                Ok(()) => {
                    (self.delivered)();
                    break;
                }
                Err(SendTimeoutError::Timeout(back)) if !self.flags.stopping() => message = back,
                Err(SendTimeoutError::Timeout(_)) => {
                    self.delivering = false;
                    break;
                }
                Err(SendTimeoutError::Disconnected(_)) => {
                    self.delivering = false;
                    self.update(|state| state.gone = true);
                    break;
                }
            }
        }
        self.update(|state| state.undelivered -= 1);
    }

    /// Changes the shared state, waking a driver that waits for room.
    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.shared.lock();
        change(&mut state);
        if state.blocked || state.failure.is_some() || state.gone {
            self.shared.changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests;
