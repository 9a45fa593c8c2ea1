//! A write-ahead log: a durable sequence of byte records, each at a *position* (0, 1,
//! 2, … for as long as the directory lives), kept until a checkpoint no longer needs
//! them.
//!
//! It is what makes the `mqtt` source crash-safe (see `crate::io::mqtt::journal`): a
//! message is appended and synced before it is acknowledged to the broker; a checkpoint
//! records the position of the first message it does not cover, and the next run
//! replays the log from there. Where a [`Spool`](crate::spool::Spool) gives its records
//! up one by one as a server accepts them, a log is read by position and cut in bulk at
//! a checkpoint's.
//!
//! ```no_run
//! use smartgrid_operators::wal::{Wal, WalOptions};
//! let mut wal = Wal::open("data/meters.wal", WalOptions::new(1 << 30))?;
//! for record in wal.replay(wal.start())? {
//!     let (position, bytes) = record?;        // what a crash may have left unprocessed
//! }
//! let first = wal.append(b"message 1")?;
//! wal.append(b"message 2")?;
//! wal.sync()?;                                // both durable: one fsync (group commit)
//! wal.truncate(first + 2)?;                   // a checkpoint covers both
//! # Ok::<(), smartgrid_operators::wal::WalError>(())
//! ```
//!
//! # On disk
//! The spool's formats, in a directory of its own:
//! * `NNNNNNNNNNNNNNNNNNNN.seg`: segments of records framed `[len u32][crc32 u32][payload]`.
//!   A segment is named by the position of its first record, so every position follows
//!   from a segment's name and the record's place in it, and opening reads only the
//!   last segment.
//! * `HEAD`: the first position still kept (the spool's two-slot checksummed file, in
//!   its `segment` word). Records before it were covered by a checkpoint. It keeps the
//!   numbering going when every segment has been deleted.
//! * `LOCK`: an exclusive `flock` while the log is open.
//!
//! # Guarantees
//! * Positions are dense and only grow, across reopen and truncation.
//! * [`Wal::sync`] makes every record appended before it durable (`fdatasync` of the
//!   segments written, and of the directory when one was created): one sync for a
//!   group of appends is the group commit. With `fsync: false` records survive a crash
//!   of the process but not of the machine.
//! * A record torn by a crash (a short frame or a CRC mismatch at the end of the last
//!   segment) is cut off on open; [`Wal::recovered_bytes`] says how much.
//! * Bound: the segment files never hold more than `max_bytes`; an append past it is
//!   refused ([`WalError::Full`]) and the caller waits for a truncation.
//! * [`Wal::truncate`] deletes the segments wholly before a position (the last one too
//!   once every record is before it, so a commit always frees the disk).
//!
//! One owner appends, syncs and truncates. A [`Replay`] reads with its own file handles,
//! so it can run on another thread while appends go on.

mod replay;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::spool::head::{Head, Position};
use crate::spool::segment::{self, FRAME_HEADER, MAX_RECORD};

pub use replay::Replay;

/// The buffered appends are written to the segment once they reach this, so a large
/// group does not sit in memory twice.
const WRITE_BUFFER: usize = 1 << 20;

/// How a log is bounded and synced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Most bytes in segment files (payloads plus 8 bytes of framing each).
    pub max_bytes: u64,
    /// A new segment starts when the current one would pass this. Truncation frees whole
    /// segments, so this is the grain of what a checkpoint gives back.
    pub segment_bytes: u64,
    /// `fdatasync` in [`Wal::sync`] and [`Wal::truncate`] (see the module docs).
    pub fsync: bool,
}

impl WalOptions {
    /// `max_bytes` in segments of an eighth of it (64 KiB to 64 MiB), synced.
    pub fn new(max_bytes: u64) -> Self {
        WalOptions {
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(64 << 10, 64 << 20),
            fsync: true,
        }
    }
}

/// What can go wrong with a write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("write-ahead log: cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// To which file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Another process (or another `Wal` in this one) has the directory open.
    #[error("write-ahead log {} is in use by another process (it holds {}/LOCK)", dir.display(), dir.display())]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// The record does not fit until a truncation frees space.
    #[error("write-ahead log {} is full: {used} of {max_bytes} bytes used, {needed} more needed", dir.display())]
    Full {
        /// The directory.
        dir: PathBuf,
        /// Bytes in segment files.
        used: u64,
        /// Bytes the record needs.
        needed: u64,
        /// The bound.
        max_bytes: u64,
    },
    /// The record can never fit.
    #[error(
        "a record of {len} bytes does not fit in a write-ahead log of at most {max_bytes} bytes"
    )]
    TooLarge {
        /// The record's length.
        len: u64,
        /// The bound.
        max_bytes: u64,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WalError + use<> {
    let path = path.to_path_buf();
    move |source| WalError::Io { what, path, source }
}

/// One segment file, opened for appending.
struct Segment {
    file: File,
    /// Bytes written to the file (the buffer not included).
    len: u64,
}

/// An open write-ahead log directory. See the module docs.
pub struct Wal {
    dir: PathBuf,
    options: WalOptions,
    /// Held for the log's lifetime; the `flock` goes with it.
    _lock: File,
    head: Head,
    /// The first position kept.
    start: u64,
    /// The position the next record gets.
    next: u64,
    /// Segments by the position of their first record.
    segments: BTreeMap<u64, Segment>,
    /// Frames appended to the last segment and not yet written to it.
    buffer: Vec<u8>,
    /// How many records the buffer holds.
    buffered: u64,
    /// Segments written to since the last sync.
    dirty: BTreeSet<u64>,
    /// A segment file was created since the last sync (the directory needs one too).
    created: bool,
    /// Bytes in segment files, the buffer included.
    bytes: u64,
    recovered_bytes: u64,
}

impl Wal {
    /// Opens the log in `dir` (created if missing), recovering from a crash: a torn
    /// record at the end is cut off, segments a truncation had already given up are
    /// deleted.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Self, WalError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("create the directory", &dir))?;
        let lock = match crate::spool::lock_dir(&dir) {
            Ok(Some(lock)) => lock,
            Ok(None) => return Err(WalError::Locked { dir }),
            Err((what, e)) => return Err(io_err(what, &dir.join("LOCK"))(e)),
        };
        let head_path = dir.join("HEAD");
        let (head, stored) =
            Head::load(&head_path, options.fsync).map_err(io_err("read", &head_path))?;
        let committed = stored.map_or(0, |p| p.segment);

        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            if let Some(id) = entry.file_name().to_str().and_then(segment::parse_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let mut wal = Wal {
            dir,
            options,
            _lock: lock,
            head,
            start: committed,
            next: committed,
            segments: BTreeMap::new(),
            buffer: Vec::new(),
            buffered: 0,
            dirty: BTreeSet::new(),
            created: false,
            bytes: 0,
            recovered_bytes: 0,
        };
        for (i, &id) in ids.iter().enumerate() {
            let path = segment::path(&wal.dir, id);
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map_err(io_err("open", &path))?;
            // Only the last segment can end in a torn record: the others were complete
            // (and synced) before the next one was created.
            let (len, end) = match ids.get(i + 1) {
                Some(&following) => {
                    let len = file.metadata().map_err(io_err("read", &path))?.len();
                    (len, following)
                }
                None => {
                    let scan = segment::scan(&file, id).map_err(io_err("read", &path))?;
                    if scan.valid_len < scan.file_len {
                        tracing::warn!(
                            "write-ahead log segment {}: cutting {} bytes of a record torn by a crash",
                            path.display(),
                            scan.file_len - scan.valid_len
                        );
                        file.set_len(scan.valid_len)
                            .and_then(|()| file.sync_all())
                            .map_err(io_err("truncate", &path))?;
                        wal.recovered_bytes += scan.file_len - scan.valid_len;
                    }
                    (scan.valid_len, id + scan.entries.len() as u64)
                }
            };
            if end <= committed {
                // Committed entirely: a crash came between HEAD and the delete.
                drop(file);
                fs::remove_file(&path).map_err(io_err("delete", &path))?;
                continue;
            }
            wal.bytes += len;
            wal.next = wal.next.max(end);
            wal.segments.insert(id, Segment { file, len });
        }
        if let Some(&first) = wal.segments.keys().next()
            && first > wal.start
        {
            if stored.is_some() {
                tracing::warn!(
                    "write-ahead log {}: records {}..{first} are missing",
                    wal.dir.display(),
                    wal.start
                );
            }
            wal.start = first;
        }
        Ok(wal)
    }

    /// Adds `record` at the end (written at the next [`sync`](Self::sync), or when the
    /// buffer fills) and returns its position. Refused when it would pass `max_bytes`.
    pub fn append(&mut self, record: &[u8]) -> Result<u64, WalError> {
        let len = record.len() as u64;
        let needed = FRAME_HEADER + len;
        if len > MAX_RECORD || needed > self.options.max_bytes {
            return Err(WalError::TooLarge {
                len,
                max_bytes: self.options.max_bytes,
            });
        }
        if self.bytes + needed > self.options.max_bytes {
            return Err(WalError::Full {
                dir: self.dir.clone(),
                used: self.bytes,
                needed,
                max_bytes: self.options.max_bytes,
            });
        }
        let tail = self
            .segments
            .last_key_value()
            .map(|(_, s)| s.len + self.buffer.len() as u64);
        if tail.is_none_or(|len| len > 0 && len + needed > self.options.segment_bytes) {
            self.start_segment()?;
        }
        self.buffer.extend_from_slice(&segment::header(record));
        self.buffer.extend_from_slice(record);
        self.buffered += 1;
        self.bytes += needed;
        let position = self.next;
        self.next += 1;
        if self.buffer.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(position)
    }

    /// Makes every record appended so far durable (see the module docs).
    ///
    /// After an error the records not yet written are gone (their positions are
    /// reused): the caller must not acknowledge them.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.flush()?;
        if self.options.fsync {
            for id in &self.dirty {
                if let Some(segment) = self.segments.get(id) {
                    segment
                        .file
                        .sync_data()
                        .map_err(io_err("sync", &segment::path(&self.dir, *id)))?;
                }
            }
            if self.created {
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err("sync", &self.dir))?;
            }
        }
        self.dirty.clear();
        self.created = false;
        Ok(())
    }

    /// Gives up the records before `position` (a checkpoint covers them): `HEAD` moves
    /// there and the segments wholly before it are deleted. Returns the bytes freed.
    pub fn truncate(&mut self, position: u64) -> Result<u64, WalError> {
        let position = position.min(self.next);
        if position <= self.start {
            return Ok(0);
        }
        let head_path = self.dir.join("HEAD");
        self.head
            .store(Position {
                segment: position,
                offset: 0,
            })
            .map_err(io_err("write", &head_path))?;
        self.start = position;
        let mut freed = 0;
        loop {
            let mut ids = self.segments.keys();
            let (Some(&id), following) = (ids.next(), ids.next().copied()) else {
                break;
            };
            // The last segment ends at `next`, its buffer included.
            let end = following.unwrap_or(self.next);
            if end > position || (following.is_none() && self.buffered > 0) {
                break;
            }
            let gone = self.segments.remove(&id).expect("the first key is there");
            self.dirty.remove(&id);
            let path = segment::path(&self.dir, id);
            drop(gone.file);
            fs::remove_file(&path).map_err(io_err("delete", &path))?;
            self.bytes -= gone.len;
            freed += gone.len;
        }
        Ok(freed)
    }

    /// Numbers the next record `position` if the log ends before it (its directory was
    /// emptied, but a checkpoint says records up to there were processed): every record
    /// kept is given up, so none gets a position the checkpoint already covers.
    pub fn advance_to(&mut self, position: u64) -> Result<(), WalError> {
        if position <= self.next {
            return Ok(());
        }
        self.sync()?;
        self.next = position;
        self.truncate(position)?;
        Ok(())
    }

    /// The records from `from` (at least [`start`](Self::start)) to the current end,
    /// read on their own file handles: appends made meanwhile are not part of it.
    pub fn replay(&mut self, from: u64) -> Result<Replay, WalError> {
        self.flush()?;
        let from = from.clamp(self.start, self.next);
        let ids: Vec<u64> = self.segments.keys().copied().collect();
        let mut segments = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let end = ids.get(i + 1).copied().unwrap_or(self.next);
            if end <= from {
                continue;
            }
            let path = segment::path(&self.dir, id);
            let file = File::open(&path).map_err(io_err("open", &path))?;
            segments.push(replay::Source {
                first: id,
                end,
                file,
                path,
            });
        }
        Ok(Replay::new(segments, from, self.next))
    }

    /// The first position kept: without a checkpoint, replay starts here.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The position the next record gets.
    pub fn end(&self) -> u64 {
        self.next
    }

    /// Bytes in segment files (what `max_bytes` bounds), unwritten appends included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of a torn record cut off when the log was opened.
    pub fn recovered_bytes(&self) -> u64 {
        self.recovered_bytes
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.options
    }

    /// Writes the buffered appends to the last segment. On failure they are taken back,
    /// so no partial frame stays behind for later appends to follow.
    fn flush(&mut self) -> Result<(), WalError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let Some((&id, segment)) = self.segments.iter_mut().next_back() else {
            unreachable!("append starts a segment before it buffers a record");
        };
        if let Err(e) = segment.file.write_all(&self.buffer) {
            let _ = segment.file.set_len(segment.len);
            self.bytes -= self.buffer.len() as u64;
            self.next -= self.buffered;
            self.buffer.clear();
            self.buffered = 0;
            return Err(io_err("append to", &segment::path(&self.dir, id))(e));
        }
        segment.len += self.buffer.len() as u64;
        self.dirty.insert(id);
        self.buffer.clear();
        self.buffered = 0;
        Ok(())
    }

    /// Starts a segment named by the next position, after writing the buffer to the
    /// current one.
    fn start_segment(&mut self) -> Result<(), WalError> {
        self.flush()?;
        let id = self.next;
        let path = segment::path(&self.dir, id);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        self.segments.insert(id, Segment { file, len: 0 });
        self.created = true;
        Ok(())
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("start", &self.start)
            .field("end", &self.next)
            .field("segments", &self.segments.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}
