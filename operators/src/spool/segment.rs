//! Segment files: append-only sequences of framed records.
//!
//! A record is `[len: u32 LE][crc32(payload): u32 LE][payload]`. A crash can leave a
//! torn record at the end of the last segment (a short frame, or a payload whose CRC
//! does not match); [`scan`] stops at the first such frame and reports where the valid
//! prefix ends, so the caller can truncate there.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// Bytes in front of each payload.
pub const FRAME_HEADER: u64 = 8;

/// The largest payload a frame can describe (the length field is a `u32`).
pub const MAX_RECORD: u64 = u32::MAX as u64;

const SUFFIX: &str = ".seg";

/// The file name of segment `id`: zero-padded, so names sort like ids.
pub fn file_name(id: u64) -> String {
    format!("{id:020}{SUFFIX}")
}

/// The id of a segment file name, `None` for other files.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The path of segment `id` in `dir`.
pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(file_name(id))
}

/// The frame header of `payload`.
pub fn header(payload: &[u8]) -> [u8; FRAME_HEADER as usize] {
    let mut h = [0u8; FRAME_HEADER as usize];
    // The caller checked `payload.len() <= MAX_RECORD`.
    h[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    h
}

/// Where a record's payload lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub segment: u64,
    /// Offset of the frame header in the segment.
    pub offset: u64,
    /// Payload length.
    pub len: u64,
}

impl Entry {
    /// Offset just past this record.
    pub fn end(&self) -> u64 {
        self.offset + FRAME_HEADER + self.len
    }
}

/// The result of reading a segment from the start.
pub struct Scan {
    pub entries: Vec<Entry>,
    /// Length of the valid prefix; anything after it is a torn or corrupt tail.
    pub valid_len: u64,
    pub file_len: u64,
}

/// Read every complete, CRC-valid record of a segment, in order.
pub fn scan(file: &File, segment: u64) -> io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut entries = Vec::new();
    let mut offset = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut h = [0u8; FRAME_HEADER as usize];
        if offset + FRAME_HEADER > file_len || reader.read_exact(&mut h).is_err() {
            break;
        }
        let len = u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if offset + FRAME_HEADER + len > file_len {
            break;
        }
        payload.resize(len as usize, 0);
        if reader.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        entries.push(Entry {
            segment,
            offset,
            len,
        });
        offset += FRAME_HEADER + len;
    }
    Ok(Scan {
        entries,
        valid_len: offset,
        file_len,
    })
}

/// Read and check the payload of `entry`.
pub fn read(file: &File, entry: &Entry) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; (FRAME_HEADER + entry.len) as usize];
    file.read_exact_at(&mut buf, entry.offset)?;
    let len = u64::from(u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]));
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let payload = buf.split_off(FRAME_HEADER as usize);
    if len != entry.len || crc32fast::hash(&payload) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "record at offset {} of segment {} changed on disk (CRC mismatch)",
                entry.offset, entry.segment
            ),
        ));
    }
    Ok(payload)
}
