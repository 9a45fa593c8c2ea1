//! The `HEAD` file: where the oldest unacknowledged record starts.
//!
//! Two 32-byte slots, written alternately, each `[seq u64][segment u64][offset u64]
//! [crc32 u32][0u32]`. A write touches only the older slot, so a torn write leaves the
//! newer one intact; [`Head::load`] takes the valid slot with the highest `seq`.
//! Rewriting a slot in place costs one small `pwrite` per acknowledgement (no rename).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const SLOT: u64 = 32;

/// A position in the spool: the frame at `offset` of segment `segment`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// The open `HEAD` file.
pub struct Head {
    file: File,
    seq: u64,
    fsync: bool,
}

fn encode(seq: u64, pos: Position) -> [u8; SLOT as usize] {
    let mut b = [0u8; SLOT as usize];
    b[..8].copy_from_slice(&seq.to_le_bytes());
    b[8..16].copy_from_slice(&pos.segment.to_le_bytes());
    b[16..24].copy_from_slice(&pos.offset.to_le_bytes());
    let crc = crc32fast::hash(&b[..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<(u64, Position)> {
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let crc = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
    if crc32fast::hash(&b[..24]) != crc || word(0) == 0 {
        return None;
    }
    Some((
        word(0),
        Position {
            segment: word(8),
            offset: word(16),
        },
    ))
}

impl Head {
    /// Open (or create) `path`; the recorded position, or `None` for a new spool.
    pub fn load(path: &Path, fsync: bool) -> io::Result<(Self, Option<Position>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = [0u8; 2 * SLOT as usize];
        let len = file.metadata()?.len().min(2 * SLOT) as usize;
        file.read_exact_at(&mut bytes[..len], 0)?;
        let best = bytes
            .chunks_exact(SLOT as usize)
            .filter_map(decode)
            .max_by_key(|(seq, _)| *seq);
        let seq = best.map_or(0, |(seq, _)| seq);
        Ok((Self { file, seq, fsync }, best.map(|(_, pos)| pos)))
    }

    /// Record `pos` as the oldest unacknowledged record.
    pub fn store(&mut self, pos: Position) -> io::Result<()> {
        self.seq += 1;
        let slot = self.seq % 2;
        self.file
            .write_all_at(&encode(self.seq, pos), slot * SLOT)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}
