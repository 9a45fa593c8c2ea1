//! `format: struct`: any fixed-size binary record, described field by field in the
//! pipeline file, so a new device needs no code. The same idea as the seed's
//! `mqtt_msg_format.json` (Python `struct` layouts), written in YAML:
//!
//! ```yaml
//! format: struct
//! byte_order: little            # little (default) | big
//! fields:                       # in payload order, no implicit padding
//!   - { name: kind, type: u8, role: skip }
//!   - { name: ts,   type: f64, role: timestamp, unit: s }
//!   - { name: id,   type: bytes, len: 12, role: sensor_id, encoding: hex }
//!   - { name: phase, type: u8 }
//!   - { name: p_l1, type: i64, divide_by: 1000 }
//!   - { type: pad, len: 2 }       # bytes to ignore
//! match: { field: kind, value: 16 }   # optional: decode these, skip the others
//! ```
//!
//! A payload must be exactly as long as the layout (`truncated` / `extra` otherwise),
//! except that a payload whose `match` field holds another value is skipped before its
//! length is checked (other message types may have other lengths). The row holds the
//! `role: field` values in layout order, as `f64`; `divide_by` gives Python's
//! `value / divide_by` bit for bit (an integral divisor divides integers exactly, like
//! `int / int`). A NaN or infinite value is refused (`non_finite`).
//!
//! The layout is compiled once into offsets; decoding allocates nothing.

use serde::Deserialize;

use wire::Num;

use super::TimeUnit;

mod decoder;
mod wire;

pub use decoder::StructDecoder;

/// The settings of `format: struct`: a binary record's layout.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StructConfig {
    /// Byte order of multi-byte numbers: `little` (the default; Clemap and x86) or `big`
    /// (network order).
    #[serde(default)]
    pub byte_order: ByteOrder,
    /// The payload's fields, in order, without implicit padding (use `type: pad` for gaps).
    /// Their sizes add up to the exact payload length. Exactly one field has
    /// `role: timestamp`; one has `role: sensor_id` unless `sensor_id_from_topic` is set.
    pub fields: Vec<FieldConfig>,
    /// Only decode payloads whose integer field `field` equals `value`; others are skipped
    /// (counted, not errors). Typically a message-type byte with `role: skip`.
    #[serde(default, rename = "match")]
    pub select: Option<MatchConfig>,
    /// Take the sensor id from this level of the MQTT topic (0-based, `/`-separated)
    /// instead of from a field: with `data/realtime/feature/+`, `3` is the `+`.
    #[serde(default)]
    pub sensor_id_from_topic: Option<usize>,
}

/// Byte order of multi-byte numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ByteOrder {
    /// Least significant byte first (the default).
    #[default]
    Little,
    /// Most significant byte first.
    Big,
}

/// One field of a binary layout.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// The field's name: the row column for `role: field`, and how `match` and error
    /// messages refer to it. Required except for `type: pad`; unique.
    #[serde(default)]
    pub name: Option<String>,
    /// The wire type: `u8`, `i8`, `u16`, `i16`, `u32`, `i32`, `u64`, `i64` (integers),
    /// `f32`, `f64` (IEEE floats), `bytes` (`len` raw bytes) or `pad` (`len` ignored bytes).
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Size in bytes, for `bytes` and `pad` only (required there).
    #[serde(default)]
    pub len: Option<usize>,
    /// What the field is: `field` (the default: a value of the row), `timestamp` (the
    /// event time; a number), `sensor_id` (the reading's key: `bytes`, or an integer shown
    /// in decimal) or `skip` (read but not kept, e.g. a message type for `match`; alias
    /// `selector`).
    #[serde(default)]
    pub role: Option<Role>,
    /// For `role: timestamp`: the number's unit, `s` (the default; may be fractional),
    /// `ms` or `us`. Event times are whole ms, rounded to the nearest.
    #[serde(default)]
    pub unit: Option<TimeUnit>,
    /// For a `bytes` sensor id: `hex` (the default; lowercase, 2 characters a byte, at
    /// most 12 bytes, e.g. a 12-byte ObjectId) or `utf8` (text of at most 24 bytes;
    /// trailing NUL bytes are dropped).
    #[serde(default)]
    pub encoding: Option<IdEncoding>,
    /// For `role: field`: the row holds `value / divide_by` (e.g. `1000` for values sent
    /// in milli-units). A finite, non-zero number.
    #[serde(default)]
    pub divide_by: Option<f64>,
}

/// The wire type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 16-bit integer.
    U16,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 32-bit integer.
    U32,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 64-bit integer.
    U64,
    /// Signed 64-bit integer.
    I64,
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// `len` raw bytes.
    Bytes,
    /// `len` bytes to ignore.
    Pad,
}

impl FieldType {
    /// The numeric type, if this is one.
    fn num(self) -> Option<Num> {
        Some(match self {
            FieldType::U8 => Num::U8,
            FieldType::I8 => Num::I8,
            FieldType::U16 => Num::U16,
            FieldType::I16 => Num::I16,
            FieldType::U32 => Num::U32,
            FieldType::I32 => Num::I32,
            FieldType::U64 => Num::U64,
            FieldType::I64 => Num::I64,
            FieldType::F32 => Num::F32,
            FieldType::F64 => Num::F64,
            FieldType::Bytes | FieldType::Pad => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            FieldType::U8 => "u8",
            FieldType::I8 => "i8",
            FieldType::U16 => "u16",
            FieldType::I16 => "i16",
            FieldType::U32 => "u32",
            FieldType::I32 => "i32",
            FieldType::U64 => "u64",
            FieldType::I64 => "i64",
            FieldType::F32 => "f32",
            FieldType::F64 => "f64",
            FieldType::Bytes => "bytes",
            FieldType::Pad => "pad",
        }
    }
}

/// What a field is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A value of the row (the default).
    Field,
    /// The event time.
    Timestamp,
    /// The reading's key.
    SensorId,
    /// Read, not kept (for `match`, checksums, reserved values…).
    #[serde(alias = "selector")]
    Skip,
}

/// How a `bytes` sensor id becomes text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IdEncoding {
    /// Lowercase hex, two characters a byte (at most 12 bytes).
    #[default]
    Hex,
    /// UTF-8 text, trailing NULs dropped (at most 24 bytes).
    Utf8,
}

/// `match: { field: kind, value: 16 }`: which payloads a layout applies to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// The name of an integer field (often `role: skip`).
    pub field: String,
    /// The value it must hold; payloads with another value are skipped.
    pub value: i64,
}

#[cfg(test)]
mod tests;
