//! A durable FIFO of opaque byte records on disk: sinks keep batches here while their
//! server is unreachable (and as an outbox), and remove each one only once the server
//! accepted it.
//!
//! ```no_run
//! use smartgrid_operators::spool::{Spool, SpoolOptions, WhenFull};
//! # fn send(_: &[u8]) -> bool { true }
//! let mut spool = Spool::open("data/spool", SpoolOptions {
//!     max_bytes: 256 << 20,
//!     when_full: WhenFull::Backpressure,
//!     ..SpoolOptions::default()
//! })?;
//! spool.append(b"cpu,host=a value=1 1\n")?;   // durable when it returns (fsync: true)
//! while let Some(batch) = spool.peek()? {
//!     if !send(&batch) { break; }               // keep it for a later attempt
//!     spool.ack()?;                             // accepted: never replayed again
//! }
//! # Ok::<(), smartgrid_operators::spool::SpoolError>(())
//! ```
//!
//! # On disk
//! * `NNNNNNNNNNNNNNNNNNNN.seg`: segment files, appended to in order; each record is
//!   `[len u32][crc32 u32][payload]` (little endian). A new segment starts when the
//!   current one would pass [`SpoolOptions::segment_bytes`].
//! * `HEAD`: the position of the oldest unacknowledged record (two checksummed slots
//!   written alternately, so a torn write keeps the previous position). Segments wholly
//!   before it are deleted.
//! * `LOCK`: held (an exclusive `flock`) while a [`Spool`] is open: two processes never
//!   share a spool directory.
//!
//! # Guarantees
//! * Order: records come back in append order, across reopen.
//! * Acknowledged records are never returned again; unacknowledged ones always are.
//! * Crash: a record torn by a crash in the middle of [`Spool::append`] (a short frame or a
//!   CRC mismatch at the end of a segment) is cut off on reopen; every complete record
//!   before it is kept. [`Spool::recovered_bytes`] says how much was cut.
//! * Durability (`fsync`, default true): `append` returns after `fdatasync` of the
//!   segment (and of the directory when it created a segment), `ack` after `fdatasync`
//!   of `HEAD`, so both survive a power loss. With `fsync: false` they survive a crash of
//!   the process (kill -9) but not of the machine; an unsynced ack lost that way only
//!   replays records (InfluxDB writes are idempotent), an unsynced append loses them.
//! * Bound: the pending records (framing included) never exceed
//!   [`SpoolOptions::max_bytes`]; disk use is at most that plus one segment of
//!   acknowledged records not yet deleted. When an append would pass the bound,
//!   [`WhenFull`] decides: refuse it ([`SpoolError::Full`]; the caller waits and retries)
//!   or delete the oldest records, counted by [`Spool::dropped`].
//!
//! Single-threaded: one owner appends and acknowledges (a sink's writer thread).

pub(crate) mod head;
pub(crate) mod segment;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use smartgrid_runtime::metrics::Gauge;

use head::{Head, Position};
use segment::{Entry, FRAME_HEADER, MAX_RECORD};

/// What [`Spool::append`] does when the record would pass `max_bytes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Refuse the record with [`SpoolError::Full`]; nothing is lost, the caller waits.
    #[default]
    Backpressure,
    /// Delete the oldest pending records until the new one fits; counted by
    /// [`Spool::dropped`].
    DropOldest,
}

/// How a spool is bounded and synced.
#[derive(Clone, Debug)]
pub struct SpoolOptions {
    /// Most bytes of pending records (payloads plus 8 bytes of framing each).
    pub max_bytes: u64,
    /// What to do when an append would pass `max_bytes`.
    pub when_full: WhenFull,
    /// A segment file is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// `fdatasync` on every append and ack (see the module docs).
    pub fsync: bool,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            when_full: WhenFull::Backpressure,
            segment_bytes: 64 << 20,
            fsync: true,
        }
    }
}

/// What can go wrong with a spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool: cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another process (or another `Spool` in this one) has the directory open.
    #[error("spool {} is in use by another process (it holds {}/LOCK)", dir.display(), dir.display())]
    Locked { dir: PathBuf },
    /// `when_full: backpressure` and the record does not fit now.
    #[error("spool {} is full: {pending} of {max_bytes} bytes pending, {needed} more needed", dir.display())]
    Full {
        dir: PathBuf,
        pending: u64,
        needed: u64,
        max_bytes: u64,
    },
    /// The record can never fit.
    #[error("a record of {len} bytes does not fit in a spool of at most {max_bytes} bytes")]
    TooLarge { len: u64, max_bytes: u64 },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError + use<> {
    let path = path.to_path_buf();
    move |source| SpoolError::Io { what, path, source }
}

/// Takes `dir/LOCK` (an exclusive `flock`, released when the file is closed): `None`
/// when another holder has it; on failure, what was being done.
pub(crate) fn lock_dir(dir: &Path) -> Result<Option<File>, (&'static str, io::Error)> {
    let path = dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ("open", e))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(("lock", e)),
    }
}

/// An open spool directory. See the module docs.
pub struct Spool {
    dir: PathBuf,
    options: SpoolOptions,
    /// Held for the spool's lifetime; the `flock` goes with it.
    _lock: File,
    head: Head,
    /// Every segment file from the head's on, opened for reading and appending.
    segments: BTreeMap<u64, File>,
    /// The segment appends go to, and its length.
    tail: Option<(u64, u64)>,
    pending: VecDeque<Entry>,
    pending_bytes: u64,
    dropped: u64,
    recovered_bytes: u64,
    frame: Vec<u8>,
    /// Where the pending bytes and records are shown (see [`Spool::report_to`]).
    gauges: Option<(Gauge, Gauge)>,
}

impl Spool {
    /// Open the spool in `dir` (created if missing), recovering from a crash: a torn
    /// record at a segment's end is truncated, every complete record is pending again
    /// unless it had been acknowledged.
    pub fn open(dir: impl AsRef<Path>, options: SpoolOptions) -> Result<Self, SpoolError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("create the directory", &dir))?;
        let lock = match lock_dir(&dir) {
            Ok(Some(lock)) => lock,
            Ok(None) => return Err(SpoolError::Locked { dir }),
            Err((what, e)) => return Err(io_err(what, &dir.join("LOCK"))(e)),
        };
        let head_path = dir.join("HEAD");
        let (head, stored) =
            Head::load(&head_path, options.fsync).map_err(io_err("read", &head_path))?;

        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let entry = entry.map_err(io_err("list", &dir))?;
            if let Some(id) = entry.file_name().to_str().and_then(segment::parse_name) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let start = stored.unwrap_or(Position {
            segment: ids.first().copied().unwrap_or(0),
            offset: 0,
        });

        let mut spool = Self {
            dir,
            options,
            _lock: lock,
            head,
            segments: BTreeMap::new(),
            tail: None,
            pending: VecDeque::new(),
            pending_bytes: 0,
            dropped: 0,
            recovered_bytes: 0,
            gauges: None,
            frame: Vec::new(),
        };
        for id in ids {
            let path = segment::path(&spool.dir, id);
            if id < start.segment {
                // Acknowledged entirely; a crash came between the ack and the delete.
                fs::remove_file(&path).map_err(io_err("delete", &path))?;
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&path)
                .map_err(io_err("open", &path))?;
            let scan = segment::scan(&file, id).map_err(io_err("read", &path))?;
            if scan.valid_len < scan.file_len {
                tracing::warn!(
                    "spool segment {}: cutting {} bytes of a record torn by a crash",
                    path.display(),
                    scan.file_len - scan.valid_len
                );
                file.set_len(scan.valid_len)
                    .and_then(|()| file.sync_all())
                    .map_err(io_err("truncate", &path))?;
                spool.recovered_bytes += scan.file_len - scan.valid_len;
            }
            for entry in scan.entries {
                if id > start.segment || entry.offset >= start.offset {
                    spool.pending_bytes += FRAME_HEADER + entry.len;
                    spool.pending.push_back(entry);
                }
            }
            spool.tail = Some((id, scan.valid_len));
            spool.segments.insert(id, file);
        }
        Ok(spool)
    }

    /// Add `record` at the end. With `fsync`, it is on disk when this returns.
    ///
    /// When it would pass `max_bytes`: [`SpoolError::Full`] (backpressure; nothing
    /// changed) or the oldest records are dropped (drop_oldest).
    pub fn append(&mut self, record: &[u8]) -> Result<(), SpoolError> {
        let len = record.len() as u64;
        let needed = FRAME_HEADER + len;
        if len > MAX_RECORD || needed > self.options.max_bytes {
            return Err(SpoolError::TooLarge {
                len,
                max_bytes: self.options.max_bytes,
            });
        }
        while self.pending_bytes + needed > self.options.max_bytes {
            match self.options.when_full {
                WhenFull::Backpressure => {
                    return Err(SpoolError::Full {
                        dir: self.dir.clone(),
                        pending: self.pending_bytes,
                        needed,
                        max_bytes: self.options.max_bytes,
                    });
                }
                WhenFull::DropOldest => {
                    self.pop_front()?;
                    self.dropped += 1;
                }
            }
        }
        let (id, offset) = self.writable_segment(needed)?;
        let path = segment::path(&self.dir, id);
        let file = self
            .segments
            .get_mut(&id)
            .expect("writable_segment opened the tail segment");
        self.frame.clear();
        self.frame.extend_from_slice(&segment::header(record));
        self.frame.extend_from_slice(record);
        let written = file.write_all(&self.frame).and_then(|()| {
            if self.options.fsync {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // Leave no partial frame behind for the next append to follow.
            let _ = file.set_len(offset);
            return Err(io_err("append to", &path)(e));
        }
        self.tail = Some((id, offset + needed));
        self.pending.push_back(Entry {
            segment: id,
            offset,
            len,
        });
        self.pending_bytes += needed;
        self.report();
        Ok(())
    }

    /// The oldest pending record, if any (read from disk and checked).
    pub fn peek(&self) -> Result<Option<Vec<u8>>, SpoolError> {
        self.pending.front().map(|e| self.read(e)).transpose()
    }

    /// Every pending record, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Result<Vec<u8>, SpoolError>> + '_ {
        self.pending.iter().map(|e| self.read(e))
    }

    /// Remove the oldest pending record (the server accepted it): it is never returned
    /// again. Returns false when nothing was pending.
    pub fn ack(&mut self) -> Result<bool, SpoolError> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        self.pop_front()?;
        Ok(true)
    }

    /// Number of pending records.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes of pending records, framing included (what `max_bytes` bounds).
    pub fn bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// Records deleted unsent by `drop_oldest` since this spool was opened.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes of torn records cut off when this spool was opened.
    pub fn recovered_bytes(&self) -> u64 {
        self.recovered_bytes
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keep `bytes` and `records` set to what is pending (what `smartgrid run --http`
    /// shows), from now on: updated per append and acknowledgement, which are per batch.
    pub fn report_to(&mut self, bytes: Gauge, records: Gauge) {
        self.gauges = Some((bytes, records));
        self.report();
    }

    fn report(&self) {
        if let Some((bytes, records)) = &self.gauges {
            bytes.set(i64::try_from(self.pending_bytes).unwrap_or(i64::MAX));
            records.set(i64::try_from(self.pending.len()).unwrap_or(i64::MAX));
        }
    }

    /// The options it was opened with.
    pub fn options(&self) -> &SpoolOptions {
        &self.options
    }

    fn read(&self, entry: &Entry) -> Result<Vec<u8>, SpoolError> {
        let path = segment::path(&self.dir, entry.segment);
        let file = self.segments.get(&entry.segment).ok_or_else(|| {
            io_err("read", &path)(io::Error::new(io::ErrorKind::NotFound, "segment not open"))
        })?;
        segment::read(file, entry).map_err(io_err("read", &path))
    }

    /// Drop the oldest pending record: move `HEAD` past it, delete segments left behind.
    fn pop_front(&mut self) -> Result<(), SpoolError> {
        let Some(gone) = self.pending.pop_front() else {
            return Ok(());
        };
        let next = match self.pending.front() {
            Some(e) => Position {
                segment: e.segment,
                offset: e.offset,
            },
            None => Position {
                segment: gone.segment,
                offset: gone.end(),
            },
        };
        let head_path = self.dir.join("HEAD");
        self.head.store(next).map_err(io_err("write", &head_path))?;
        self.pending_bytes -= FRAME_HEADER + gone.len;
        self.report();
        while let Some((&id, _)) = self.segments.first_key_value() {
            if id >= next.segment {
                break;
            }
            self.segments.remove(&id);
            let path = segment::path(&self.dir, id);
            fs::remove_file(&path).map_err(io_err("delete", &path))?;
        }
        Ok(())
    }

    /// The segment a frame of `needed` bytes goes to and the offset it starts at,
    /// starting a new segment when the current one is full.
    fn writable_segment(&mut self, needed: u64) -> Result<(u64, u64), SpoolError> {
        match self.tail {
            Some((id, len)) if len == 0 || len + needed <= self.options.segment_bytes => {
                Ok((id, len))
            }
            tail => {
                let id = tail.map_or(1, |(id, _)| id + 1);
                let path = segment::path(&self.dir, id);
                let file = OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(io_err("create", &path))?;
                if self.options.fsync {
                    File::open(&self.dir)
                        .and_then(|d| d.sync_all())
                        .map_err(io_err("sync", &self.dir))?;
                }
                self.segments.insert(id, file);
                self.tail = Some((id, 0));
                Ok((id, 0))
            }
        }
    }
}
