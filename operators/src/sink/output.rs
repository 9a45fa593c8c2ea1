//! Where a `file` or `stdout` sink's lines go, its writer thread, and what a `file`
//! sink keeps in a checkpoint.
//!
//! A file sink's part of a checkpoint is the file's length once everything before the
//! checkpoint is written and synced. After a crash the next run restores the state of
//! that checkpoint and replays what followed it, so it writes those lines again: the
//! file is first cut back to the saved length, and the outputs equal an uninterrupted
//! run's. stdout cannot be cut back and takes no part: after a crash, what was printed
//! since the last checkpoint is printed again (at least once).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use smartgrid_runtime::metrics::Counter;

use crate::delivery::{Inbox, Lines, Mark, Received, ThrottledLog};
use crate::formats::Format;

/// The output of a `file` or `stdout` sink.
pub(super) enum Output {
    File {
        path: PathBuf,
        file: BufWriter<File>,
    },
    Stdout(std::io::Stdout),
}

impl Output {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::File { file, .. } => file.write_all(bytes),
            Output::Stdout(out) => out.write_all(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File { file, .. } => file.flush(),
            Output::Stdout(out) => out.flush(),
        }
    }

    /// Flush, and for a file sync its data: the length the file durably has.
    fn sync(&mut self) -> std::io::Result<u64> {
        self.flush()?;
        match self {
            Output::File { file, .. } => {
                let file = file.get_ref();
                file.sync_data()?;
                Ok(file.metadata()?.len())
            }
            Output::Stdout(_) => Ok(0),
        }
    }

    fn fingerprint(&self, format: Format) -> String {
        match self {
            Output::File { path, .. } => fingerprint(path, format),
            Output::Stdout(_) => format!("stdout v1 {format:?}"),
        }
    }
}

/// What a file sink's saved length means: which file, in which format. Another file
/// (the path changed) is not cut to it.
pub fn fingerprint(path: &Path, format: Format) -> String {
    format!("file v1 {format:?} {}", path.display())
}

/// What [`restore_length`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Restored {
    /// No checkpoint, or none for this file.
    Nothing,
    /// The file already had the saved length.
    Same,
    /// The file was cut from `from` to `to` bytes.
    Cut {
        /// Its length before.
        from: u64,
        /// The saved length.
        to: u64,
    },
    /// The file is shorter than the saved length (truncated, rotated or deleted since):
    /// left as it is.
    Shorter {
        /// Its length.
        len: u64,
        /// The saved length.
        saved: u64,
    },
}

/// At start, before anything is written: cut the file at `path` back to the length
/// saved in the checkpoint restored (`part`), so that the lines this run writes again
/// (the replay of what followed the checkpoint) are not doubled.
pub fn restore_length(path: &Path, part: Option<&[u8]>) -> std::io::Result<Restored> {
    let Some(saved) = part.and_then(|p| Some(u64::from_le_bytes(p.get(..8)?.try_into().ok()?)))
    else {
        return Ok(Restored::Nothing);
    };
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    if len < saved {
        return Ok(Restored::Shorter { len, saved });
    }
    if len == saved {
        return Ok(Restored::Same);
    }
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(saved)?;
    file.sync_all()?;
    Ok(Restored::Cut {
        from: len,
        to: saved,
    })
}

/// Log what [`restore_length`] did to `path` for node `node`.
pub(super) fn log_restored(node: &str, path: &Path, restored: &Restored) {
    match restored {
        Restored::Nothing | Restored::Same => {}
        Restored::Cut { from, to } => tracing::info!(
            node = %node,
            "{} cut from {from} to {to} bytes, its length at the checkpoint restored: \
             this run writes what followed again",
            path.display()
        ),
        Restored::Shorter { len, saved } => tracing::warn!(
            node = %node,
            "{} has {len} bytes, fewer than the {saved} it had at the checkpoint restored \
             (truncated or rotated since?); it is left as it is",
            path.display()
        ),
    }
}

/// The writer thread of a `file` or `stdout` sink: write every chunk, flush whenever
/// nothing more is waiting (a reader of the file sees lines within milliseconds) and
/// at the end; at a checkpoint mark, sync and save the file's length.
pub(super) fn write_lines(
    inbox: Inbox<Lines>,
    mut out: Output,
    format: Format,
    written: &Counter,
    mut log: ThrottledLog,
) {
    let fingerprint = out.fingerprint(format);
    let mut dirty = false;
    loop {
        let next = if dirty {
            inbox.try_recv()
        } else {
            inbox.recv_timeout(Duration::from_secs(1))
        };
        let result = match next {
            Received::Chunk(lines) => {
                dirty = true;
                out.write_all(lines.text.as_bytes())
                    .map(|()| written.add(lines.records as u64))
            }
            Received::Mark(mark) => {
                dirty = false;
                take(mark, &mut out, &fingerprint, &mut log);
                Ok(())
            }
            Received::Timeout if dirty => {
                dirty = false;
                out.flush()
            }
            Received::Timeout => Ok(()),
            Received::Closed => break,
        };
        if let Err(e) = result {
            log.error("write", format_args!("cannot write: {e}"));
        }
    }
    if let Err(e) = out.flush() {
        log.error("write", format_args!("cannot write: {e}"));
    }
}

fn take(mark: Mark, out: &mut Output, fingerprint: &str, log: &mut ThrottledLog) {
    match out.sync() {
        Ok(len) if matches!(out, Output::File { .. }) => {
            mark.take(fingerprint, &len.to_le_bytes());
        }
        Ok(_) => mark.take(fingerprint, &[]),
        Err(e) => {
            // Dropped untaken: the checkpoint goes on without a length to cut back to.
            log.error("sync", format_args!("cannot sync for a checkpoint: {e}"));
            drop(mark);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use smartgrid_runtime::checkpoint::{AT_STOP, Checkpoints, NodeState, OnStop};
    use smartgrid_runtime::shutdown::Shutdown;
    use smartgrid_runtime::state::StateStore;

    use super::*;
    use crate::delivery::SinkCheckpoint;

    /// A run's checkpoints in `dir`, stopped by a signal (so a stop keeps state).
    fn run(dir: &Path) -> Arc<Checkpoints> {
        let store = StateStore::open(dir, "p", 0, 1).expect("open");
        let stop = Shutdown::new();
        stop.trigger();
        Arc::new(Checkpoints::new(store, OnStop::Checkpoint, None, stop).expect("checkpoints"))
    }

    /// A checkpoint whose part for node `store` is `part` under `fingerprint`, as a
    /// previous run leaves it.
    fn checkpoint_with(dir: &Path, fingerprint: &str, part: &[u8]) {
        let checkpoints = run(dir);
        let mut state: NodeState = checkpoints.node("store", 0, 1);
        state.take(AT_STOP, fingerprint, part);
        checkpoints.commit_at_stop().expect("commit");
    }

    fn restored(dir: &Path, fingerprint: &str) -> Option<Vec<u8>> {
        let checkpoints = run(dir);
        SinkCheckpoint::new(checkpoints.node("store", 0, 1)).restored(fingerprint)
    }

    #[test]
    fn a_file_longer_than_its_checkpoint_is_cut_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("means.jsonl");
        let fp = fingerprint(&path, Format::Json);
        std::fs::write(&path, "one\ntwo\nwritten after the checkpoint\n").expect("write");
        checkpoint_with(&dir.path().join("state"), &fp, &8u64.to_le_bytes());
        let part = restored(&dir.path().join("state"), &fp);
        assert_eq!(
            restore_length(&path, part.as_deref()).expect("restore"),
            Restored::Cut { from: 37, to: 8 }
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "one\ntwo\n");
        assert_eq!(
            restore_length(&path, part.as_deref()).expect("again"),
            Restored::Same
        );
    }

    #[test]
    fn a_file_shorter_than_its_checkpoint_or_another_file_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("means.lp");
        std::fs::write(&path, "rotated\n").expect("write");
        let shorter = restore_length(&path, Some(&100u64.to_le_bytes())).expect("restore");
        assert_eq!(shorter, Restored::Shorter { len: 8, saved: 100 });
        let missing = dir.path().join("gone.lp");
        let gone = restore_length(&missing, Some(&100u64.to_le_bytes())).expect("restore");
        assert_eq!(gone, Restored::Shorter { len: 0, saved: 100 });
        assert!(!missing.exists(), "nothing is created");

        // Saved for the file in another format (or at another path): not restored.
        let state = dir.path().join("state");
        checkpoint_with(
            &state,
            &fingerprint(&path, Format::Json),
            &1u64.to_le_bytes(),
        );
        let part = restored(&state, &fingerprint(&path, Format::LineProtocol));
        assert_eq!(part, None);
        assert_eq!(
            restore_length(&path, part.as_deref()).expect("restore"),
            Restored::Nothing
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "rotated\n");
    }

    #[test]
    fn a_mark_syncs_and_saves_the_length_written_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.txt");
        let file = smartgrid_runtime::operator::open_output(&path, false).expect("open");
        let out = Output::File {
            path: path.clone(),
            file,
        };
        let state = dir.path().join("state");
        {
            let checkpoints = run(&state);
            let sink = SinkCheckpoint::new(checkpoints.node("store", 0, 1));
            let pressure = smartgrid_runtime::pressure::Pressure::new();
            let (mut handoff, inbox) = crate::delivery::handoff::<Lines>(4, &pressure);
            let lines = |text: &str| Lines {
                text: text.into(),
                records: 1,
            };
            handoff.push(lines("before\n"));
            handoff.push_mark(sink.mark(AT_STOP, None));
            handoff.push(lines("after\n"));
            assert!(handoff.flush());
            drop(handoff);
            let log = ThrottledLog::new("store");
            write_lines(inbox, out, Format::Text, &Counter::default(), log);
            checkpoints.commit_at_stop().expect("commit");
        }
        let fp = fingerprint(&path, Format::Text);
        let part = restored(&state, &fp).expect("a saved length");
        assert_eq!(part, 7u64.to_le_bytes());
        assert_eq!(
            restore_length(&path, Some(&part)).expect("restore"),
            Restored::Cut { from: 13, to: 7 }
        );
    }
}
