//! The hand-off from worker 0's sink operator to the sink's writer thread: a bounded
//! queue the operator never blocks on.
//!
//! ```text
//!  operator ──push──▶ pending ──try_send──▶ bounded queue ──▶ Inbox (writer thread)
//!                        │ full: keep it, raise the Valve (sources pause), retry soon
//!                        └ end of input: what is left goes to `leftovers`, read after the queue
//! ```
//!
//! Checkpoint [`Mark`]s travel in the same queue, so the writer sees each one after
//! every chunk handed over before it and before every chunk after it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use smartgrid_runtime::pressure::{Pressure, Valve};

use super::checkpoint::{Leave, Mark, SinkCheckpoint};

/// What the operator hands over at once: the records one activation encoded.
pub trait Chunk: Default + Send + 'static {
    /// How many records it holds.
    fn records(&self) -> usize;
    /// Whether it is big enough to hand over before the activation ends.
    fn is_full(&self) -> bool;
}

/// Encoded text lines (line protocol, JSON lines, CSV, text) and how many records.
#[derive(Debug, Default)]
pub struct Lines {
    /// The lines, each ending in `\n`.
    pub text: String,
    /// Records in `text`.
    pub records: usize,
}

/// Hand a chunk of lines over once it holds this many bytes.
const LINES_CHUNK_BYTES: usize = 256 * 1024;

impl Chunk for Lines {
    fn records(&self) -> usize {
        self.records
    }
    fn is_full(&self) -> bool {
        self.text.len() >= LINES_CHUNK_BYTES
    }
}

/// One encoded record each (JSON objects for IoT Hub).
impl Chunk for Vec<String> {
    fn records(&self) -> usize {
        self.len()
    }
    fn is_full(&self) -> bool {
        self.len() >= 4096
    }
}

/// What goes through the queue, in order.
enum Item<C> {
    Chunk(C),
    Mark(Mark),
    /// The input ended without a stop that keeps state: the sink stops taking part in
    /// checkpoints once the writer has read everything before (when it is dropped).
    Leave(Leave),
}

impl<C: Chunk> Item<C> {
    fn records(&self) -> usize {
        match self {
            Item::Chunk(c) => c.records(),
            Item::Mark(_) | Item::Leave(_) => 0,
        }
    }
}

type Leftovers<C> = Arc<Mutex<VecDeque<Item<C>>>>;

/// A hand-off for chunks `C`: `queue` chunks fit before the operator keeps them itself
/// and raises `pressure`.
pub fn handoff<C: Chunk>(queue: usize, pressure: &Pressure) -> (Handoff<C>, Inbox<C>) {
    let (tx, rx) = crossbeam_channel::bounded(queue.max(1));
    let leftovers: Leftovers<C> = Arc::default();
    (
        Handoff {
            tx: Some(tx),
            pending: VecDeque::new(),
            valve: pressure.valve(),
            holding: false,
            leftovers: Arc::clone(&leftovers),
        },
        Inbox { rx, leftovers },
    )
}

/// The operator's end. Dropping it (at the end of input) hands what is pending over
/// without waiting, after everything queued.
pub struct Handoff<C> {
    tx: Option<Sender<Item<C>>>,
    pending: VecDeque<Item<C>>,
    valve: Valve,
    /// The operator holds input back (see [`hold_back`](Handoff::hold_back)).
    holding: bool,
    leftovers: Leftovers<C>,
}

impl<C: Chunk> Handoff<C> {
    /// Queue `chunk` behind what is pending (call [`flush`](Self::flush) next).
    pub fn push(&mut self, chunk: C) {
        if chunk.records() > 0 {
            self.pending.push_back(Item::Chunk(chunk));
        }
    }

    /// Queue a checkpoint mark behind what is pending.
    pub fn push_mark(&mut self, mark: Mark) {
        self.pending.push_back(Item::Mark(mark));
    }

    /// Queue the end of `checkpoint`'s part in checkpoints behind what is pending.
    pub(crate) fn push_leave(&mut self, checkpoint: SinkCheckpoint) {
        self.pending.push_back(Item::Leave(checkpoint.leave()));
    }

    /// Keep the pressure raised while the operator holds back more input than it
    /// should keep in memory (waiting at a checkpoint barrier for the writer), though
    /// nothing is pending: the sources pause as they would for a full queue.
    pub fn hold_back(&mut self, holding: bool) {
        self.holding = holding;
        if holding {
            self.valve.raise();
        } else if self.pending.is_empty() {
            self.valve.lower();
        }
    }

    /// Hand over what is pending as far as the queue has room, never blocking. True
    /// when nothing is left pending (the pressure is lowered then); false when the queue
    /// is full (the pressure is raised: call again soon).
    pub fn flush(&mut self) -> bool {
        while let Some(chunk) = self.pending.pop_front() {
            let Some(tx) = &self.tx else {
                break;
            };
            match tx.try_send(chunk) {
                Ok(()) => {}
                Err(TrySendError::Full(chunk)) => {
                    self.pending.push_front(chunk);
                    self.valve.raise();
                    return false;
                }
                Err(TrySendError::Disconnected(_)) => {
                    // Only a panicked writer gets here; its finish reports it.
                    tracing::error!("a sink's writer thread has stopped; its records are lost");
                    self.tx = None;
                }
            }
        }
        self.pending.clear();
        if !self.holding {
            self.valve.lower();
        }
        true
    }

    /// Records waiting in the operator (not yet in the queue).
    pub fn pending_records(&self) -> usize {
        self.pending.iter().map(Item::records).sum()
    }

    /// Whether this sink has raised the pressure.
    pub fn is_pressing(&self) -> bool {
        self.valve.is_raised()
    }
}

impl<C> Drop for Handoff<C> {
    fn drop(&mut self) {
        // Leftovers first, then the sender: the writer reads them once it sees the queue
        // closed, so the order is kept and the operator never waits.
        self.leftovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(self.pending.drain(..));
        self.tx = None;
    }
}

/// What [`Inbox::recv_timeout`] found.
#[derive(Debug)]
pub enum Received<C> {
    /// A chunk, in the order the operator handed them over.
    Chunk(C),
    /// A checkpoint mark: every chunk before it was received, none after it. Take it
    /// once they are durable.
    Mark(Mark),
    /// Nothing within the timeout.
    Timeout,
    /// The input ended and every chunk was received.
    Closed,
}

/// The writer thread's end.
pub struct Inbox<C> {
    rx: Receiver<Item<C>>,
    leftovers: Leftovers<C>,
}

impl<C> Inbox<C> {
    /// The next chunk or mark, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Received<C> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let next = match self.rx.recv_deadline(deadline) {
                Ok(item) => Some(item),
                Err(RecvTimeoutError::Timeout) => return Received::Timeout,
                Err(RecvTimeoutError::Disconnected) => self.leftover(),
            };
            if let Some(received) = Self::received(next) {
                return received;
            }
        }
    }

    /// The next chunk or mark if one is waiting.
    pub fn try_recv(&self) -> Received<C> {
        loop {
            let next = match self.rx.try_recv() {
                Ok(item) => Some(item),
                Err(crossbeam_channel::TryRecvError::Empty) => return Received::Timeout,
                Err(crossbeam_channel::TryRecvError::Disconnected) => self.leftover(),
            };
            if let Some(received) = Self::received(next) {
                return received;
            }
        }
    }

    /// What the writer sees of the next item (no item: the queue is closed and read),
    /// or `None` for a leave, which ends the sink's part in checkpoints as it is
    /// dropped here.
    fn received(item: Option<Item<C>>) -> Option<Received<C>> {
        match item {
            None => Some(Received::Closed),
            Some(Item::Chunk(c)) => Some(Received::Chunk(c)),
            Some(Item::Mark(m)) => Some(Received::Mark(m)),
            Some(Item::Leave(leave)) => {
                drop(leave);
                None
            }
        }
    }

    fn leftover(&self) -> Option<Item<C>> {
        self.leftovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> Lines {
        Lines {
            text: "x\n".repeat(n),
            records: n,
        }
    }

    fn received(inbox: &Inbox<Lines>) -> Vec<usize> {
        let mut seen = Vec::new();
        while let Received::Chunk(c) = inbox.try_recv() {
            seen.push(c.records);
        }
        seen
    }

    #[test]
    fn a_full_queue_keeps_chunks_pending_and_raises_the_pressure_until_drained() {
        let pressure = Pressure::new();
        let (mut handoff, inbox) = handoff::<Lines>(2, &pressure);
        for n in 1..=4 {
            handoff.push(lines(n));
        }
        assert!(!handoff.flush(), "two chunks do not fit");
        assert_eq!(handoff.pending_records(), 3 + 4);
        assert!(pressure.is_raised() && handoff.is_pressing());
        assert!(
            !handoff.flush(),
            "still full: nothing moved, nothing blocked"
        );
        assert_eq!(received(&inbox), [1, 2]);
        assert!(handoff.flush(), "room again");
        assert!(!pressure.is_raised(), "lowered once drained");
        assert_eq!(handoff.pending_records(), 0);
        assert_eq!(received(&inbox), [3, 4]);
    }

    #[test]
    fn the_end_of_input_hands_over_what_is_pending_after_the_queue() {
        let pressure = Pressure::new();
        let (mut handoff, inbox) = handoff::<Lines>(1, &pressure);
        for n in 1..=3 {
            handoff.push(lines(n));
        }
        handoff.push(Lines::default()); // empty chunks are not handed over
        assert!(!handoff.flush());
        assert!(pressure.is_raised());
        drop(handoff);
        assert!(!pressure.is_raised(), "a closed sink no longer presses");
        let mut seen = Vec::new();
        loop {
            match inbox.recv_timeout(Duration::from_millis(10)) {
                Received::Chunk(c) => seen.push(c.records),
                Received::Mark(_) | Received::Timeout => panic!("no mark, and no timeout"),
                Received::Closed => break,
            }
        }
        assert_eq!(seen, [1, 2, 3], "in order, nothing lost");
    }

    #[test]
    fn marks_keep_their_place_among_the_chunks() {
        use smartgrid_runtime::checkpoint::Checkpoints;
        let checkpoints = std::sync::Arc::new(Checkpoints::disabled());
        let sink = SinkCheckpoint::new(checkpoints.node("out", 0, 1));
        let pressure = Pressure::new();
        let (mut handoff, inbox) = handoff::<Lines>(2, &pressure);
        handoff.push(lines(1));
        handoff.push_mark(sink.mark(10, None));
        handoff.push(lines(2));
        handoff.push_mark(sink.mark(20, None));
        handoff.push(lines(3));
        handoff.push_leave(sink.clone());
        assert!(!handoff.flush(), "a mark takes a place in the queue");
        assert_eq!(handoff.pending_records(), 2 + 3, "marks hold no records");
        drop(handoff);
        let mut seen = Vec::new();
        loop {
            match inbox.recv_timeout(Duration::from_millis(10)) {
                Received::Chunk(c) => seen.push(format!("{}", c.records)),
                Received::Mark(m) => {
                    seen.push(format!("T{}", m.time()));
                    m.take("fp", &[]);
                }
                Received::Timeout => panic!("closed inboxes do not time out"),
                Received::Closed => break,
            }
        }
        assert_eq!(seen, ["1", "T10", "2", "T20", "3"]);
    }

    #[test]
    fn holding_back_input_keeps_the_pressure_raised() {
        let pressure = Pressure::new();
        let (mut handoff, _inbox) = handoff::<Lines>(4, &pressure);
        handoff.hold_back(true);
        handoff.push(lines(1));
        assert!(handoff.flush());
        assert!(pressure.is_raised(), "still holding back");
        handoff.hold_back(false);
        assert!(!pressure.is_raised());
    }
}
