//! The Clemap binary format (`testdata/mqtt_msg_format.json`, from the original system),
//! byte-exact with the seed's Python decoder. Little-endian, no padding:
//!
//! | type | layout (Python `struct`) | bytes | class |
//! |------|--------------------------|-------|-------|
//! | 16   | `=Bd12sBqqqqqq`           | 70    | `TenSecData` |
//! | 17   | `=Bd12sB21i3q`            | 130   | `OneMinData` |
//!
//! Integer values are scaled by `divide_by` (1000); the 12-byte ObjectId is shown as 24
//! lowercase hex characters; the timestamp is float seconds.
//!
//! Both layouts start with the same 22-byte header: `feature_type: u8`, `timestamp: f64`,
//! `sensor_id: [u8; 12]`, `phase: u8`. Type 16 then holds six `i64` (`p_l1..p_l3`,
//! `q_l1..q_l3`); type 17 holds 21 `i32` (`v, i, s, p, q, pf, phi` for L1, then L2, then
//! L3) and three `i64` (`avg_energy_l1..l3`).
//!
//! Scaling matches the seed's Python (`value / 1000` on an `int`, i.e. true division,
//! correctly rounded): for the `i32` fields and every `i64` up to 2^53 that is one IEEE
//! division of two exact `f64`s; larger `i64`s take an exact slow path.
//!
//! Config of a `decode` node (see [`ClemapConfig`]):
//! ```yaml
//! format: clemap
//! feature_type: 16    # 16 (default) or 17; valid messages of the other type are skipped
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};
use smartgrid_runtime::record::{Row, SensorId};
use smartgrid_runtime::schema::Schema;

use super::{
    DecodeError, Decoded, PayloadDecoder, TimeUnit, bytes_at, div_exact_i64, float_time_ms,
};

/// Feature type of the ten-second record (`TenSecData`).
pub const TEN_SEC: u8 = 16;
/// Feature type of the one-minute record (`OneMinData`).
pub const ONE_MIN: u8 = 17;

/// The row of a type-16 record: every field in layout order except `feature_type`,
/// `timestamp` and `sensor_id` (which become the reading's time and key).
pub const TEN_SEC_FIELDS: [&str; 7] = ["phase", "p_l1", "p_l2", "p_l3", "q_l1", "q_l2", "q_l3"];

/// The row of a type-17 record, like [`TEN_SEC_FIELDS`].
pub const ONE_MIN_FIELDS: [&str; 25] = [
    "phase",
    "v_l1",
    "i_l1",
    "s_l1",
    "p_l1",
    "q_l1",
    "pf_l1",
    "phi_l1",
    "v_l2",
    "i_l2",
    "s_l2",
    "p_l2",
    "q_l2",
    "pf_l2",
    "phi_l2",
    "v_l3",
    "i_l3",
    "s_l3",
    "p_l3",
    "q_l3",
    "pf_l3",
    "phi_l3",
    "avg_energy_l1",
    "avg_energy_l2",
    "avg_energy_l3",
];

/// Bytes of the common header: type, timestamp, ObjectId, phase.
const HEADER_LEN: usize = 22;
/// Offset of the timestamp.
const TS_AT: usize = 1;
/// Offset of the ObjectId.
const ID_AT: usize = 9;
/// Offset of the phase byte.
const PHASE_AT: usize = 21;
/// The scale of every integer value (`divide_by` in the seed's spec).
const DIVIDE_BY: u64 = 1000;

/// Bytes of a type-16 payload.
pub const TEN_SEC_LEN: usize = 70;
/// Bytes of a type-17 payload.
pub const ONE_MIN_LEN: usize = 130;

mod ids;
mod records;

pub use records::{OneMinData, TenSecData, encode_one_min, encode_ten_sec};

/// The settings of `format: clemap`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClemapConfig {
    /// Which Clemap record to decode: `16` (ten-second active/reactive power, the
    /// default) or `17` (one-minute voltage, current, power, power factor, angle and
    /// energy). Valid messages of the other type are skipped and counted, not errors.
    #[serde(default = "default_feature_type")]
    pub feature_type: u8,
}

fn default_feature_type() -> u8 {
    TEN_SEC
}

impl Default for ClemapConfig {
    fn default() -> Self {
        ClemapConfig {
            feature_type: TEN_SEC,
        }
    }
}

/// Decodes Clemap messages of one feature type into readings: key = the ObjectId in hex,
/// time = the timestamp rounded to the ms, row = [`TEN_SEC_FIELDS`] or
/// [`ONE_MIN_FIELDS`].
#[derive(Clone, Debug)]
pub struct ClemapDecoder {
    feature_type: u8,
    ids: ids::SensorIds,
}

impl ClemapDecoder {
    /// A decoder for `feature_type` (16 or 17).
    pub fn new(feature_type: u8) -> Result<Self, String> {
        match feature_type {
            TEN_SEC | ONE_MIN => Ok(ClemapDecoder {
                feature_type,
                ids: ids::SensorIds::default(),
            }),
            other => Err(format!(
                "feature_type {other} has no Clemap layout; use 16 (ten-second power) or 17 (one-minute record)"
            )),
        }
    }

    /// The feature type this decoder keeps.
    pub fn feature_type(&self) -> u8 {
        self.feature_type
    }

    /// The row's field names.
    pub fn field_names(&self) -> &'static [&'static str] {
        if self.feature_type == ONE_MIN {
            &ONE_MIN_FIELDS
        } else {
            &TEN_SEC_FIELDS
        }
    }
}

impl PayloadDecoder for ClemapDecoder {
    fn schema(&self) -> Schema {
        Schema::new(self.field_names())
    }

    fn for_worker(&self) -> Box<dyn PayloadDecoder> {
        Box::new(ClemapDecoder {
            feature_type: self.feature_type,
            ids: ids::SensorIds::default(),
        })
    }

    #[inline]
    fn decode(
        &mut self,
        _topic: &str,
        payload: &[u8],
        row: &mut Row,
    ) -> Result<Option<Decoded>, DecodeError> {
        let layout = Layout::of(payload)?;
        // Validate every message, skipped or not, so a broken message of the other type
        // is still counted as an error.
        let time_ms = layout.time_ms()?;
        if layout.feature_type() != self.feature_type {
            return Ok(None);
        }
        row.clear();
        layout.values_into(row)?;
        Ok(Some(Decoded {
            sensor: self.ids.get(&layout.object_id()),
            time_ms,
        }))
    }
}

/// Decode every field of a Clemap message, named as in the seed's spec and in layout
/// order: `feature_type` (int), `timestamp` (float seconds), `sensor_id` (24 hex
/// characters), `phase` (int), then the scaled values (floats). For `smartgrid decode`;
/// the pipeline uses [`ClemapDecoder`], which does not allocate.
pub fn decode_fields(payload: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    let layout = Layout::of(payload)?;
    layout.time_ms()?;
    let mut row = Row::new();
    layout.values_into(&mut row)?;
    let mut out = Map::new();
    out.insert("feature_type".into(), Value::from(layout.feature_type()));
    out.insert("timestamp".into(), Value::from(layout.timestamp()));
    out.insert("sensor_id".into(), Value::from(layout.sensor().as_str()));
    for (name, value) in layout.names().iter().zip(row.iter().copied()) {
        // `phase` is a byte, shown as an int like the seed did; the rest are floats.
        let value = if *name == "phase" {
            Value::from(value as u8)
        } else {
            Value::from(value)
        };
        out.insert((*name).into(), value);
    }
    Ok(out)
}

/// A payload whose length is exactly its type's layout.
#[derive(Clone, Copy)]
enum Layout<'a> {
    TenSec(&'a [u8; TEN_SEC_LEN]),
    OneMin(&'a [u8; ONE_MIN_LEN]),
}

impl<'a> Layout<'a> {
    /// Check the type byte and the length.
    #[inline(always)]
    fn of(payload: &'a [u8]) -> Result<Self, DecodeError> {
        let Some(&feature_type) = payload.first() else {
            return Err(DecodeError::Empty);
        };
        let got = payload.len();
        let wrong_length = |expected: usize| {
            if got < expected {
                DecodeError::Truncated {
                    feature_type,
                    expected,
                    got,
                }
            } else {
                DecodeError::Extra {
                    feature_type,
                    expected,
                    got,
                }
            }
        };
        match feature_type {
            TEN_SEC => payload
                .try_into()
                .map(Layout::TenSec)
                .map_err(|_| wrong_length(TEN_SEC_LEN)),
            ONE_MIN => payload
                .try_into()
                .map(Layout::OneMin)
                .map_err(|_| wrong_length(ONE_MIN_LEN)),
            other => Err(DecodeError::UnknownType(other)),
        }
    }

    fn feature_type(self) -> u8 {
        match self {
            Layout::TenSec(_) => TEN_SEC,
            Layout::OneMin(_) => ONE_MIN,
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Layout::TenSec(_) => &TEN_SEC_FIELDS,
            Layout::OneMin(_) => &ONE_MIN_FIELDS,
        }
    }

    /// The 22-byte header (both layouts are longer).
    #[inline(always)]
    fn header(self) -> [u8; HEADER_LEN] {
        match self {
            Layout::TenSec(p) => bytes_at(p, 0),
            Layout::OneMin(p) => bytes_at(p, 0),
        }
    }

    /// Float seconds, as sent.
    #[inline(always)]
    fn timestamp(self) -> f64 {
        f64::from_le_bytes(bytes_at(&self.header(), TS_AT))
    }

    /// The event time (see [`float_time_ms`] for the rounding).
    #[inline(always)]
    fn time_ms(self) -> Result<i64, DecodeError> {
        float_time_ms(self.timestamp(), TimeUnit::S, "timestamp")
    }

    #[inline(always)]
    fn sensor(self) -> SensorId {
        SensorId::from_object_id(&self.object_id())
    }

    /// The ObjectId's 12 bytes.
    #[inline(always)]
    fn object_id(self) -> [u8; 12] {
        bytes_at(&self.header(), ID_AT)
    }

    /// Append the row to `row` (which is empty).
    #[inline(always)]
    fn values_into(self, row: &mut Row) -> Result<(), DecodeError> {
        let phase = f64::from(self.header()[PHASE_AT]);
        let full = |_| DecodeError::Invalid("the row has no room for a Clemap record".into());
        match self {
            Layout::TenSec(p) => {
                let mut values = [0.0; TEN_SEC_FIELDS.len()];
                values[0] = phase;
                for (k, v) in values[1..].iter_mut().enumerate() {
                    let raw = i64::from_le_bytes(bytes_at(p, HEADER_LEN + 8 * k));
                    *v = div_exact_i64(raw, DIVIDE_BY);
                }
                row.try_extend_from_slice(&values).map_err(full)
            }
            Layout::OneMin(p) => {
                let mut values = [0.0; ONE_MIN_FIELDS.len()];
                values[0] = phase;
                for (k, v) in values[1..22].iter_mut().enumerate() {
                    let raw = i32::from_le_bytes(bytes_at(p, HEADER_LEN + 4 * k));
                    // |raw| < 2^31 is exact as f64, so one division is Python's `raw / 1000`.
                    *v = f64::from(raw) / DIVIDE_BY as f64;
                }
                for (k, v) in values[22..].iter_mut().enumerate() {
                    let raw = i64::from_le_bytes(bytes_at(p, HEADER_LEN + 21 * 4 + 8 * k));
                    *v = div_exact_i64(raw, DIVIDE_BY);
                }
                row.try_extend_from_slice(&values).map_err(full)
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
