//! A `struct` layout compiled into offsets ([`StructDecoder`]), and decoding with it.

use smartgrid_runtime::record::{MAX_FIELDS, Row, SensorId};
use smartgrid_runtime::schema::Schema;

use super::wire::{Num, Raw, Scale, read, scale};
use super::{ByteOrder, FieldType, IdEncoding, Role, StructConfig};
use crate::formats::{
    DecodeError, Decoded, PayloadDecoder, TimeUnit, bytes_at, float_time_ms, int_time_ms,
    sensor_from_int, sensor_from_topic,
};

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

impl PayloadDecoder for StructDecoder {
    fn schema(&self) -> Schema {
        Schema::new(&self.names)
    }

    fn for_worker(&self) -> Box<dyn PayloadDecoder> {
        Box::new(self.clone())
    }

    fn decode(
        &mut self,
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
