//! The records that flow through a pipeline.
//!
//! Two kinds of stream exist: raw [`Message`]s as a transport delivered them, and
//! [`Reading`]s: one sensor's values at one event time, as a dense row of `f64` whose
//! field names are fixed by the plan's [`Schema`](crate::schema::Schema). Neither holds a
//! per-record map or heap string, so the hot path does not allocate per record.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// The most values one reading may carry (a Clemap one-minute record, type 17, has 25
/// plus a window's count). A plan with a wider schema is refused at validation.
pub const MAX_FIELDS: usize = 32;

/// Values a row holds without a heap allocation: every type-16 reading (7 fields) and
/// its window means (8). Wider rows (type 17) spill to the heap. Keeping the inline part
/// small keeps a [`Reading`] at 120 bytes, which is what the hot path copies.
pub const INLINE_FIELDS: usize = 8;

/// A dense row of values, in the order of the stream's schema.
#[derive(Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Row(SmallVec<[f64; INLINE_FIELDS]>);

/// One copy of the values: `SmallVec`'s own `clone` goes through a generic `extend`,
/// and a stream read by two operators clones every row.
impl Clone for Row {
    #[inline]
    fn clone(&self) -> Self {
        Row(SmallVec::from_slice(&self.0))
    }
}

/// A row already holds [`MAX_FIELDS`] values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a row holds at most {MAX_FIELDS} values")]
pub struct RowFull;

impl Row {
    /// An empty row.
    #[inline]
    pub fn new() -> Self {
        Row(SmallVec::new())
    }

    /// Append a value, up to [`MAX_FIELDS`].
    #[inline]
    pub fn try_push(&mut self, value: f64) -> Result<(), RowFull> {
        if self.0.len() >= MAX_FIELDS {
            return Err(RowFull);
        }
        self.0.push(value);
        Ok(())
    }

    /// Append values, all or none, up to [`MAX_FIELDS`] in all.
    #[inline]
    pub fn try_extend_from_slice(&mut self, values: &[f64]) -> Result<(), RowFull> {
        if self.0.len() + values.len() > MAX_FIELDS {
            return Err(RowFull);
        }
        if self.0.is_empty() && !self.0.spilled() {
            // How decoders fill a fresh row: one copy into the inline buffer, without
            // `extend_from_slice`'s general insert.
            self.0 = SmallVec::from_slice(values);
        } else {
            self.0.extend_from_slice(values);
        }
        Ok(())
    }

    /// Append a value. Operators that add one field to a schema the plan has checked
    /// (a window's count) use this; the plan refuses schemas wider than [`MAX_FIELDS`].
    #[inline]
    pub fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    /// Remove every value.
    #[inline]
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The values.
    #[inline]
    pub fn as_slice(&self) -> &[f64] {
        &self.0
    }
}

impl std::ops::Deref for Row {
    type Target = [f64];
    #[inline]
    fn deref(&self) -> &[f64] {
        &self.0
    }
}

impl std::ops::DerefMut for Row {
    #[inline]
    fn deref_mut(&mut self) -> &mut [f64] {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a Row {
    type Item = &'a f64;
    type IntoIter = std::slice::Iter<'a, f64>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<f64> for Row {
    fn from_iter<I: IntoIterator<Item = f64>>(iter: I) -> Self {
        Row(iter.into_iter().collect())
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

/// The longest sensor key, in bytes: a Clemap ObjectId shown as 24 hex characters.
pub const SENSOR_ID_MAX: usize = 24;

/// Four bytes as eight lowercase hex digits, in order, as one little-endian word: each
/// byte's nibbles are spread into their own bytes and offset to `0-9` or `a-f`.
#[inline]
fn hex8(four: [u8; 4]) -> [u8; 8] {
    // Byte k of `four` goes to bytes 2k (high nibble) and 2k+1 (low nibble).
    let mut x = u64::from(u32::from_le_bytes(four));
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    let nibbles = ((x >> 4) & 0x000f_000f_000f_000f) | ((x & 0x000f_000f_000f_000f) << 8);
    // 0x06 added to a nibble carries into bit 4 exactly when it is 10..=15.
    let letters = ((nibbles + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (nibbles + 0x3030_3030_3030_3030 + letters * (b'a' - b'0' - 10) as u64).to_le_bytes()
}

/// A sensor's key: up to [`SENSOR_ID_MAX`] bytes of text, stored inline so it is `Copy`
/// and hashing it touches no heap. Its hash is computed once, when the id is made:
/// every keyed operator hashes each reading's sensor, so that is the hot path.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct SensorId {
    hash: u64,
    len: u8,
    bytes: [u8; SENSOR_ID_MAX],
}

/// A sensor id longer than [`SENSOR_ID_MAX`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sensor id is {0} bytes long; at most 24 are allowed")]
pub struct SensorIdTooLong(pub usize);

impl SensorId {
    fn from_parts(len: u8, bytes: [u8; SENSOR_ID_MAX]) -> Self {
        SensorId {
            hash: stable_hash(len, &bytes),
            len,
            bytes,
        }
    }

    /// A sensor id from text (a name, or an ObjectId already in hex).
    pub fn new(text: &str) -> Result<Self, SensorIdTooLong> {
        let src = text.as_bytes();
        if src.len() > SENSOR_ID_MAX {
            return Err(SensorIdTooLong(src.len()));
        }
        let mut bytes = [0u8; SENSOR_ID_MAX];
        bytes[..src.len()].copy_from_slice(src);
        Ok(Self::from_parts(src.len() as u8, bytes))
    }

    /// A 12-byte ObjectId, shown as 24 lowercase hex characters (as the seed decoder did).
    #[inline]
    pub fn from_object_id(id: &[u8; 12]) -> Self {
        let mut bytes = [0u8; SENSOR_ID_MAX];
        for (hex, four) in bytes.chunks_exact_mut(8).zip(id.chunks_exact(4)) {
            // Chunks of exactly 4 bytes, by `chunks_exact`.
            hex.copy_from_slice(&hex8(four.try_into().expect("4 bytes")));
        }
        Self::from_parts(24, bytes)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only `new` (from a `&str`) and `from_object_id` (ASCII hex) build a SensorId,
        // so the bytes are always valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)])
            .expect("SensorId holds UTF-8 by construction")
    }

    /// A stable hash, the same on every worker, process and build, used to route a
    /// sensor to the worker that owns it.
    #[inline]
    pub fn route_hash(&self) -> u64 {
        self.hash
    }
}

/// A stable hash of an id's bytes: its three 8-byte words and its length, combined with
/// folded 64×64→128-bit multiplies (as foldhash does): two independent products and one
/// to mix them. `DefaultHasher` is neither stable across builds nor this cheap, and
/// every reading's sensor is hashed once when it is decoded.
fn stable_hash(len: u8, bytes: &[u8; SENSOR_ID_MAX]) -> u64 {
    // Digits of pi: arbitrary constants with no structure.
    const K: [u64; 4] = [
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    ];
    let word = |i: usize| {
        u64::from_le_bytes(
            bytes[8 * i..8 * i + 8]
                .try_into()
                .expect("three words in 24 bytes"),
        )
    };
    let a = folded_multiply(word(0) ^ K[0], word(1) ^ K[1]);
    let b = folded_multiply(word(2) ^ K[2], u64::from(len) ^ K[3]);
    folded_multiply(a ^ K[3], b ^ K[0])
}

/// The 128-bit product of `a` and `b`, its halves xored.
#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

impl PartialEq for SensorId {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.len == other.len && self.bytes == other.bytes
    }
}

impl Eq for SensorId {}

impl std::hash::Hash for SensorId {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for SensorId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Ids sort by their text, so output sorted by sensor reads naturally.
impl Ord for SensorId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Display for SensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SensorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SensorId({})", self.as_str())
    }
}

/// One sensor's values at one event time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Which sensor.
    pub sensor: SensorId,
    /// Event time, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Values in the order of the stream's schema.
    pub values: Row,
}

/// A raw payload as a transport delivered it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The MQTT topic (or the source's name for sources without topics).
    pub topic: Arc<str>,
    /// The payload bytes; a cheap reference-counted slice.
    pub payload: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_id_hex_is_lowercase_and_24_chars() {
        let id = SensorId::from_object_id(&[
            0x41, 0x1e, 0x7e, 0xc2, 0x73, 0x78, 0xa6, 0x61, 0xc9, 0x35, 0x18, 0x7c,
        ]);
        assert_eq!(id.as_str(), "411e7ec27378a661c935187c");
    }

    #[test]
    fn a_reading_stays_small_and_rows_stop_at_the_limit() {
        assert!(
            std::mem::size_of::<Reading>() <= 120,
            "{}",
            std::mem::size_of::<Reading>()
        );
        let mut row = Row::new();
        for i in 0..MAX_FIELDS {
            row.try_push(i as f64).expect("room");
        }
        assert_eq!(row.try_push(0.0), Err(RowFull));
        assert_eq!(row.try_extend_from_slice(&[1.0]), Err(RowFull));
        assert_eq!(row.len(), MAX_FIELDS);
    }

    #[test]
    fn every_byte_value_shows_as_its_two_hex_digits() {
        // Over the 256 ids, every byte value appears at every position.
        for b in 0..=255u8 {
            let raw: [u8; 12] = std::array::from_fn(|i| b.wrapping_add((37 * i) as u8));
            let expected: String = raw.iter().map(|x| format!("{x:02x}")).collect();
            assert_eq!(SensorId::from_object_id(&raw).as_str(), expected);
        }
    }

    #[test]
    fn the_same_id_made_two_ways_is_equal_and_hashes_alike() {
        let raw = [
            0x41, 0x1e, 0x7e, 0xc2, 0x73, 0x78, 0xa6, 0x61, 0xc9, 0x35, 0x18, 0x7c,
        ];
        let a = SensorId::from_object_id(&raw);
        let b = SensorId::new("411e7ec27378a661c935187c").expect("24 chars");
        assert_eq!(a, b);
        assert_eq!(a.route_hash(), b.route_hash());
        assert_ne!(
            a.route_hash(),
            SensorId::new("411e7ec27378a661c935187d")
                .expect("24")
                .route_hash()
        );
        assert!(SensorId::new("a").expect("1") < SensorId::new("b").expect("1"));
    }

    #[test]
    fn route_hashes_spread_similar_names_evenly_over_workers() {
        for peers in [2u64, 3, 8] {
            let mut per_worker = vec![0u32; peers as usize];
            for i in 0..4_000 {
                let id = SensorId::new(&format!("meter-{i}")).expect("short");
                per_worker[(id.route_hash() % peers) as usize] += 1;
            }
            let fair = 4_000 / peers as u32;
            for n in per_worker {
                assert!(
                    n.abs_diff(fair) < fair / 10,
                    "{peers} workers: {n} of {fair}"
                );
            }
        }
    }

    #[test]
    fn too_long_names_are_refused() {
        assert_eq!(
            SensorId::new("abcdefghijklmnopqrstuvwxyz"),
            Err(SensorIdTooLong(26))
        );
        assert_eq!(
            SensorId::new("meter-7").map(|s| s.to_string()).as_deref(),
            Ok("meter-7")
        );
    }
}
