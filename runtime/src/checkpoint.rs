//! Checkpoints: operator state that survives a stop, a restart and a crash.
//!
//! A checkpoint is a *cut* of the dataflow at a timely time `T`: every stateful node
//! saves its state for exactly the records before `T`, and every replayable source
//! (an `mqtt` source with a write-ahead log) the log position of the first message
//! that was not yet decoded. After a crash, the next run restores the parts and
//! replays the log from there: the outputs equal an uninterrupted run's.
//!
//! How the cut is made (the aligned-barrier idea of Chandy–Lamport and Flink, with
//! timely's frontiers as the barriers):
//! 1. `decode` is where event time starts. Every `interval` it *announces* a
//!    checkpoint at the time it moves its capability to, `T`, after it has decoded
//!    everything its source emitted so far, and saves its part with that position.
//!    What it decodes afterwards goes out at `T` or later.
//! 2. Every other participant holds back input at `T` or later ([`NodeState::holds`])
//!    until its input frontier has passed `T` ([`NodeState::due`]); then everything
//!    before `T` is in, and it saves its part ([`NodeState::take`]) before it goes on.
//!    A sink saves once what came before `T` is durable.
//! 3. When every participant has saved its part, the checkpoint is written (aside,
//!    synced, renamed into place) and the sources may drop their log before the
//!    positions.
//!
//! On SIGINT/SIGTERM each participant saves its state once its input has ended
//! ([`NodeState::keeps_on_stop`]), at [`AT_STOP`], instead of flushing it: a window
//! that spans the restart is emitted once, by the next run, with all its readings.
//!
//! In a cluster run the cuts are common to every process instead of announced, and
//! the processes agree at start on the cut they all restore: see `checkpoint/cluster.rs`.
//!
//! Without a replayable source there are no periodic checkpoints (nothing could
//! replay what came after one), and the checkpoint a run starts from is consumed: a
//! crash later does not apply it a second time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::operator::Time;
use crate::shutdown::Shutdown;
use crate::state::{Checkpoint, StateError, StateStore};

pub mod cluster;
mod held;
mod participant;
pub use held::Held;
pub use participant::NodeState;

/// The time of a checkpoint taken when the run stops: after every record.
pub const AT_STOP: Time = Time::MAX;

/// How a stop ends the run for its stateful nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStop {
    /// Keep open state in a checkpoint for the next run (the default).
    Checkpoint,
    /// Flush everything now and keep nothing (`smartgrid run --drain`).
    Drain,
}

type Key = (String, usize);
type OnCommit = Arc<dyn Fn(u64) + Send + Sync>;

/// The process's checkpoints: what the previous run left, and the cuts of this one.
pub struct Checkpoints {
    store: Option<StateStore>,
    on_stop: OnStop,
    interval: Option<Duration>,
    /// The previous run's checkpoint: its time and positions (its parts are in
    /// `restored_parts`).
    restored: Checkpoint,
    /// Whether it had any part.
    restoring: bool,
    /// Its parts by node, until every worker of the process has built its dataflow
    /// (restoring happens while operators are built); then they are dropped, so a
    /// restarted run does not carry its checkpoint's bytes for its whole life.
    restored_parts: Mutex<HashMap<String, Vec<Vec<u8>>>>,
    built: AtomicUsize,
    stop: Shutdown,
    /// The latest announced time (0: none yet), read without the lock.
    announced: AtomicU64,
    /// In a cluster run with periodic checkpoints: cuts are the multiples of this (ms
    /// of timely time), not announced (see `checkpoint/cluster.rs`).
    every: Option<u64>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    participants: BTreeSet<Key>,
    pending: BTreeMap<Time, Pending>,
    last_announced: Option<Instant>,
    committed: Option<Time>,
    /// Replayable sources: the position after the last message each emitted.
    sources: BTreeMap<String, Arc<AtomicU64>>,
    on_commit: Vec<(String, OnCommit)>,
    written: u64,
    /// The parts of the stop's checkpoint, each on disk already (`StateStore::
    /// write_stop_part`), with their bytes, or why one could not be written.
    at_stop: Vec<Key>,
    at_stop_bytes: usize,
    at_stop_failed: Option<StateError>,
    /// The kept checkpoints' times and positions, oldest first: a source's log is
    /// truncated before the oldest one's position only.
    kept: Vec<(Time, BTreeMap<String, u64>)>,
    /// How many checkpoints the store keeps.
    keep: usize,
}

#[derive(Default)]
struct Pending {
    parts: BTreeMap<Key, Vec<u8>>,
    positions: BTreeMap<String, u64>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("dir", &self.store.as_ref().map(StateStore::dir))
            .field("on_stop", &self.on_stop)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Checkpoints {
    /// Checkpoints kept in `store`: taken every `interval` (`None`: only at a stop),
    /// restoring the one the previous run left. `stop` is the run's stop flag.
    pub fn new(
        store: StateStore,
        on_stop: OnStop,
        interval: Option<Duration>,
        stop: Shutdown,
    ) -> Result<Self, StateError> {
        let loading = Instant::now();
        let restored = store.load().unwrap_or_default();
        let kept = (!restored.positions.is_empty())
            .then(|| (restored.time, restored.positions.clone()))
            .into_iter()
            .collect();
        Self::restoring(
            store, on_stop, interval, stop, restored, loading, kept, None,
        )
    }

    /// A cluster process's checkpoints: `held` is every process's list of the
    /// checkpoint times it holds (see [`cluster::exchange`]); the newest all hold is
    /// restored, and the ones after it discarded. Cuts are common to every process,
    /// every `interval` of timely time.
    pub fn agreed(
        store: StateStore,
        on_stop: OnStop,
        interval: Option<Duration>,
        stop: Shutdown,
        held: &[Vec<Time>],
    ) -> Result<Self, StateError> {
        let loading = Instant::now();
        let store = store.keeping(cluster::KEPT);
        let common = cluster::newest_common(held);
        if common.is_none() && held.iter().any(|h| !h.is_empty()) {
            tracing::warn!(
                held = ?held,
                "the processes hold no checkpoint in common: none is restored, and each \
                 process's are discarded"
            );
        }
        store.discard_after(common)?;
        let restored = common.and_then(|t| store.load_at(t)).unwrap_or_default();
        if let Some(time) = common {
            tracing::info!(
                time,
                at_stop = time == AT_STOP,
                "the processes restore the newest checkpoint they all hold"
            );
        }
        let mut kept: Vec<_> = store
            .kept()
            .into_iter()
            .map(|k| (k.time, k.positions))
            .collect();
        kept.reverse();
        let every = interval.map(|i| u64::try_from(i.as_millis()).unwrap_or(u64::MAX).max(1));
        Self::restoring(
            store, on_stop, interval, stop, restored, loading, kept, every,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn restoring(
        store: StateStore,
        on_stop: OnStop,
        interval: Option<Duration>,
        stop: Shutdown,
        mut restored: Checkpoint,
        loading: Instant,
        kept: Vec<(Time, BTreeMap<String, u64>)>,
        every: Option<u64>,
    ) -> Result<Self, StateError> {
        let keep = if every.is_some() { cluster::KEPT } else { 1 };
        if !restored.parts.is_empty() {
            let bytes: usize = restored.parts.values().flatten().map(Vec::len).sum();
            tracing::info!(
                bytes,
                took_ms = loading.elapsed().as_secs_f64() * 1e3,
                at_stop = restored.time == AT_STOP,
                "restoring the state the previous run saved"
            );
        }
        if interval.is_none() && !restored.parts.is_empty() {
            // Nothing replays what follows it: restore it once only.
            store.clear()?;
        }
        let restored_parts = std::mem::take(&mut restored.parts);
        Ok(Checkpoints {
            store: Some(store),
            on_stop,
            interval,
            restored,
            restoring: !restored_parts.is_empty(),
            restored_parts: Mutex::new(restored_parts),
            built: AtomicUsize::new(0),
            stop,
            announced: AtomicU64::new(0),
            every: every.filter(|_| interval.is_some()),
            inner: Mutex::new(Inner {
                kept,
                keep,
                ..Inner::default()
            }),
        })
    }

    /// No state directory: nothing is restored or kept (tests, benchmarks).
    pub fn disabled() -> Self {
        Checkpoints {
            store: None,
            on_stop: OnStop::Drain,
            interval: None,
            restored: Checkpoint::default(),
            restoring: false,
            restored_parts: Mutex::default(),
            built: AtomicUsize::new(0),
            stop: Shutdown::new(),
            announced: AtomicU64::new(0),
            every: None,
            inner: Mutex::default(),
        }
    }

    /// One of the process's `workers` has built its dataflow; after the last, the
    /// previous run's parts are dropped (every operator has restored from them).
    pub fn dataflow_built(&self, workers: usize) {
        if self.built.fetch_add(1, Ordering::AcqRel) + 1 == workers {
            let parts = std::mem::take(
                &mut *self
                    .restored_parts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            drop(parts);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Worker `worker`'s (of `peers`) handle for node `node`, taking part in every
    /// checkpoint from now on until it is [finished](NodeState::finished).
    pub fn node(self: &Arc<Self>, node: &str, worker: usize, peers: usize) -> NodeState {
        if self.store.is_some() {
            self.lock().participants.insert((node.to_string(), worker));
        }
        let taken = self.lock().committed.unwrap_or(0);
        NodeState::new(self, node, worker, peers, taken)
    }

    /// A replayable source's handle: where to replay from, and where it has got to.
    pub fn source(self: &Arc<Self>, node: &str) -> SourceLog {
        let position = Arc::new(AtomicU64::new(0));
        self.lock()
            .sources
            .insert(node.to_string(), Arc::clone(&position));
        SourceLog {
            checkpoints: Arc::clone(self),
            node: node.into(),
            position,
        }
    }

    /// Whether checkpoints are taken while the run goes on.
    pub fn periodic(&self) -> bool {
        self.store.is_some() && self.interval.is_some()
    }

    /// Bytes of checkpoints written so far.
    pub fn written(&self) -> u64 {
        self.lock().written
    }

    /// After every worker and sink has stopped: writes what the nodes saved at the
    /// stop as the checkpoint for the next run. After a drain or the end of the input
    /// no state is kept, only the replayable sources' positions (so a log does not
    /// replay what was flushed). Returns the bytes of state written.
    pub fn commit_at_stop(&self) -> Result<usize, StateError> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let stopping = self.on_stop == OnStop::Checkpoint && self.stop.is_triggered();
        let mut inner = self.lock();
        let parts = std::mem::take(&mut inner.at_stop);
        if let Some(e) = inner.at_stop_failed.take() {
            store.discard_stop();
            return Err(e);
        }
        // Everything the sources emitted has been through the dataflow now.
        let positions: BTreeMap<String, u64> = inner
            .sources
            .iter()
            .map(|(source, at)| (source.clone(), at.load(Ordering::Acquire)))
            .collect();
        if !stopping || parts.is_empty() {
            // Drained: no state to keep, but a log must not replay what was flushed.
            store.discard_stop();
            if positions.is_empty() {
                drop(inner);
                store.clear()?;
                return Ok(0);
            }
            store.write(AT_STOP, &positions, &BTreeMap::new())?;
            return Ok(0);
        }
        store.finish_stop(AT_STOP, &positions, parts)?;
        let bytes = std::mem::take(&mut inner.at_stop_bytes);
        inner.written += bytes as u64;
        Ok(bytes)
    }

    /// Writes `key`'s part of the stop's checkpoint to disk now (`header`, then what
    /// `body` writes), so it does not wait in memory until every node has saved.
    fn take_at_stop(
        &self,
        key: Key,
        header: &[u8],
        body: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) {
        let Some(store) = &self.store else {
            return;
        };
        // No positions: a stop's are where the sources ended (`commit_at_stop`).
        let written = store.write_stop_part(&key.0, key.1, header, body);
        let mut inner = self.lock();
        match written {
            Ok(bytes) => {
                inner.at_stop_bytes += bytes;
                inner.at_stop.push(key);
            }
            Err(e) => {
                tracing::warn!(node = %key.0, "cannot save the state for the next run: {e}");
                inner.at_stop_failed.get_or_insert(e);
            }
        }
    }

    /// Records `part` of `key` for the periodic checkpoint at `time`; writes the
    /// checkpoint when it was the last one missing.
    fn take(&self, key: Key, time: Time, part: Vec<u8>, positions: BTreeMap<String, u64>) {
        let Some(store) = &self.store else {
            return;
        };
        let mut inner = self.lock();
        let pending = inner.pending.entry(time).or_default();
        pending.parts.insert(key, part);
        for (source, at) in positions {
            // Two parts may name one source (a decode on each worker): replay from the
            // earlier position, which loses nothing.
            let kept = pending.positions.entry(source).or_insert(at);
            *kept = (*kept).min(at);
        }
        let complete = inner
            .participants
            .iter()
            .all(|k| inner.pending[&time].parts.contains_key(k));
        if complete {
            self.write(store, &mut inner, time);
        }
    }

    fn write(&self, store: &StateStore, inner: &mut Inner, time: Time) {
        let Some(pending) = inner.pending.remove(&time) else {
            return;
        };
        let started = Instant::now();
        match store.write(time, &pending.positions, &pending.parts) {
            Ok(bytes) => {
                inner.written += bytes as u64;
                inner.committed = Some(time);
                inner.pending.retain(|&t, _| t > time);
                // As the store does: a kept one at or after it is superseded.
                inner.kept.retain(|(t, _)| *t < time);
                inner.kept.push((time, pending.positions.clone()));
                let excess = inner.kept.len().saturating_sub(inner.keep.max(1));
                inner.kept.drain(..excess);
                tracing::debug!(
                    time,
                    bytes,
                    took_ms = started.elapsed().as_millis() as u64,
                    "checkpoint written"
                );
                for (source, on_commit) in &inner.on_commit {
                    let oldest = inner
                        .kept
                        .iter()
                        .filter_map(|(_, positions)| positions.get(source).copied())
                        .min();
                    if let Some(at) = oldest {
                        on_commit(at);
                    }
                }
            }
            Err(e) => tracing::warn!("cannot write the checkpoint (the previous one stays): {e}"),
        }
    }

    /// A participant that will take part no more: pending checkpoints no longer wait
    /// for it.
    fn leave(&self, key: &Key) {
        let Some(store) = &self.store else {
            return;
        };
        let mut inner = self.lock();
        inner.participants.remove(key);
        let complete: Vec<Time> = inner
            .pending
            .iter()
            .filter(|&(&t, p)| {
                t != AT_STOP && inner.participants.iter().all(|k| p.parts.contains_key(k))
            })
            .map(|(&t, _)| t)
            .collect();
        for time in complete {
            self.write(store, &mut inner, time);
        }
    }

    /// The position `source` has got to.
    fn position(&self, source: &str) -> Option<u64> {
        self.lock()
            .sources
            .get(source)
            .map(|p| p.load(Ordering::Acquire))
    }

    /// The lowest checkpoint after `taken` not yet written.
    fn next_after(&self, taken: Time) -> Option<Time> {
        if self.announced.load(Ordering::Acquire) <= taken {
            return None;
        }
        let inner = self.lock();
        inner
            .pending
            .keys()
            .copied()
            .find(|&t| t > taken && t != AT_STOP)
    }
}

/// A replayable source's handle on the checkpoints.
#[derive(Clone)]
pub struct SourceLog {
    checkpoints: Arc<Checkpoints>,
    node: Arc<str>,
    position: Arc<AtomicU64>,
}

impl SourceLog {
    /// Where the previous run's checkpoint says to replay from (`None`: no
    /// checkpoint; replay the whole log).
    pub fn replay_from(&self) -> Option<u64> {
        self.checkpoints
            .restored
            .positions
            .get(&*self.node)
            .copied()
    }

    /// The position after the last message handed to the dataflow.
    pub fn emitted(&self, position: u64) {
        self.position.store(position, Ordering::Release);
    }

    /// Call `truncate` with the position of every checkpoint written: the log before
    /// it is no longer needed.
    pub fn on_commit(&self, truncate: impl Fn(u64) + Send + Sync + 'static) {
        self.checkpoints
            .lock()
            .on_commit
            .push((self.node.to_string(), Arc::new(truncate)));
    }
}

fn split_fingerprint(part: &[u8]) -> Option<(&str, &[u8])> {
    let len = u32::from_le_bytes(part.get(..4)?.try_into().ok()?) as usize;
    let fingerprint = std::str::from_utf8(part.get(4..4 + len)?).ok()?;
    Some((fingerprint, &part[4 + len..]))
}

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod tests;
