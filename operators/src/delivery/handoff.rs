//! The hand-off from worker 0's sink operator to the sink's writer thread: a bounded
//! queue the operator never blocks on.
//!
//! ```text
//!  operator ──push──▶ pending ──try_send──▶ bounded queue ──▶ Inbox (writer thread)
//!                        │ full: keep it, raise the Valve (sources pause), retry soon
//!                        └ end of input: what is left goes to `leftovers`, read after the queue
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use smartgrid_runtime::pressure::{Pressure, Valve};

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

type Leftovers<C> = Arc<Mutex<VecDeque<C>>>;

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
            leftovers: Arc::clone(&leftovers),
        },
        Inbox { rx, leftovers },
    )
}

/// The operator's end. Dropping it (at the end of input) hands what is pending over
/// without waiting, after everything queued.
pub struct Handoff<C> {
    tx: Option<Sender<C>>,
    pending: VecDeque<C>,
    valve: Valve,
    leftovers: Leftovers<C>,
}

impl<C: Chunk> Handoff<C> {
    /// Queue `chunk` behind what is pending (call [`flush`](Self::flush) next).
    pub fn push(&mut self, chunk: C) {
        if chunk.records() > 0 {
            self.pending.push_back(chunk);
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
        self.valve.lower();
        true
    }

    /// Records waiting in the operator (not yet in the queue).
    pub fn pending_records(&self) -> usize {
        self.pending.iter().map(Chunk::records).sum()
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
    /// Nothing within the timeout.
    Timeout,
    /// The input ended and every chunk was received.
    Closed,
}

/// The writer thread's end.
pub struct Inbox<C> {
    rx: Receiver<C>,
    leftovers: Leftovers<C>,
}

impl<C> Inbox<C> {
    /// The next chunk, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Received<C> {
        match self.rx.recv_timeout(timeout) {
            Ok(chunk) => Received::Chunk(chunk),
            Err(RecvTimeoutError::Timeout) => Received::Timeout,
            Err(RecvTimeoutError::Disconnected) => self.leftover(),
        }
    }

    /// The next chunk if one is waiting.
    pub fn try_recv(&self) -> Received<C> {
        match self.rx.try_recv() {
            Ok(chunk) => Received::Chunk(chunk),
            Err(crossbeam_channel::TryRecvError::Empty) => Received::Timeout,
            Err(crossbeam_channel::TryRecvError::Disconnected) => self.leftover(),
        }
    }

    fn leftover(&self) -> Received<C> {
        let next = self
            .leftovers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        next.map_or(Received::Closed, Received::Chunk)
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
                Received::Timeout => panic!("closed inboxes do not time out"),
                Received::Closed => break,
            }
        }
        assert_eq!(seen, [1, 2, 3], "in order, nothing lost");
    }
}
