//! The state directory: checkpoints on disk.
//!
//! ```text
//! <state dir>/p<process>/
//!     LOCK                         flock held while running: one run per directory
//!     checkpoint/manifest.json     pipeline, processes, time, source positions, parts
//!     checkpoint/<node>.<worker>   one part: the node's fingerprint, then its bytes
//!     checkpoint.<time>/           (cluster runs) an earlier checkpoint still kept
//! ```
//!
//! A single process keeps its latest checkpoint only. A process of a cluster keeps its
//! last few ([`StateStore::keeping`]): after a crash the processes restore the newest
//! one they all hold, which need not be each one's latest.
//!
//! A checkpoint is written aside (`checkpoint.tmp/`), every file synced, then renamed
//! into place: a crash while writing one leaves the previous checkpoint whole. The one a
//! stop writes goes aside into `checkpoint.stop/` part by part, as each node saves
//! ([`StateStore::write_stop_part`]), so no node's bytes wait in memory for the others.
//!
//! What goes into a checkpoint, and when, is [`crate::checkpoint`]'s business.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::operator::Time;

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another run holds the directory.
    #[error(
        "state directory {} is in use by another run (it holds {}/LOCK); give each run its own `state_dir`",
        dir.display(),
        dir.display()
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io_err<'p>(
    what: &'static str,
    path: &'p Path,
) -> impl FnOnce(std::io::Error) -> StateError + 'p {
    move |source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    pipeline: String,
    processes: usize,
    /// The checkpoint's timely time: every part holds its node's state for exactly
    /// the records before it (`u64::MAX`: taken at a stop, after everything).
    time: Time,
    /// Per replayable source, the log position to replay from.
    positions: BTreeMap<String, u64>,
    /// `(node, worker)` of every part.
    parts: Vec<(String, usize)>,
}

/// A checkpoint: its time, the sources' positions, and each node's parts.
#[derive(Debug, Default)]
pub struct Checkpoint {
    /// See [`crate::checkpoint`]; `u64::MAX` for one taken at a stop.
    pub time: Time,
    /// Per replayable source, the log position to replay from.
    pub positions: BTreeMap<String, u64>,
    /// Parts by node, in worker order.
    pub parts: HashMap<String, Vec<Vec<u8>>>,
}

/// One process's state directory, claimed for the run.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    pipeline: String,
    processes: usize,
    /// How many checkpoints are kept (1: the latest only).
    keep: usize,
    _lock: File,
}

/// A checkpoint kept in the state directory, without its parts.
#[derive(Debug, Clone)]
pub struct Kept {
    /// Its time.
    pub time: Time,
    /// Per replayable source, the log position to replay from.
    pub positions: BTreeMap<String, u64>,
    dir: PathBuf,
}

impl StateStore {
    /// Claims `dir` for process `process` of `processes` of pipeline `pipeline`.
    pub fn open(
        dir: &Path,
        pipeline: &str,
        process: usize,
        processes: usize,
    ) -> Result<Self, StateError> {
        let dir = dir.join(format!("p{process}"));
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StateError::Locked { dir }),
            Err(TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        // A stop that did not finish its checkpoint (a crash while writing it) left
        // parts that no manifest names.
        let _ = fs::remove_dir_all(dir.join(STOP_DIR));
        Ok(StateStore {
            dir,
            pipeline: pipeline.to_string(),
            processes,
            keep: 1,
            _lock: lock,
        })
    }

    /// Keep the last `checkpoints` checkpoints (by time), not the latest only.
    #[must_use]
    pub fn keeping(mut self, checkpoints: usize) -> Self {
        self.keep = checkpoints.max(1);
        self
    }

    /// Every checkpoint kept that this pipeline wrote with as many processes, newest
    /// first.
    pub fn kept(&self) -> Vec<Kept> {
        let mut kept: Vec<Kept> = self
            .checkpoint_dirs()
            .into_iter()
            .filter_map(|dir| match self.manifest(&dir) {
                Ok(Some(m)) => Some(Kept {
                    time: m.time,
                    positions: m.positions,
                    dir,
                }),
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(
                        "the checkpoint in {} is unreadable and is ignored: {e}",
                        dir.display()
                    );
                    None
                }
            })
            .collect();
        kept.sort_by_key(|k| std::cmp::Reverse(k.time));
        kept.dedup_by_key(|k| k.time);
        kept
    }

    /// The kept checkpoint at `time`, with its parts.
    pub fn load_at(&self, time: Time) -> Option<Checkpoint> {
        let kept = self.kept().into_iter().find(|k| k.time == time)?;
        match self.read(&kept.dir) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                tracing::warn!(
                    "the checkpoint in {} is unreadable and is ignored: {e}",
                    kept.dir.display()
                );
                None
            }
        }
    }

    /// Removes every kept checkpoint after `time` (`None`: every one): a run that
    /// restores an earlier cut makes them stale.
    pub fn discard_after(&self, time: Option<Time>) -> Result<(), StateError> {
        for kept in self.kept() {
            if time.is_none_or(|t| kept.time > t) {
                fs::remove_dir_all(&kept.dir).map_err(io_err("remove", &kept.dir))?;
            }
        }
        sync_dir(&self.dir);
        Ok(())
    }

    /// `checkpoint`, `checkpoint.old` and every `checkpoint.<time>` that exist.
    fn checkpoint_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return dirs;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let numbered = name
                .strip_prefix("checkpoint.")
                .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
            if (name == "checkpoint" || name == "checkpoint.old" || numbered)
                && entry.path().join("manifest.json").exists()
            {
                dirs.push(entry.path());
            }
        }
        dirs
    }

    /// The directory of this process.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest checkpoint (`checkpoint/`, or `checkpoint.old/` left by a crash
    /// between two renames), if one was written by this pipeline with as many
    /// processes; another is discarded with a warning.
    pub fn load(&self) -> Option<Checkpoint> {
        let current = self.dir.join("checkpoint");
        let old = self.dir.join("checkpoint.old");
        let source = [current, old]
            .into_iter()
            .find(|d| d.join("manifest.json").exists())?;
        match self.read(&source) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                tracing::warn!(
                    "the checkpoint in {} is unreadable and is ignored: {e}",
                    source.display()
                );
                None
            }
        }
    }

    fn read(&self, dir: &Path) -> Result<Option<Checkpoint>, StateError> {
        let Some(manifest) = self.manifest(dir)? else {
            return Ok(None);
        };
        let mut parts: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        for (node, worker) in manifest.parts {
            let path = dir.join(format!("{node}.{worker}"));
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err("read", &path))?;
            parts.entry(node).or_default().push(bytes);
        }
        Ok(Some(Checkpoint {
            time: manifest.time,
            positions: manifest.positions,
            parts,
        }))
    }

    /// The manifest in `dir`, if this pipeline wrote it with as many processes.
    fn manifest(&self, dir: &Path) -> Result<Option<Manifest>, StateError> {
        let path = dir.join("manifest.json");
        let text = fs::read_to_string(&path).map_err(io_err("read", &path))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| io_err("parse", &path)(std::io::Error::other(e)))?;
        if manifest.pipeline != self.pipeline || manifest.processes != self.processes {
            tracing::warn!(
                "the checkpoint in {} was written by pipeline `{}` with {} process(es); this run is `{}` with {}: it is not restored",
                dir.display(),
                manifest.pipeline,
                manifest.processes,
                self.pipeline,
                self.processes
            );
            return Ok(None);
        }
        Ok(Some(manifest))
    }

    /// Writes one part of the checkpoint a stop takes into `checkpoint.stop/` (made
    /// empty by [`open`](Self::open)): `header`, then what `body` writes. Returns the
    /// part's size in bytes.
    pub fn write_stop_part(
        &self,
        node: &str,
        worker: usize,
        header: &[u8],
        body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<usize, StateError> {
        let dir = self.dir.join(STOP_DIR);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let path = dir.join(format!("{node}.{worker}"));
        let file = File::create(&path).map_err(io_err("create", &path))?;
        let mut out = Counted {
            inner: BufWriter::new(file),
            bytes: 0,
        };
        out.write_all(header)
            .and_then(|()| body(&mut out))
            .and_then(|()| out.inner.flush())
            .map_err(io_err("write", &path))?;
        let file = out
            .inner
            .into_inner()
            .map_err(|e| io_err("write", &path)(e.into_error()))?;
        file.sync_all().map_err(io_err("sync", &path))?;
        Ok(out.bytes)
    }

    /// Puts the checkpoint whose `parts` [`write_stop_part`](Self::write_stop_part)
    /// wrote in place of the previous one.
    pub fn finish_stop(
        &self,
        time: Time,
        positions: &BTreeMap<String, u64>,
        parts: Vec<(String, usize)>,
    ) -> Result<(), StateError> {
        let dir = self.dir.join(STOP_DIR);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        self.put_in_place(&dir, time, positions, parts)
    }

    /// Forgets the parts a stop wrote (the run drained instead).
    pub fn discard_stop(&self) {
        let _ = fs::remove_dir_all(self.dir.join(STOP_DIR));
    }

    /// Writes a checkpoint in place of the previous one; returns its size in bytes.
    pub fn write(
        &self,
        time: Time,
        positions: &BTreeMap<String, u64>,
        parts: &BTreeMap<(String, usize), Vec<u8>>,
    ) -> Result<usize, StateError> {
        let tmp = self.dir.join("checkpoint.tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
        let mut bytes = 0;
        for ((node, worker), part) in parts {
            write_synced(&tmp.join(format!("{node}.{worker}")), part)?;
            bytes += part.len();
        }
        self.put_in_place(&tmp, time, positions, parts.keys().cloned().collect())?;
        Ok(bytes)
    }

    /// Writes the manifest into `aside`, whose parts are written and synced, and renames
    /// it into place.
    fn put_in_place(
        &self,
        aside: &Path,
        time: Time,
        positions: &BTreeMap<String, u64>,
        parts: Vec<(String, usize)>,
    ) -> Result<(), StateError> {
        let manifest = Manifest {
            pipeline: self.pipeline.clone(),
            processes: self.processes,
            time,
            positions: positions.clone(),
            parts,
        };
        let text = serde_json::to_string_pretty(&manifest).expect("a manifest serializes");
        write_synced(&aside.join("manifest.json"), text.as_bytes())?;
        sync_dir(aside);
        let current = self.dir.join("checkpoint");
        if self.keep > 1 {
            self.keep_aside(time, &current)?;
            fs::rename(aside, &current).map_err(io_err("rename into place", aside))?;
            sync_dir(&self.dir);
            self.prune();
            return Ok(());
        }
        let old = self.dir.join("checkpoint.old");
        let _ = fs::remove_dir_all(&old);
        if current.exists() {
            fs::rename(&current, &old).map_err(io_err("move aside", &current))?;
        }
        fs::rename(aside, &current).map_err(io_err("rename into place", aside))?;
        sync_dir(&self.dir);
        let _ = fs::remove_dir_all(&old);
        Ok(())
    }

    /// Before the checkpoint at `time` goes into place: the current one becomes
    /// `checkpoint.<its time>`, and any kept at or after `time` (a stop's, restored
    /// and now superseded) is removed.
    fn keep_aside(&self, time: Time, current: &Path) -> Result<(), StateError> {
        for kept in self.kept() {
            if kept.time >= time {
                fs::remove_dir_all(&kept.dir).map_err(io_err("remove", &kept.dir))?;
            }
        }
        if current.join("manifest.json").exists() {
            let Ok(Some(manifest)) = self.manifest(current) else {
                return fs::remove_dir_all(current).map_err(io_err("remove", current));
            };
            let aside = self.dir.join(format!("checkpoint.{}", manifest.time));
            let _ = fs::remove_dir_all(&aside);
            fs::rename(current, &aside).map_err(io_err("move aside", current))?;
        } else if current.exists() {
            fs::remove_dir_all(current).map_err(io_err("remove", current))?;
        }
        Ok(())
    }

    /// Removes the kept checkpoints beyond the newest `keep`.
    fn prune(&self) {
        for kept in self.kept().into_iter().skip(self.keep) {
            let _ = fs::remove_dir_all(&kept.dir);
        }
    }

    /// Removes the checkpoint (a drained run leaves nothing to restore).
    pub fn clear(&self) -> Result<(), StateError> {
        let kept = self.checkpoint_dirs();
        let named =
            ["checkpoint", "checkpoint.old", "checkpoint.tmp", STOP_DIR].map(|n| self.dir.join(n));
        for dir in kept.into_iter().chain(named) {
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(io_err("remove", &dir))?;
            }
        }
        sync_dir(&self.dir);
        Ok(())
    }
}

/// Where a stop's checkpoint is written aside.
const STOP_DIR: &str = "checkpoint.stop";

/// A writer that counts what goes through it.
struct Counted<W> {
    inner: W,
    bytes: usize,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut file = File::create(path).map_err(io_err("create", path))?;
    file.write_all(bytes).map_err(io_err("write", path))?;
    file.sync_all().map_err(io_err("sync", path))
}

/// Makes renames in `dir` durable (best effort: not every filesystem allows it).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(items: &[(&str, usize, &[u8])]) -> BTreeMap<(String, usize), Vec<u8>> {
        items
            .iter()
            .map(|(n, w, b)| ((n.to_string(), *w), b.to_vec()))
            .collect()
    }

    #[test]
    fn a_checkpoint_round_trips_and_replaces_the_previous_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(dir.path(), "p", 0, 1).expect("open");
        assert!(store.load().is_none());
        let positions = BTreeMap::from([("meters".to_string(), 42)]);
        store
            .write(
                1_000,
                &positions,
                &parts(&[("means", 0, b"a"), ("means", 1, b"b")]),
            )
            .expect("write");
        store
            .write(2_000, &positions, &parts(&[("means", 0, b"c")]))
            .expect("write");
        let loaded = store.load().expect("a checkpoint");
        assert_eq!(loaded.time, 2_000);
        assert_eq!(loaded.positions, positions);
        assert_eq!(loaded.parts["means"], vec![b"c".to_vec()]);
        store.clear().expect("clear");
        assert!(store.load().is_none());
    }

    #[test]
    fn a_checkpoint_left_aside_by_a_crash_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(dir.path(), "p", 0, 1).expect("open");
        store
            .write(7, &BTreeMap::new(), &parts(&[("w", 0, b"x")]))
            .expect("write");
        // A crash between "move the current one aside" and "rename the new one in".
        fs::rename(
            store.dir().join("checkpoint"),
            store.dir().join("checkpoint.old"),
        )
        .expect("rename");
        fs::create_dir_all(store.dir().join("checkpoint.tmp")).expect("a torn new one");
        assert_eq!(store.load().expect("the old one").time, 7);
    }

    #[test]
    fn a_directory_serves_one_run_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = StateStore::open(dir.path(), "p", 0, 1).expect("open");
        let second = StateStore::open(dir.path(), "p", 0, 1);
        assert!(matches!(second, Err(StateError::Locked { .. })));
    }

    #[test]
    fn another_pipeline_s_checkpoint_is_not_restored() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = StateStore::open(dir.path(), "a", 0, 1).expect("open");
            store
                .write(1, &BTreeMap::new(), &parts(&[("w", 0, b"x")]))
                .expect("write");
        }
        let store = StateStore::open(dir.path(), "b", 0, 1).expect("open");
        assert!(store.load().is_none());
    }
}
