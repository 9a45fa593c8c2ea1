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
use smartgrid_runtime::record::{MAX_FIELDS, Row, SensorId};
use smartgrid_runtime::schema::Schema;

use super::{
    DecodeError, Decoded, MAX_EXACT_INT, PayloadDecoder, TimeUnit, bytes_at, div_exact_i64,
    div_exact_u64, float_time_ms, int_time_ms, sensor_from_int, sensor_from_topic,
};

/// The settings of `format: struct`: a binary record's layout.
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ByteOrder {
    /// Least significant byte first (the default).
    #[default]
    Little,
    /// Most significant byte first.
    Big,
}

/// One field of a binary layout.
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdEncoding {
    /// Lowercase hex, two characters a byte (at most 12 bytes).
    #[default]
    Hex,
    /// UTF-8 text, trailing NULs dropped (at most 24 bytes).
    Utf8,
}

/// `match: { field: kind, value: 16 }`: which payloads a layout applies to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// The name of an integer field (often `role: skip`).
    pub field: String,
    /// The value it must hold; payloads with another value are skipped.
    pub value: i64,
}

/// A numeric wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Num {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl Num {
    fn size(self) -> usize {
        match self {
            Num::U8 | Num::I8 => 1,
            Num::U16 | Num::I16 => 2,
            Num::U32 | Num::I32 | Num::F32 => 4,
            Num::U64 | Num::I64 | Num::F64 => 8,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Num::F32 | Num::F64)
    }

    /// The range of an integer type.
    fn int_range(self) -> (i128, i128) {
        match self {
            Num::U8 => (0, u8::MAX.into()),
            Num::I8 => (i8::MIN.into(), i8::MAX.into()),
            Num::U16 => (0, u16::MAX.into()),
            Num::I16 => (i16::MIN.into(), i16::MAX.into()),
            Num::U32 => (0, u32::MAX.into()),
            Num::I32 => (i32::MIN.into(), i32::MAX.into()),
            Num::U64 => (0, u64::MAX.into()),
            Num::I64 | Num::F32 | Num::F64 => (i64::MIN.into(), i64::MAX.into()),
        }
    }
}

/// A number as read.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Raw {
    Int(i64),
    UInt(u64),
    Float(f64),
}

/// Read a number of type `num` at `at` (the payload's length is checked first).
#[inline(always)]
fn read(p: &[u8], at: usize, num: Num, big: bool) -> Raw {
    macro_rules! rd {
        ($t:ty) => {{
            let b = bytes_at(p, at);
            if big {
                <$t>::from_be_bytes(b)
            } else {
                <$t>::from_le_bytes(b)
            }
        }};
    }
    match num {
        Num::U8 => Raw::UInt(rd!(u8).into()),
        Num::I8 => Raw::Int(rd!(i8).into()),
        Num::U16 => Raw::UInt(rd!(u16).into()),
        Num::I16 => Raw::Int(rd!(i16).into()),
        Num::U32 => Raw::UInt(rd!(u32).into()),
        Num::I32 => Raw::Int(rd!(i32).into()),
        Num::U64 => Raw::UInt(rd!(u64)),
        Num::I64 => Raw::Int(rd!(i64)),
        Num::F32 => Raw::Float(rd!(f32).into()),
        Num::F64 => Raw::Float(rd!(f64)),
    }
}

/// How a value is scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scale {
    /// Not at all.
    One,
    /// By an integral divisor in `2..=2^53`: integers divide exactly (Python `int / int`).
    Int(u64),
    /// By any other divisor (Python `int / float`: the integer is rounded to `f64` first).
    Float(f64),
}

impl Scale {
    #[inline(always)]
    fn apply(self, raw: Raw) -> f64 {
        match (raw, self) {
            (Raw::Int(v), Scale::One) => v as f64,
            (Raw::UInt(v), Scale::One) => v as f64,
            (Raw::Float(v), Scale::One) => v,
            (Raw::Int(v), Scale::Int(d)) => div_exact_i64(v, d),
            (Raw::UInt(v), Scale::Int(d)) => div_exact_u64(v, d),
            (Raw::Float(v), Scale::Int(d)) => v / d as f64,
            (Raw::Int(v), Scale::Float(d)) => v as f64 / d,
            (Raw::UInt(v), Scale::Float(d)) => v as f64 / d,
            (Raw::Float(v), Scale::Float(d)) => v / d,
        }
    }
}

/// One value of the row.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RowStep {
    at: usize,
    num: Num,
    scale: Scale,
}

/// Where the sensor id comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum SensorSource {
    Hex { at: usize, len: usize },
    Utf8 { at: usize, len: usize },
    Int { at: usize, num: Num },
    Topic(usize),
}

/// A compiled `format: struct` layout.
#[derive(Clone, Debug, PartialEq)]
pub struct StructDecoder {
    big: bool,
    len: usize,
    /// Row field names, in row order.
    names: Vec<String>,
    row: Vec<RowStep>,
    time_at: usize,
    time_num: Num,
    time_unit: TimeUnit,
    time_name: String,
    sensor: SensorSource,
    /// `(offset, type, value)` of the `match` field.
    select: Option<(usize, Num, i128)>,
}

impl StructDecoder {
    /// Check a layout and compile it. The message names the field at fault.
    pub fn new(config: &StructConfig) -> Result<Self, String> {
        if config.fields.is_empty() {
            return Err("`fields` is empty: list the payload's fields in order".into());
        }
        let mut offset = 0usize;
        let mut names: Vec<String> = Vec::new();
        let mut row = Vec::new();
        let mut time: Option<(String, usize, Num, TimeUnit)> = None;
        let mut sensor = config.sensor_id_from_topic.map(SensorSource::Topic);
        // Every named field's offset and type, for `match`.
        let mut seen: Vec<(&str, usize, FieldType)> = Vec::new();

        for (i, f) in config.fields.iter().enumerate() {
            let label = match &f.name {
                Some(name) => format!("fields[{i}] `{name}`"),
                None => format!("fields[{i}]"),
            };
            let ty = f.ty;
            let size = match (ty.num(), f.len) {
                (Some(num), None) => num.size(),
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{label}: `len` is only for `bytes` and `pad`; a {} has a fixed size",
                        ty.name()
                    ));
                }
                (None, Some(0)) | (None, None) => {
                    return Err(format!(
                        "{label}: a `{}` field needs `len` (its size in bytes, at least 1)",
                        ty.name()
                    ));
                }
                (None, Some(len)) => len,
            };
            let at = offset;
            offset = offset
                .checked_add(size)
                .ok_or_else(|| format!("{label}: the layout is too long"))?;

            if ty == FieldType::Pad {
                if f.role.is_some()
                    || f.unit.is_some()
                    || f.encoding.is_some()
                    || f.divide_by.is_some()
                {
                    return Err(format!(
                        "{label}: a `pad` field only takes `len` (and an optional `name`)"
                    ));
                }
                if let Some(name) = &f.name {
                    if seen.iter().any(|(n, _, _)| n == name) {
                        return Err(format!("{label}: the name `{name}` is used twice"));
                    }
                    seen.push((name, at, ty));
                }
                continue;
            }
            let name = match f.name.as_deref() {
                Some(name) if !name.trim().is_empty() => name,
                _ => return Err(format!("{label}: needs a `name`")),
            };
            if seen.iter().any(|(n, _, _)| *n == name) {
                return Err(format!("{label}: the name `{name}` is used twice"));
            }
            seen.push((name, at, ty));

            let role = f.role.unwrap_or(Role::Field);
            if f.unit.is_some() && role != Role::Timestamp {
                return Err(format!("{label}: `unit` is only for `role: timestamp`"));
            }
            if f.encoding.is_some() && !(role == Role::SensorId && ty == FieldType::Bytes) {
                return Err(format!(
                    "{label}: `encoding` is only for a `bytes` field with `role: sensor_id`"
                ));
            }
            if f.divide_by.is_some() && role != Role::Field {
                return Err(format!(
                    "{label}: `divide_by` is only for value fields (`role: field`)"
                ));
            }
            match role {
                Role::Skip => {}
                Role::Field => {
                    let Some(num) = ty.num() else {
                        return Err(format!(
                            "{label}: a `bytes` field cannot be a row value; give it `role: sensor_id` or `role: skip`"
                        ));
                    };
                    if row.len() == MAX_FIELDS {
                        return Err(format!(
                            "{label}: a row holds at most {MAX_FIELDS} values; give the others `role: skip`"
                        ));
                    }
                    let scale = scale(f.divide_by).map_err(|e| format!("{label}: {e}"))?;
                    row.push(RowStep { at, num, scale });
                    names.push(name.to_owned());
                }
                Role::Timestamp => {
                    let Some(num) = ty.num() else {
                        return Err(format!(
                            "{label}: a timestamp must be a number, not `bytes`"
                        ));
                    };
                    if let Some((other, ..)) = &time {
                        return Err(format!(
                            "{label}: `{other}` is already the timestamp; there can be only one"
                        ));
                    }
                    time = Some((name.to_owned(), at, num, f.unit.unwrap_or_default()));
                }
                Role::SensorId => {
                    if let Some(existing) = sensor {
                        return Err(match existing {
                            SensorSource::Topic(_) => format!(
                                "{label}: the sensor id already comes from the topic (`sensor_id_from_topic`)"
                            ),
                            _ => format!(
                                "{label}: a second `role: sensor_id`; there can be only one"
                            ),
                        });
                    }
                    sensor = Some(match (ty.num(), f.encoding.unwrap_or_default()) {
                        (Some(num), _) if num.is_float() => {
                            return Err(format!(
                                "{label}: a sensor id cannot be a float; use an integer or `bytes`"
                            ));
                        }
                        (Some(num), _) => SensorSource::Int { at, num },
                        (None, IdEncoding::Hex) if size <= 12 => {
                            SensorSource::Hex { at, len: size }
                        }
                        (None, IdEncoding::Hex) => {
                            return Err(format!(
                                "{label}: {size} bytes make {} hex characters; a sensor id has at most 24 (12 bytes). Use `encoding: utf8` for text",
                                2 * size
                            ));
                        }
                        (None, IdEncoding::Utf8) if size <= 24 => {
                            SensorSource::Utf8 { at, len: size }
                        }
                        (None, IdEncoding::Utf8) => {
                            return Err(format!(
                                "{label}: a sensor id has at most 24 bytes, this field has {size}"
                            ));
                        }
                    });
                }
            }
        }

        let Some((time_name, time_at, time_num, time_unit)) = time else {
            return Err("no field has `role: timestamp`; one must give the event time".into());
        };
        let Some(sensor) = sensor else {
            return Err(
                "no sensor id: give one field `role: sensor_id`, or set `sensor_id_from_topic`"
                    .into(),
            );
        };
        if row.is_empty() {
            return Err(
                "no value fields: at least one field must have `role: field` (the default)".into(),
            );
        }
        let select = match &config.select {
            None => None,
            Some(m) => {
                let Some(&(_, at, ty)) = seen.iter().find(|(n, _, _)| *n == m.field) else {
                    let known: Vec<&str> = seen.iter().map(|(n, _, _)| *n).collect();
                    return Err(format!(
                        "`match.field`: no field is named `{}` (fields: {})",
                        m.field,
                        known.join(", ")
                    ));
                };
                let num = match ty.num() {
                    Some(num) if !num.is_float() => num,
                    _ => {
                        return Err(format!(
                            "`match.field`: `{}` is a {}; only integer fields can be matched",
                            m.field,
                            ty.name()
                        ));
                    }
                };
                let (lo, hi) = num.int_range();
                let value = i128::from(m.value);
                if value < lo || value > hi {
                    return Err(format!(
                        "`match.value`: {value} can never be in `{}`, a {}",
                        m.field,
                        ty.name()
                    ));
                }
                Some((at, num, value))
            }
        };
        Ok(StructDecoder {
            big: config.byte_order == ByteOrder::Big,
            len: offset,
            names,
            row,
            time_at,
            time_num,
            time_unit,
            time_name,
            sensor,
            select,
        })
    }

    /// The exact payload length, in bytes.
    pub fn payload_len(&self) -> usize {
        self.len
    }

    #[inline]
    fn sensor(&self, topic: &str, p: &[u8]) -> Result<SensorId, DecodeError> {
        match self.sensor {
            SensorSource::Hex { at, len: 12 } => Ok(SensorId::from_object_id(&bytes_at(p, at))),
            SensorSource::Hex { at, len } => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let mut text = [0u8; 24];
                let bytes = p.get(at..at + len).unwrap_or_default();
                for (i, b) in bytes.iter().take(12).enumerate() {
                    text[2 * i] = HEX[usize::from(b >> 4)];
                    text[2 * i + 1] = HEX[usize::from(b & 0x0f)];
                }
                let text = std::str::from_utf8(&text[..2 * bytes.len().min(12)])
                    .map_err(|e| DecodeError::Invalid(e.to_string()))?;
                SensorId::new(text).map_err(|e| DecodeError::Invalid(e.to_string()))
            }
            SensorSource::Utf8 { at, len } => {
                let bytes = p.get(at..at + len).unwrap_or_default();
                let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                let text = std::str::from_utf8(&bytes[..end]).map_err(|_| {
                    DecodeError::Invalid(format!("sensor id {:02x?} is not UTF-8", &bytes[..end]))
                })?;
                if text.is_empty() {
                    return Err(DecodeError::Invalid("the sensor id is empty".into()));
                }
                SensorId::new(text).map_err(|e| DecodeError::Invalid(e.to_string()))
            }
            SensorSource::Int { at, num } => match read(p, at, num, self.big) {
                Raw::Int(v) => sensor_from_int(v.into()),
                Raw::UInt(v) => sensor_from_int(v.into()),
                Raw::Float(_) => Err(DecodeError::Invalid("a float sensor id".into())),
            },
            SensorSource::Topic(level) => sensor_from_topic(topic, level),
        }
    }
}

/// The [`Scale`] for a `divide_by`.
fn scale(divide_by: Option<f64>) -> Result<Scale, String> {
    let Some(d) = divide_by else {
        return Ok(Scale::One);
    };
    if !d.is_finite() || d == 0.0 {
        return Err(format!(
            "`divide_by` must be a finite, non-zero number, not {d}"
        ));
    }
    Ok(if d == 1.0 {
        Scale::One
    } else if d.fract() == 0.0 && d > 1.0 && d <= MAX_EXACT_INT as f64 {
        Scale::Int(d as u64)
    } else {
        Scale::Float(d)
    })
}

impl PayloadDecoder for StructDecoder {
    fn schema(&self) -> Schema {
        Schema::new(&self.names)
    }

    fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        row: &mut Row,
    ) -> Result<Option<Decoded>, DecodeError> {
        let got = payload.len();
        if got == 0 {
            return Err(DecodeError::Empty);
        }
        if let Some((at, num, value)) = self.select {
            // Other message types may have other lengths: match before the length check.
            if at + num.size() <= got {
                let raw = match read(payload, at, num, self.big) {
                    Raw::Int(v) => i128::from(v),
                    Raw::UInt(v) => i128::from(v),
                    Raw::Float(_) => return Ok(None),
                };
                if raw != value {
                    return Ok(None);
                }
            }
        }
        if got != self.len {
            let expected = self.len;
            return Err(if got < expected {
                DecodeError::LayoutTruncated { expected, got }
            } else {
                DecodeError::LayoutExtra { expected, got }
            });
        }
        let time_ms = match read(payload, self.time_at, self.time_num, self.big) {
            Raw::Float(v) => float_time_ms(v, self.time_unit, &self.time_name)?,
            Raw::Int(v) => int_time_ms(v.into(), self.time_unit, &self.time_name)?,
            Raw::UInt(v) => int_time_ms(v.into(), self.time_unit, &self.time_name)?,
        };
        let sensor = self.sensor(topic, payload)?;
        row.clear();
        for (i, step) in self.row.iter().enumerate() {
            let value = step.scale.apply(read(payload, step.at, step.num, self.big));
            if !value.is_finite() {
                let name = self.names.get(i).map_or("?", String::as_str);
                return Err(DecodeError::NonFinite(name.to_owned()));
            }
            row.try_push(value)
                .map_err(|_| DecodeError::Invalid(format!("more than {MAX_FIELDS} values")))?;
        }
        Ok(Some(Decoded { sensor, time_ms }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::FormatConfig;
    use crate::decode::clemap::{self, ClemapDecoder};
    use serde_json::{Value, json};

    fn layout(v: Value) -> Result<StructDecoder, String> {
        let config: StructConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
        StructDecoder::new(&config)
    }

    fn decode(
        d: &StructDecoder,
        topic: &str,
        payload: &[u8],
    ) -> Result<Option<(Decoded, Row)>, DecodeError> {
        let mut row = Row::new();
        d.decode(topic, payload, &mut row)
            .map(|o| o.map(|decoded| (decoded, row)))
    }

    /// Clemap type 16, written as a `struct` layout.
    fn clemap16() -> Value {
        json!({
            "byte_order": "little",
            "fields": [
                { "name": "feature_type", "type": "u8", "role": "selector" },
                { "name": "timestamp", "type": "f64", "role": "timestamp", "unit": "s" },
                { "name": "sensor_id", "type": "bytes", "len": 12, "role": "sensor_id", "encoding": "hex" },
                { "name": "phase", "type": "u8" },
                { "name": "p_l1", "type": "i64", "divide_by": 1000 },
                { "name": "p_l2", "type": "i64", "divide_by": 1000 },
                { "name": "p_l3", "type": "i64", "divide_by": 1000 },
                { "name": "q_l1", "type": "i64", "divide_by": 1000 },
                { "name": "q_l2", "type": "i64", "divide_by": 1000.0 },
                { "name": "q_l3", "type": "i64", "divide_by": 1000 },
            ],
            "match": { "field": "feature_type", "value": 16 },
        })
    }

    #[test]
    fn a_clemap_16_layout_decodes_the_seed_vectors_like_the_clemap_decoder() {
        let d = layout(clemap16()).expect("a valid layout");
        assert_eq!(d.payload_len(), clemap::TEN_SEC_LEN);
        let reference = ClemapDecoder::new(16).expect("valid");
        assert_eq!(d.schema(), reference.schema());
        let mut checked = 0;
        for (payload, outcome) in clemap::tests::seed_vectors() {
            let Ok(expect) = outcome else { continue };
            if expect["feature_type"] != json!(16) {
                // Type 17 is skipped, like the Clemap decoder does.
                assert_eq!(decode(&d, "t", &payload), Ok(None));
                continue;
            }
            let mut want_row = Row::new();
            let want = reference.decode("t", &payload, &mut want_row);
            let (decoded, row) = decode(&d, "t", &payload).expect("decodes").expect("kept");
            assert_eq!(Ok(Some(decoded)), want);
            assert_eq!(row, want_row);
            for (name, value) in d.schema().fields().zip(&row) {
                assert_eq!(Some(*value), expect[name].as_f64(), "{name}");
            }
            checked += 1;
        }
        assert!(checked > 10);
    }

    #[test]
    fn lengths_must_be_exact() {
        let d = layout(clemap16()).expect("valid");
        let payload = clemap::encode_ten_sec(&clemap::TenSecData {
            timestamp: 1.5,
            sensor_id: [7; 12],
            phase: 0,
            p: [1.0; 3],
            q: [2.0; 3],
        });
        assert_eq!(decode(&d, "t", &[]), Err(DecodeError::Empty));
        assert_eq!(
            decode(&d, "t", &payload[..69]),
            Err(DecodeError::LayoutTruncated {
                expected: 70,
                got: 69
            })
        );
        let mut longer = payload.to_vec();
        longer.push(0);
        assert_eq!(
            decode(&d, "t", &longer),
            Err(DecodeError::LayoutExtra {
                expected: 70,
                got: 71
            })
        );
        assert_eq!(
            decode(&d, "t", &longer).map_err(|e| e.reason()),
            Err("extra")
        );
        // Another type byte: skipped whatever the length.
        let mut other = payload;
        other[0] = 17;
        assert_eq!(decode(&d, "t", &other), Ok(None));
        assert_eq!(decode(&d, "t", &[17, 1, 2]), Ok(None));
        let (decoded, row) = decode(&d, "t", &payload).expect("ok").expect("kept");
        assert_eq!(decoded.time_ms, 1500);
        assert_eq!(decoded.sensor.as_str(), "070707070707070707070707");
        assert_eq!(row.as_slice(), &[0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    }

    #[test]
    fn non_finite_values_are_rejected() {
        let d = layout(clemap16()).expect("valid");
        let mut r = clemap::TenSecData {
            timestamp: f64::NAN,
            sensor_id: [7; 12],
            phase: 0,
            p: [1.0; 3],
            q: [2.0; 3],
        };
        for ts in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            r.timestamp = ts;
            assert_eq!(
                decode(&d, "t", &clemap::encode_ten_sec(&r)),
                Err(DecodeError::NonFinite("timestamp".into()))
            );
        }
        let d = layout(json!({
            "fields": [
                { "name": "t", "type": "u32", "role": "timestamp" },
                { "name": "id", "type": "u16", "role": "sensor_id" },
                { "name": "x", "type": "f32" },
            ],
        }))
        .expect("valid");
        let mut payload = Vec::new();
        payload.extend(1_700_000_000u32.to_le_bytes());
        payload.extend(513u16.to_le_bytes());
        payload.extend(f32::NAN.to_le_bytes());
        assert_eq!(
            decode(&d, "t", &payload),
            Err(DecodeError::NonFinite("x".into()))
        );
        payload.truncate(6);
        payload.extend(0.5f32.to_le_bytes());
        let (decoded, row) = decode(&d, "t", &payload).expect("ok").expect("kept");
        assert_eq!(decoded.time_ms, 1_700_000_000_000);
        assert_eq!(decoded.sensor.as_str(), "513");
        assert_eq!(row.as_slice(), &[0.5]);
    }

    #[test]
    fn a_big_endian_layout() {
        let d = layout(json!({
            "byte_order": "big",
            "fields": [
                { "name": "kind", "type": "u16", "role": "skip" },
                { "name": "ts", "type": "u64", "role": "timestamp", "unit": "us" },
                { "name": "meter", "type": "bytes", "len": 10, "role": "sensor_id", "encoding": "utf8" },
                { "name": "v", "type": "i16", "divide_by": 10 },
                { "type": "pad", "len": 2 },
                { "name": "i", "type": "f32" },
                { "name": "e", "type": "u32", "divide_by": 0.5 },
                { "name": "t", "type": "i8" },
                { "name": "big", "type": "i64", "divide_by": 1000 },
            ],
            "match": { "field": "kind", "value": 513 },
        }))
        .expect("valid");
        assert_eq!(d.payload_len(), 2 + 8 + 10 + 2 + 2 + 4 + 4 + 1 + 8);
        assert_eq!(
            d.schema().fields().collect::<Vec<_>>(),
            ["v", "i", "e", "t", "big"]
        );
        let mut p = Vec::new();
        p.extend(513u16.to_be_bytes());
        p.extend(1_700_000_000_123_500u64.to_be_bytes());
        p.extend(b"meter-7\0\0\0");
        p.extend((-2301i16).to_be_bytes());
        p.extend([0xff, 0xff]);
        p.extend(1.25f32.to_be_bytes());
        p.extend(7u32.to_be_bytes());
        p.extend((-5i8).to_be_bytes());
        p.extend(i64::MIN.to_be_bytes());
        let (decoded, row) = decode(&d, "t", &p).expect("ok").expect("kept");
        assert_eq!(decoded.sensor.as_str(), "meter-7");
        assert_eq!(decoded.time_ms, 1_700_000_000_124);
        assert_eq!(
            row.as_slice(),
            &[-230.1, 1.25, 14.0, -5.0, -9_223_372_036_854_776.0]
        );
        // The little-endian reading of the same kind is another value: skipped.
        p[..2].copy_from_slice(&513u16.to_le_bytes());
        assert_eq!(decode(&d, "t", &p), Ok(None));
    }

    #[test]
    fn sensor_ids_from_the_topic_or_short_hex() {
        let d = layout(json!({
            "sensor_id_from_topic": 2,
            "fields": [
                { "name": "ts", "type": "f64", "role": "timestamp", "unit": "ms" },
                { "name": "p", "type": "i32" },
            ],
        }))
        .expect("valid");
        let mut p = 1500.5f64.to_le_bytes().to_vec();
        p.extend(42i32.to_le_bytes());
        let (decoded, row) = decode(&d, "site/meters/m-17/raw", &p)
            .expect("ok")
            .expect("kept");
        assert_eq!((decoded.sensor.as_str(), decoded.time_ms), ("m-17", 1501));
        assert_eq!(row.as_slice(), &[42.0]);
        assert_eq!(
            decode(&d, "site/meters", &p).map_err(|e| e.reason()),
            Err("invalid")
        );

        let d = layout(json!({
            "fields": [
                { "name": "id", "type": "bytes", "len": 4, "role": "sensor_id" },
                { "name": "ts", "type": "i64", "role": "timestamp", "unit": "s" },
                { "name": "p", "type": "u8" },
            ],
        }))
        .expect("valid");
        let mut p = vec![0xde, 0xad, 0xBE, 0x0f];
        p.extend(1_000i64.to_le_bytes());
        p.push(9);
        let (decoded, _) = decode(&d, "t", &p).expect("ok").expect("kept");
        assert_eq!(
            (decoded.sensor.as_str(), decoded.time_ms),
            ("deadbe0f", 1_000_000)
        );

        let d = layout(json!({
            "fields": [
                { "name": "id", "type": "bytes", "len": 3, "role": "sensor_id", "encoding": "utf8" },
                { "name": "ts", "type": "u8", "role": "timestamp" },
                { "name": "p", "type": "u8" },
            ],
        }))
        .expect("valid");
        assert_eq!(
            decode(&d, "t", &[0xff, 0xfe, b'a', 1, 2]).map_err(|e| e.reason()),
            Err("invalid")
        );
        assert_eq!(
            decode(&d, "t", &[0, 0, 0, 1, 2]).map_err(|e| e.reason()),
            Err("invalid")
        );
        let (decoded, _) = decode(&d, "t", &[b'a', b'b', 0, 1, 2])
            .expect("ok")
            .expect("kept");
        assert_eq!(decoded.sensor.as_str(), "ab");
    }

    #[test]
    fn invalid_layouts_are_explained() {
        let err = |v: Value| layout(v).expect_err("invalid");
        let ts = json!({ "name": "ts", "type": "f64", "role": "timestamp" });
        let id = json!({ "name": "id", "type": "bytes", "len": 12, "role": "sensor_id" });
        let p = json!({ "name": "p", "type": "i64" });

        assert!(err(json!({ "fields": [] })).contains("empty"));
        assert!(err(json!({ "fields": [id, p] })).contains("role: timestamp"));
        assert!(err(json!({ "fields": [ts, p] })).contains("sensor id"));
        let e = err(json!({ "fields": [ts, id, id] }));
        assert!(e.contains("fields[2]") && e.contains("`id`"), "{e}");
        let id2 = json!({ "name": "id2", "type": "u32", "role": "sensor_id" });
        assert!(err(json!({ "fields": [ts, id, id2, p] })).contains("only one"));
        let e = err(json!({ "sensor_id_from_topic": 1, "fields": [ts, id, p] }));
        assert!(e.contains("topic"), "{e}");
        let ts2 = json!({ "name": "ts2", "type": "u32", "role": "timestamp" });
        assert!(err(json!({ "fields": [ts, ts2, id, p] })).contains("only one"));
        // An unknown type is a deserialization error listing the valid ones.
        let e = err(json!({ "fields": [ts, id, { "name": "x", "type": "u24" }] }));
        assert!(e.contains("u24") && e.contains("i64"), "{e}");
        let e = err(json!({ "fields": [ts, id, { "name": "x", "type": "i64", "scale": 2 }] }));
        assert!(e.contains("scale"), "{e}");
        // 33 values.
        let mut fields = vec![ts.clone(), id.clone()];
        fields.extend((0..33).map(|i| json!({ "name": format!("v{i}"), "type": "i16" })));
        let e = err(json!({ "fields": fields }));
        assert!(e.contains("fields[34]") && e.contains("32"), "{e}");
        fields.pop();
        assert!(layout(json!({ "fields": fields })).is_ok());

        let e = err(json!({ "fields": [ts, id, { "name": "raw", "type": "bytes", "len": 4 }] }));
        assert!(e.contains("role: skip"), "{e}");
        assert!(
            err(json!({ "fields": [ts, id, { "name": "x", "type": "bytes" }] })).contains("len")
        );
        assert!(
            err(json!({ "fields": [ts, id, { "name": "x", "type": "u8", "len": 1 }] }))
                .contains("len")
        );
        assert!(err(json!({ "fields": [ts, id, { "type": "pad", "len": 0 }, p] })).contains("len"));
        assert!(err(json!({ "fields": [ts, id, { "type": "u8" }] })).contains("name"));
        assert!(
            err(json!({ "fields": [ts, id, { "name": "ts", "type": "u8" }] })).contains("twice")
        );
        let e = err(json!({ "fields": [ts, id, { "name": "x", "type": "u8", "divide_by": 0 }] }));
        assert!(e.contains("divide_by"), "{e}");
        let e = err(json!({ "fields": [ts, id, { "name": "x", "type": "u8", "unit": "s" }] }));
        assert!(e.contains("unit"), "{e}");
        let e = err(
            json!({ "fields": [{ "name": "t", "type": "bytes", "len": 8, "role": "timestamp" }, id, p] }),
        );
        assert!(e.contains("timestamp"), "{e}");
        let long_id = json!({ "name": "id", "type": "bytes", "len": 13, "role": "sensor_id" });
        assert!(err(json!({ "fields": [ts, long_id, p] })).contains("utf8"));
        let float_id = json!({ "name": "id", "type": "f32", "role": "sensor_id" });
        assert!(err(json!({ "fields": [ts, float_id, p] })).contains("float"));
        assert!(err(json!({ "fields": [ts, id] })).contains("value"));
        let e = err(json!({ "fields": [ts, id, p], "match": { "field": "kind", "value": 1 } }));
        assert!(e.contains("kind") && e.contains("ts, id, p"), "{e}");
        let e = err(json!({ "fields": [ts, id, p], "match": { "field": "ts", "value": 1 } }));
        assert!(e.contains("integer"), "{e}");
        let kind = json!({ "name": "kind", "type": "u8", "role": "skip" });
        let e =
            err(json!({ "fields": [kind, ts, id, p], "match": { "field": "kind", "value": 256 } }));
        assert!(e.contains("256"), "{e}");
    }

    #[test]
    fn format_config_builds_a_struct_decoder() {
        let mut v = clemap16();
        v["format"] = json!("struct");
        let config: FormatConfig = serde_json::from_value(v).expect("valid");
        assert_eq!(config.name(), "struct");
        let d = config.build().expect("valid");
        assert_eq!(d.schema().len(), 7);
    }
}
