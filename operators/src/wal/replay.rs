//! Reading a log back from a position.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use super::WalError;
use crate::spool::segment::FRAME_HEADER;

/// A segment to read: its first position, the position after its last record, and a
/// file handle of its own (a truncation may delete the file while it is read).
pub(super) struct Source {
    pub first: u64,
    pub end: u64,
    pub file: File,
    pub path: PathBuf,
}

/// The records of a log from a position to where it ended when the replay was made,
/// as `(position, bytes)`, in order.
///
/// A record that cannot be read back (a segment that ends early or a CRC mismatch:
/// the disk lost data the log had synced) is skipped with a warning and counted by
/// [`lost`](Self::lost); the rest of its segment goes with it, since the frames after
/// a damaged one cannot be found. An I/O error ends the replay.
pub struct Replay {
    segments: VecDeque<Source>,
    reading: Option<Reading>,
    position: u64,
    end: u64,
    lost: u64,
    payload: Vec<u8>,
}

struct Reading {
    reader: BufReader<File>,
    end: u64,
    path: PathBuf,
}

impl Replay {
    pub(super) fn new(segments: Vec<Source>, from: u64, end: u64) -> Self {
        Replay {
            segments: segments.into(),
            reading: None,
            position: from,
            end,
            lost: 0,
            payload: Vec::new(),
        }
    }

    /// Records not read yet.
    pub fn remaining(&self) -> u64 {
        self.end - self.position
    }

    /// The position of the next record (the end once every record was read).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The position after the last record.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Records skipped because they could not be read back.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Opens the next segment and skips to `position` in it.
    fn open_next(&mut self) -> Result<(), WalError> {
        let Some(source) = self.segments.pop_front() else {
            self.skip_to(self.end, "the log ends");
            return Ok(());
        };
        if source.first > self.position {
            self.skip_to(source.first, "a segment is missing");
        }
        let mut reader = BufReader::with_capacity(256 << 10, source.file);
        let mut at = source.first;
        let mut header = [0u8; FRAME_HEADER as usize];
        while at < self.position {
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.skip_to(source.end, "a segment ends early");
                    return Ok(());
                }
                Err(e) => return Err(read_error(&source.path, e)),
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            reader
                .seek_relative(i64::from(len))
                .map_err(|e| read_error(&source.path, e))?;
            at += 1;
        }
        self.reading = Some(Reading {
            reader,
            end: source.end,
            path: source.path,
        });
        Ok(())
    }

    /// Gives up the records up to `to`, counted as lost.
    fn skip_to(&mut self, to: u64, why: &str) {
        if to > self.position {
            tracing::warn!(
                "write-ahead log: records {}..{to} cannot be read back ({why}); they are skipped",
                self.position
            );
            self.lost += to - self.position;
            self.position = to;
        }
        self.reading = None;
    }

    fn read_one(&mut self) -> Result<Option<(u64, Vec<u8>)>, WalError> {
        loop {
            if self.position >= self.end {
                return Ok(None);
            }
            let Some(reading) = self.reading.as_mut() else {
                self.open_next()?;
                continue;
            };
            if self.position >= reading.end {
                self.reading = None;
                continue;
            }
            let mut header = [0u8; FRAME_HEADER as usize];
            let read = reading.reader.read_exact(&mut header).and_then(|()| {
                let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
                self.payload.resize(len as usize, 0);
                reading.reader.read_exact(&mut self.payload)
            });
            match read {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    let end = reading.end;
                    self.skip_to(end, "a segment ends early");
                    continue;
                }
                Err(e) => return Err(read_error(&reading.path, e)),
            }
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            if crc32fast::hash(&self.payload) != crc {
                let end = reading.end;
                self.skip_to(end, "a record's checksum does not match");
                continue;
            }
            let position = self.position;
            self.position += 1;
            return Ok(Some((position, std::mem::take(&mut self.payload))));
        }
    }
}

fn read_error(path: &std::path::Path, source: io::Error) -> WalError {
    WalError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    }
}

impl Iterator for Replay {
    type Item = Result<(u64, Vec<u8>), WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.read_one() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => None,
            Err(e) => {
                // One error ends it: the position is unknown past a failed read.
                self.position = self.end;
                Some(Err(e))
            }
        }
    }
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("position", &self.position)
            .field("end", &self.end)
            .field("lost", &self.lost)
            .finish()
    }
}
