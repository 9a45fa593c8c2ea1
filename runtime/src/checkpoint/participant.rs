//! [`NodeState`]: one participant's handle on the process's checkpoints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use timely::progress::frontier::AntichainRef;

use super::{AT_STOP, Checkpoints, Key, OnStop, cluster, split_fingerprint};
use crate::operator::Time;
use crate::record::SensorId;

/// One node's part in the checkpoints, on one worker. Owned and `Send`, so a timely
/// operator can keep it and a sink can pass it to its writer thread.
#[derive(Clone)]
pub struct NodeState {
    checkpoints: Arc<Checkpoints>,
    node: Arc<str>,
    worker: usize,
    peers: usize,
    taken: Time,
    /// Cluster cuts: their spacing (`None`: announced cuts, a single process).
    every: Option<u64>,
    /// The first cluster cut this participant takes part in, once it knows it.
    first: Option<Time>,
    /// Before that: the latest time of a batch it applied.
    seen: Seen,
}

/// The latest time a participant applied before it took part in cuts. Set through
/// `&self` ([`NodeState::holds`]); atomic only so that a `NodeState` stays `Sync`.
#[derive(Debug, Default)]
struct Seen(AtomicU64);

impl Seen {
    fn get(&self) -> Time {
        self.0.load(Ordering::Relaxed)
    }

    fn raise(&self, time: Time) {
        self.0.fetch_max(time, Ordering::Relaxed);
    }
}

impl Clone for Seen {
    fn clone(&self) -> Self {
        Seen(AtomicU64::new(self.get()))
    }
}

impl std::fmt::Debug for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeState")
            .field("node", &self.node)
            .field("worker", &self.worker)
            .field("taken", &self.taken)
            .finish_non_exhaustive()
    }
}

impl NodeState {
    pub(super) fn new(
        checkpoints: &Arc<Checkpoints>,
        node: &str,
        worker: usize,
        peers: usize,
        taken: Time,
    ) -> Self {
        NodeState {
            checkpoints: Arc::clone(checkpoints),
            node: node.into(),
            worker,
            peers,
            taken,
            every: checkpoints.every,
            first: None,
            seen: Seen::default(),
        }
    }

    fn key(&self) -> Key {
        (self.node.to_string(), self.worker)
    }

    /// The parts every worker of the previous run saved for this node under the same
    /// `fingerprint` (what makes the state meaningful: window sizes, fields, …). Parts
    /// saved under another are discarded with a warning naming the node.
    pub fn restored(&self, fingerprint: &str) -> Vec<Vec<u8>> {
        let restored = self
            .checkpoints
            .restored_parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(parts) = restored.get(&*self.node) else {
            return Vec::new();
        };
        let mut kept = Vec::new();
        for part in parts {
            match split_fingerprint(part) {
                Some((saved, body)) if saved == fingerprint => kept.push(body.to_vec()),
                other => {
                    if self.worker == 0 {
                        let why = other.map_or_else(
                            || "it is damaged".to_string(),
                            |(saved, _)| {
                                format!(
                                    "it was written for `{saved}`, the node is now `{fingerprint}`"
                                )
                            },
                        );
                        tracing::warn!(node = %self.node, "the saved state is not restored: {why}");
                    }
                    return Vec::new();
                }
            }
        }
        kept
    }

    /// The time of the checkpoint restored (`None`: none; [`AT_STOP`]: a stop's).
    pub fn restored_time(&self) -> Option<Time> {
        self.checkpoints
            .restoring
            .then_some(self.checkpoints.restored.time)
    }

    /// Whether `sensor`'s state belongs to this worker: the worker the exchange by
    /// sensor sends its readings to.
    pub fn owns(&self, sensor: SensorId) -> bool {
        (sensor.route_hash() % self.peers.max(1) as u64) as usize == self.worker
    }

    /// Whether the input that has just ended ended for a stop that keeps state for
    /// the next run (SIGINT/SIGTERM, `--for`, without `--drain`): then save, do not
    /// flush. The input of a finite source ends without a stop, and everything flushes.
    pub fn keeps_on_stop(&self) -> bool {
        self.checkpoints.store.is_some()
            && self.checkpoints.on_stop == OnStop::Checkpoint
            && self.checkpoints.stop.is_triggered()
    }

    /// The next checkpoint this participant has to take, if one was announced (in a
    /// cluster: the next common cut, once it takes part in them).
    pub fn barrier(&self) -> Option<Time> {
        match self.every {
            None => self.checkpoints.next_after(self.taken),
            Some(every) => {
                let first = self.first?;
                Some(first.max(cluster::next_cut_after(self.taken, every)?))
            }
        }
    }

    /// Whether input at `time` must wait: it is at or after the next checkpoint. The
    /// caller applies the batch now if not.
    #[inline]
    pub fn holds(&self, time: Time) -> bool {
        if self.every.is_some() && self.first.is_none() {
            // Applied before this participant takes part in cuts: its first cut must
            // come after it.
            self.seen.raise(time);
            return false;
        }
        self.barrier().is_some_and(|t| time >= t)
    }

    /// The checkpoint to take now: the next one, once `frontier` has passed it (every
    /// record before it is in).
    pub fn due(&mut self, frontier: AntichainRef<'_, Time>) -> Option<Time> {
        self.due_all(&[frontier])
    }

    /// [`due`](Self::due) for a node with several inputs: once every frontier has
    /// passed it.
    pub fn due_all(&mut self, frontiers: &[AntichainRef<'_, Time>]) -> Option<Time> {
        if self.every.is_some() {
            if self.first.is_none() {
                // Time has moved off its start (0) once the lowest frontier has.
                let lowest = frontiers.iter().flat_map(|f| f.iter()).min().copied();
                if let Some(lowest) = lowest.filter(|&t| t > 0) {
                    self.cuts_after(lowest);
                }
            }
            if frontiers.iter().all(|f| f.is_empty()) {
                // The input has ended: every later cut would be "passed"; none is owed.
                return None;
            }
        }
        self.barrier()
            .filter(|t| frontiers.iter().all(|f| !f.less_than(t)))
    }

    /// [`due_all`](Self::due_all) for a participant whose part costs something to take
    /// (a copy of its state): in a cluster, when its frontiers have passed several
    /// cuts and nothing it holds comes before the last of them (`held_from`, the
    /// earliest batch it holds), its part would be the same at each of them, so only
    /// the last is due. A watermark that jumps an hour ahead then costs one part, not
    /// 360; cuts with records between them are each taken. A process does not write a
    /// cut one of its participants passed over: it is not one the cluster can restore
    /// to, as if it had not been cut.
    pub fn due_latest(
        &mut self,
        frontiers: &[AntichainRef<'_, Time>],
        held_from: Option<Time>,
    ) -> Option<Time> {
        let due = self.due_all(frontiers)?;
        let Some(every) = self.every else {
            return Some(due);
        };
        let mut cut = due;
        while let Some(next) = cluster::next_cut_after(cut, every)
            .filter(|&next| frontiers.iter().all(|f| !f.less_than(&next)))
            .filter(|&next| held_from.is_none_or(|held| held >= next))
        {
            cut = next;
        }
        // The cut before `cut` counts as taken: `barrier` is `cut` from now on.
        self.taken = self.taken.max(cut - every);
        Some(cut)
    }

    /// In a cluster: take part in the common cuts from the first one after `time` (no
    /// record at or after it has been applied yet). Called by `decode` as it first
    /// moves its watermark; other participants start in [`due`](Self::due).
    pub fn cuts_after(&mut self, time: Time) {
        if let Some(every) = self.every.filter(|_| self.first.is_none()) {
            self.first = cluster::next_cut_after(time.max(self.seen.get()), every);
        }
    }

    /// Save this participant's part of the checkpoint at `time` ([`AT_STOP`] at a
    /// stop). State that is not keyed by sensor is restored by worker 0 alone.
    pub fn take(&mut self, time: Time, fingerprint: &str, body: &[u8]) {
        self.take_with_position(time, fingerprint, body, None);
    }

    /// [`take`](Self::take), recording where `source` (a replayable source this node
    /// reads) has got to: the next run replays it from there.
    pub fn take_with_position(
        &mut self,
        time: Time,
        fingerprint: &str,
        body: &[u8],
        source: Option<&str>,
    ) {
        self.take_part(time, fingerprint, source, |out| out.write_all(body));
    }

    /// [`take`](Self::take), the body written by `body`: at a stop straight into the
    /// checkpoint's file, so a large state is never copied whole into memory.
    pub fn take_streamed(
        &mut self,
        time: Time,
        fingerprint: &str,
        body: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) {
        self.take_part(time, fingerprint, None, body);
    }

    fn take_part(
        &mut self,
        time: Time,
        fingerprint: &str,
        source: Option<&str>,
        body: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) {
        let mut header = Vec::with_capacity(4 + fingerprint.len());
        header.extend_from_slice(&(fingerprint.len() as u32).to_le_bytes());
        header.extend_from_slice(fingerprint.as_bytes());
        self.taken = self.taken.max(time);
        if time == AT_STOP {
            self.checkpoints.take_at_stop(self.key(), &header, body);
            return;
        }
        let mut part = header;
        if let Err(e) = body(&mut part) {
            // Writing into a `Vec` fails only if the state's own serializer does.
            tracing::warn!(node = %self.node, "cannot save the state: {e}");
            return;
        }
        let positions = source
            .and_then(|s| Some((s.to_string(), self.checkpoints.position(s)?)))
            .into_iter()
            .collect();
        self.checkpoints.take(self.key(), time, part, positions);
    }

    /// Announce a checkpoint at `time`, if the interval has passed since the last one.
    /// Called by the node where event time starts (`decode`) as its capability moves
    /// to `time`, before it sends anything at `time`; it then takes its own part.
    pub fn announce(&self, time: Time, now: Instant) -> bool {
        let checkpoints = &self.checkpoints;
        let Some(interval) = checkpoints.interval.filter(|_| checkpoints.store.is_some()) else {
            return false;
        };
        if checkpoints.every.is_some() {
            // Cluster cuts are common, not announced.
            return false;
        }
        let mut inner = checkpoints.lock();
        if inner
            .last_announced
            .is_some_and(|last| now.saturating_duration_since(last) < interval)
            || time <= checkpoints.announced.load(Ordering::Acquire)
        {
            return false;
        }
        if inner.last_announced.is_none() {
            // The first interval starts now, not at the first look.
            inner.last_announced = Some(now);
            return false;
        }
        inner.last_announced = Some(now);
        inner.pending.entry(time).or_default();
        checkpoints.announced.store(time, Ordering::Release);
        true
    }

    /// This participant's input has ended without a stop that keeps state: no
    /// checkpoint waits for it any more.
    pub fn finished(&self) {
        self.checkpoints.leave(&self.key());
    }
}
