//! A sink's part in the checkpoints (see `smartgrid_runtime::checkpoint`).
//!
//! A sink saves its part once what came before the checkpoint is *durable*, which only
//! its writer thread knows. So worker 0's operator hands the writer a [`Mark`] in order
//! with the chunks, after every record before the checkpoint's time and before any
//! record after it; the writer makes what it has received durable (synced to disk,
//! accepted by the server, or in a spool or outbox) and [takes](Mark::take) the part.
//!
//! The operator and the writer share one [`NodeState`]: the barrier the operator holds
//! input at moves on only when the writer has taken the part, so the operator holds
//! everything that arrives meanwhile (for as long as a flush and an `fsync` take, or
//! a batch's first attempts). Whatever the writer does, each mark is taken once: a
//! mark dropped untaken (the writer could not make the records durable, or it died)
//! saves a part no run restores, and the next run warns about it.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use smartgrid_runtime::StartContext;
use smartgrid_runtime::checkpoint::{AT_STOP, NodeState};
use smartgrid_runtime::operator::Time;
use smartgrid_runtime::timely::scheduling::SyncActivator;

/// The fingerprint of a part saved for a mark that was not made durable: it matches
/// no sink, so the next run discards the part with a warning.
const NOT_DURABLE: &str = "(not durable: the sink could not save its output)";

/// Worker 0's handle on a sink's checkpoints, shared by its operator and its writer.
#[derive(Clone, Debug)]
pub struct SinkCheckpoint {
    state: Arc<Mutex<NodeState>>,
}

impl SinkCheckpoint {
    /// The sink's part in every checkpoint from now on. Called in `Node::start` of the
    /// process that writes (the first, or each one for a sink that writes in every
    /// process), so that a file can be put back to its saved length before the writer
    /// writes. The part is the process's first worker's.
    pub fn register(ctx: &StartContext<'_>) -> Self {
        let peers = ctx.workers * ctx.process_count.max(1);
        let worker = ctx.process_index * ctx.workers;
        SinkCheckpoint {
            state: Arc::new(Mutex::new(ctx.checkpoints.node(ctx.node, worker, peers))),
        }
    }

    /// Wraps a handle made elsewhere (tests build one from their own `Checkpoints`).
    pub fn new(state: NodeState) -> Self {
        SinkCheckpoint {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The part the previous run's writer saved under `fingerprint`, if any.
    pub fn restored(&self, fingerprint: &str) -> Option<Vec<u8>> {
        self.lock().restored(fingerprint).into_iter().next()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A mark for the checkpoint at `time`; `wake` runs the operator again once it is
    /// taken.
    pub(crate) fn mark(&self, time: Time, wake: Option<SyncActivator>) -> Mark {
        Mark {
            time,
            checkpoint: Some(self.clone()),
            wake,
        }
    }

    /// The input ended without a stop that keeps state: no checkpoint waits for the
    /// sink any more.
    pub(crate) fn finished(&self) {
        self.lock().finished();
    }

    /// [`finished`](Self::finished) once the writer has read what precedes it (or the
    /// queue is dropped unread: a dead writer must not hold up the checkpoints).
    pub(crate) fn leave(self) -> Leave {
        Leave(self)
    }
}

/// The sink's last item in the queue when it leaves the checkpoints.
#[derive(Debug)]
pub(crate) struct Leave(SinkCheckpoint);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.finished();
    }
}

/// A checkpoint barrier on its way to the writer thread: every record before it has
/// been handed over, none after it. Take it once those records are durable.
#[derive(Debug)]
pub struct Mark {
    time: Time,
    /// `None` once taken.
    checkpoint: Option<SinkCheckpoint>,
    wake: Option<SyncActivator>,
}

impl Mark {
    /// The checkpoint's time ([`AT_STOP`] for the one taken when the run stops).
    pub fn time(&self) -> Time {
        self.time
    }

    /// Whether this is the checkpoint of a stop (the input has ended).
    pub fn at_stop(&self) -> bool {
        self.time == AT_STOP
    }

    /// Save the sink's part: every record before the mark is durable, and `body` is
    /// what the next run needs to pick up from there (empty if nothing).
    pub fn take(mut self, fingerprint: &str, body: &[u8]) {
        self.save(fingerprint, body);
    }

    fn save(&mut self, fingerprint: &str, body: &[u8]) {
        let Some(checkpoint) = self.checkpoint.take() else {
            return;
        };
        checkpoint.lock().take(self.time, fingerprint, body);
        if let Some(wake) = &self.wake {
            // An error only means the worker has stopped: nobody waits any more.
            let _ = wake.activate();
        }
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        if self.checkpoint.is_some() {
            // Not taking it would hold the operator (and its input) forever; a part
            // nobody restores keeps the run going, at least once after a crash.
            tracing::warn!(
                time = self.time,
                "a sink could not make its output durable for a checkpoint; after a crash \
                 its records since the previous checkpoint may be written again"
            );
            self.save(NOT_DURABLE, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use smartgrid_runtime::checkpoint::{Checkpoints, OnStop};
    use smartgrid_runtime::shutdown::Shutdown;
    use smartgrid_runtime::state::StateStore;

    use super::*;

    /// Checkpoints in `dir` taken at a stop, as `smartgrid run` makes them on SIGTERM.
    fn stopping(dir: &std::path::Path) -> Arc<Checkpoints> {
        let store = StateStore::open(dir, "p", 0, 1).expect("open");
        let stop = Shutdown::new();
        stop.trigger();
        Arc::new(Checkpoints::new(store, OnStop::Checkpoint, None, stop).expect("checkpoints"))
    }

    fn restored(dir: &std::path::Path) -> SinkCheckpoint {
        let checkpoints = stopping(dir);
        SinkCheckpoint::new(checkpoints.node("out", 0, 1))
    }

    #[test]
    fn a_taken_mark_is_restored_by_the_next_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let checkpoints = stopping(dir.path());
            let sink = SinkCheckpoint::new(checkpoints.node("out", 0, 1));
            sink.mark(AT_STOP, None).take("fp", b"42");
            assert!(checkpoints.commit_at_stop().expect("commit") > 0);
        }
        let sink = restored(dir.path());
        assert_eq!(sink.restored("fp"), Some(b"42".to_vec()));
        assert_eq!(sink.restored("another sink"), None);
    }

    #[test]
    fn a_mark_dropped_untaken_saves_a_part_no_run_restores() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let checkpoints = stopping(dir.path());
            let sink = SinkCheckpoint::new(checkpoints.node("out", 0, 1));
            drop(sink.mark(AT_STOP, None));
            assert!(
                checkpoints.commit_at_stop().expect("commit") > 0,
                "the checkpoint is written all the same"
            );
        }
        assert_eq!(restored(dir.path()).restored("fp"), None);
    }
}
