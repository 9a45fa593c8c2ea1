//! The records that flow through a pipeline.
//!
//! Two kinds of stream exist: raw [`Message`]s as a transport delivered them, and
//! [`Reading`]s: one sensor's values at one event time, as a dense row of `f64` whose
//! field names are fixed by the plan's [`Schema`](crate::schema::Schema). Neither holds a
//! per-record map or heap string, so the hot path does not allocate per record.

use std::fmt;
use std::sync::Arc;

use arrayvec::ArrayVec;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The most values one reading may carry. A Clemap one-minute record (type 17) has 22
/// numeric fields; the largest window output adds a count. A plan with a wider schema is
/// refused at validation.
pub const MAX_FIELDS: usize = 32;

/// A dense row of values, in the order of the stream's schema.
pub type Row = ArrayVec<f64, MAX_FIELDS>;

/// The longest sensor key, in bytes: a Clemap ObjectId shown as 24 hex characters.
pub const SENSOR_ID_MAX: usize = 24;

/// A sensor's key: up to [`SENSOR_ID_MAX`] bytes of text, stored inline so it is `Copy`
/// and hashing it touches no heap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SensorId {
    len: u8,
    bytes: [u8; SENSOR_ID_MAX],
}

/// A sensor id longer than [`SENSOR_ID_MAX`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sensor id is {0} bytes long; at most 24 are allowed")]
pub struct SensorIdTooLong(pub usize);

impl SensorId {
    /// A sensor id from text (a name, or an ObjectId already in hex).
    pub fn new(text: &str) -> Result<Self, SensorIdTooLong> {
        let src = text.as_bytes();
        if src.len() > SENSOR_ID_MAX {
            return Err(SensorIdTooLong(src.len()));
        }
        let mut bytes = [0u8; SENSOR_ID_MAX];
        bytes[..src.len()].copy_from_slice(src);
        Ok(SensorId {
            len: src.len() as u8,
            bytes,
        })
    }

    /// A 12-byte ObjectId, shown as 24 lowercase hex characters (as the seed decoder did).
    pub fn from_object_id(id: &[u8; 12]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0u8; SENSOR_ID_MAX];
        for (i, b) in id.iter().enumerate() {
            bytes[2 * i] = HEX[usize::from(b >> 4)];
            bytes[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        SensorId { len: 24, bytes }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only `new` (from a `&str`) and `from_object_id` (ASCII hex) build a SensorId,
        // so the bytes are always valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)])
            .expect("SensorId holds UTF-8 by construction")
    }

    /// A stable hash, the same on every worker and process, used to route a sensor to
    /// the worker that owns it.
    pub fn route_hash(&self) -> u64 {
        // FNV-1a: tiny, stable across builds (unlike `DefaultHasher`'s seed-free but
        // unspecified algorithm), and good enough to spread sensor ids.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in &self.bytes[..usize::from(self.len)] {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
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
    fn too_long_names_are_refused() {
        assert_eq!(
            SensorId::new("abcdefghijklmnopqrstuvwxyz"),
            Err(SensorIdTooLong(26))
        );
        assert_eq!(SensorId::new("meter-7").map(|s| s.to_string()).as_deref(), Ok("meter-7"));
    }
}
