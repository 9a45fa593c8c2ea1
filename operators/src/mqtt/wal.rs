//! The `mqtt` source's write-ahead log as the node sees it: planned from `wal:`,
//! opened at start against the checkpoint the run restored, replayed into the dataflow
//! before any live message, and truncated at every checkpoint written after.
//!
//! Positions: the replay hands over records with their positions; live messages come
//! out of the subscriber's channel in log order, one per record, starting at the log's
//! end as it was before the subscriber started, so the source counts them (see
//! `crate::io::mqtt::journal`). After each poll the source tells the checkpoints where
//! it got to ([`SourceLog::emitted`]); `decode` puts that position in its part.

use std::sync::Mutex;
use std::time::Duration as StdDuration;

use smartgrid_runtime::checkpoint::SourceLog;
use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::{Location, Message, PlanContext, RenderContext, StartContext, StartError};

use super::config::{DEFAULT_WAL_SIZE, MqttConfig, WalFsync};
use crate::io::mqtt::{Fsync, Journal, JournalCounters, JournalHandle, JournalOptions, Replayed};

/// `wal:`, planned.
#[derive(Clone)]
pub(super) struct PlannedWal {
    pub options: JournalOptions,
    /// Where the directory is named (`wal.dir`, else `wal`).
    pub at: Location,
}

/// Plans `wal:` (`Some(None)`: no log); problems at their keys.
pub(super) fn plan(
    config: &MqttConfig,
    max_message_size: usize,
    ctx: &mut PlanContext<'_>,
) -> Option<Option<PlannedWal>> {
    let Some(wal) = &config.wal else {
        return Some(None);
    };
    let mut ok = true;
    let max_bytes = wal.max_size.map_or(DEFAULT_WAL_SIZE, |s| s.0);
    let least = 2 * max_message_size as u64;
    if max_bytes < least {
        let message = format!(
            "a log of {max_bytes} bytes cannot hold two messages of max_message_size ({max_message_size} bytes)"
        );
        let hint = format!(
            "make wal.max_size at least {}, or lower max_message_size",
            smartgrid_runtime::spec::ByteSize(least)
        );
        super::node::nested_problem(ctx, "wal", "max_size", message, &hint);
        ok = false;
    }
    let commit_interval = wal.commit_interval.map_or(StdDuration::ZERO, |d| d.0);
    if wal.fsync == WalFsync::Always && !commit_interval.is_zero() {
        let message = "commit_interval groups messages, and fsync: always syncs each alone";
        let hint = "remove commit_interval, or use fsync: group";
        super::node::nested_problem(ctx, "wal", "commit_interval", message, hint);
        ok = false;
    }
    let dir = wal
        .dir
        .clone()
        .unwrap_or_else(|| format!("data/{}.wal", ctx.node.name).into());
    let at = if wal.dir.is_some() {
        super::node::nested_at(ctx, "wal", "dir")
    } else {
        ctx.node.key_at("wal")
    };
    let options = JournalOptions {
        dir: ctx.resolve_data(&dir),
        max_bytes,
        fsync: match wal.fsync {
            WalFsync::Always => Fsync::Always,
            WalFsync::Group => Fsync::Group,
        },
        commit_interval,
    };
    ok.then_some(Some(PlannedWal { options, at }))
}

/// A running source's log, in the process that subscribes.
pub(super) struct RunningWal {
    log: SourceLog,
    handle: JournalHandle,
    /// Taken by worker 0 when it renders.
    replay: Mutex<Option<Replayed>>,
    /// Whether checkpoints are written while the run goes on; if not, nothing would
    /// ever truncate the log, and the source does it as it hands messages over.
    periodic: bool,
}

impl RunningWal {
    /// Opens the log, numbers it after the restored checkpoint's position, and makes
    /// the replay: from that position, or (no checkpoint) from the first record kept.
    pub fn open(
        planned: &PlannedWal,
        ctx: &StartContext<'_>,
    ) -> Result<(Journal, RunningWal), StartError> {
        let counters = JournalCounters {
            appended: ctx.counter("wal_appended"),
            bytes: ctx.counter("wal_bytes"),
            syncs: ctx.counter("wal_syncs"),
        };
        let failed = |e: crate::wal::WalError| StartError::other(e);
        let mut journal = Journal::open(planned.options.clone(), counters).map_err(failed)?;
        let log = ctx.checkpoints.source(ctx.node);
        let from = match log.replay_from() {
            Some(position) if position > journal.end() => {
                tracing::warn!(
                    node = ctx.node,
                    "the checkpoint replays from position {position}, but the write-ahead \
                     log in {} ends at {}: was it emptied? New messages are numbered from \
                     the checkpoint's position",
                    planned.options.dir.display(),
                    journal.end()
                );
                journal.advance_to(position).map_err(failed)?;
                position
            }
            Some(position) => position,
            None => journal.start(),
        };
        if from < journal.start() {
            tracing::warn!(
                node = ctx.node,
                "the write-ahead log no longer holds records {from}..{}: they are not replayed",
                journal.start()
            );
        }
        let replay = journal.replay(from).map_err(failed)?;
        tracing::info!(
            node = ctx.node,
            records = replay.remaining(),
            from = from.max(journal.start()),
            checkpoint = log.replay_from().is_some(),
            dir = %planned.options.dir.display(),
            "replaying the write-ahead log"
        );
        let handle = journal.handle();
        let periodic = ctx.checkpoints.periodic();
        if periodic {
            let commits = handle.clone();
            log.on_commit(move |position| commits.commit(position));
        } else {
            tracing::warn!(
                node = ctx.node,
                "checkpoints are off: the write-ahead log keeps a message only until it \
                 is handed to the pipeline"
            );
        }
        let running = RunningWal {
            log,
            handle,
            replay: Mutex::new(Some(replay)),
            periodic,
        };
        Ok((journal, running))
    }

    /// Worker 0's bookkeeping of positions (call once).
    pub fn positions(&self, ctx: &RenderContext<'_>) -> Positions {
        let replay = self
            .replay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let position = replay.as_ref().map_or(0, Replayed::end);
        Positions {
            log: self.log.clone(),
            handle: self.handle.clone(),
            periodic: self.periodic,
            live: position,
            replay,
            replayed: ctx.counter("wal_replayed"),
            lost: ctx.counter("wal_lost"),
            node: ctx.node.to_string(),
        }
    }

    /// Why the log stopped the subscriber, if it did.
    pub fn failure(&self) -> Option<String> {
        self.handle.failure()
    }
}

/// Where worker 0's source has got to in the log.
pub(super) struct Positions {
    log: SourceLog,
    handle: JournalHandle,
    periodic: bool,
    replay: Option<Replayed>,
    /// The position of the next live message.
    live: u64,
    replayed: Counter,
    lost: Counter,
    node: String,
}

impl Positions {
    /// While the replay lasts: up to `max` replayed messages into `out`, and true.
    pub fn replay(&mut self, out: &mut Vec<Message>, max: usize) -> bool {
        let Some(mut replay) = self.replay.take() else {
            return false;
        };
        let mut after = None;
        while out.len() < max {
            match replay.next() {
                Some(Ok((position, message))) => {
                    out.push(message);
                    after = Some(position + 1);
                }
                Some(Err(e)) => tracing::error!(node = %self.node, "{e}; the replay ends here"),
                None => break,
            }
        }
        self.replayed.add(out.len() as u64);
        if let Some(after) = after {
            self.emitted(after);
        }
        if replay.remaining() > 0 {
            self.replay = Some(replay);
            return true;
        }
        self.lost.add(replay.lost());
        tracing::info!(
            node = %self.node,
            replayed = self.replayed.get(),
            lost = replay.lost(),
            "write-ahead log replayed"
        );
        // Past whatever could not be read back: the live messages follow.
        self.emitted(self.live);
        true
    }

    /// `taken` live messages were handed to the dataflow.
    pub fn live(&mut self, taken: usize) {
        if taken > 0 {
            self.live += taken as u64;
            self.emitted(self.live);
        }
    }

    fn emitted(&self, position: u64) {
        self.log.emitted(position);
        if !self.periodic {
            self.handle.commit(position);
        }
    }
}

#[cfg(test)]
mod tests {
    use smartgrid_runtime::plan::plan;
    use smartgrid_runtime::spec::{Env, parse_str};

    /// Plans an `mqtt` node `broker` with `settings` read by a decoder; the errors as
    /// `smartgrid validate` prints them.
    fn planned(settings: &str, dir: &std::path::Path) -> Result<bool, String> {
        let text = format!(
            "nodes:\n  broker:\n    type: mqtt\n    url: mqtt://127.0.0.1:1883\n{settings}  d: {{ type: decode, input: broker, format: clemap }}\n  out: {{ type: stdout, input: d }}\n"
        );
        let spec = parse_str(
            &text,
            "p.yaml",
            dir.to_path_buf(),
            Env::Fixed(Default::default()),
        )
        .map_err(|e| format!("{e:?}"))?;
        plan(&spec, &crate::builtin_registry())
            .map(|p| p.replayable())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_log_makes_the_source_replayable() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(planned("", dir.path()), Ok(false));
        assert_eq!(planned("    wal:\n", dir.path()), Ok(true));
        let yaml = "    wal: { dir: wal, max_size: 64MiB, fsync: group, commit_interval: 5ms }\n";
        assert_eq!(planned(yaml, dir.path()), Ok(true));
        let yaml = "    wal: { fsync: always }\n";
        assert_eq!(planned(yaml, dir.path()), Ok(true));
    }

    #[test]
    fn every_problem_is_located_at_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = "    max_message_size: 8MiB\n    wal: { max_size: 10MiB, fsync: always, commit_interval: 5ms }\n";
        let errors = planned(yaml, dir.path()).expect_err("refused");
        for expected in [
            "p.yaml:6:12: node `broker`: a log of 10485760 bytes cannot hold two messages",
            "hint: make wal.max_size at least 16MiB",
            "p.yaml:6:44: node `broker`: commit_interval groups messages",
        ] {
            assert!(errors.contains(expected), "{expected}\nin\n{errors}");
        }
        let yaml = "    wal: { max_size: 1KiB, commit_interval: 2s, sync: true }\n";
        let errors = planned(yaml, dir.path()).expect_err("refused");
        for expected in ["`wal.max_size`", "`wal.commit_interval`", "sync"] {
            assert!(errors.contains(expected), "{expected}\nin\n{errors}");
        }
    }

    #[test]
    fn two_sources_cannot_share_a_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "nodes:\n  a: { type: mqtt, url: mqtt://127.0.0.1:1883, client_id: a, wal: { dir: w } }\n  b: { type: mqtt, url: mqtt://127.0.0.1:1883, client_id: b, wal: { dir: w } }\n  d: { type: decode, inputs: [a, b], format: clemap }\n  out: { type: stdout, input: d }\n";
        let spec = parse_str(
            text,
            "p.yaml",
            dir.path().to_path_buf(),
            Env::Fixed(Default::default()),
        )
        .expect("parses");
        let errors = plan(&spec, &crate::builtin_registry())
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(errors.contains("directory"), "{errors}");
    }
}
