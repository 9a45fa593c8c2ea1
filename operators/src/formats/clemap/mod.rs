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

/// One type-16 (`TenSecData`) reading, in physical units (W, var).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TenSecData {
    /// Float seconds since the Unix epoch.
    pub timestamp: f64,
    /// The sensor's ObjectId.
    pub sensor_id: [u8; 12],
    /// Phase selector byte.
    pub phase: u8,
    /// Active power per phase, W.
    pub p: [f64; 3],
    /// Reactive power per phase, var.
    pub q: [f64; 3],
}

/// Encode a type-16 payload. Values are rounded to the format's milli-units.
pub fn encode_ten_sec(r: &TenSecData) -> [u8; TEN_SEC_LEN] {
    let mut out = [0u8; TEN_SEC_LEN];
    out[0] = 16;
    out[1..9].copy_from_slice(&r.timestamp.to_le_bytes());
    out[9..21].copy_from_slice(&r.sensor_id);
    out[21] = r.phase;
    for (i, v) in r.p.iter().chain(r.q.iter()).enumerate() {
        let milli = (v * 1000.0).round() as i64;
        out[22 + 8 * i..30 + 8 * i].copy_from_slice(&milli.to_le_bytes());
    }
    out
}

/// One type-17 (`OneMinData`) reading, in physical units. Each array holds L1, L2, L3.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneMinData {
    /// Float seconds since the Unix epoch.
    pub timestamp: f64,
    /// The sensor's ObjectId.
    pub sensor_id: [u8; 12],
    /// Phase selector byte.
    pub phase: u8,
    /// Voltage per phase, V.
    pub v: [f64; 3],
    /// Current per phase, A.
    pub i: [f64; 3],
    /// Apparent power per phase, VA.
    pub s: [f64; 3],
    /// Active power per phase, W.
    pub p: [f64; 3],
    /// Reactive power per phase, var.
    pub q: [f64; 3],
    /// Power factor per phase.
    pub pf: [f64; 3],
    /// Phase angle per phase.
    pub phi: [f64; 3],
    /// Average energy per phase (`i64` on the wire), in the device's unit.
    pub avg_energy: [f64; 3],
}

/// Encode a type-17 payload. Values are rounded to the format's milli-units (halves away
/// from zero); the 21 `i32` values saturate at the type's range (NaN becomes 0).
pub fn encode_one_min(r: &OneMinData) -> [u8; ONE_MIN_LEN] {
    let mut out = [0u8; ONE_MIN_LEN];
    out[0] = ONE_MIN;
    out[TS_AT..ID_AT].copy_from_slice(&r.timestamp.to_le_bytes());
    out[ID_AT..PHASE_AT].copy_from_slice(&r.sensor_id);
    out[PHASE_AT] = r.phase;
    let mut at = HEADER_LEN;
    for l in 0..3 {
        for v in [r.v[l], r.i[l], r.s[l], r.p[l], r.q[l], r.pf[l], r.phi[l]] {
            let milli = (v * 1000.0).round() as i32;
            out[at..at + 4].copy_from_slice(&milli.to_le_bytes());
            at += 4;
        }
    }
    for v in r.avg_energy {
        let milli = (v * 1000.0).round() as i64;
        out[at..at + 8].copy_from_slice(&milli.to_le_bytes());
        at += 8;
    }
    out
}

/// The settings of `format: clemap`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClemapDecoder {
    feature_type: u8,
}

impl ClemapDecoder {
    /// A decoder for `feature_type` (16 or 17).
    pub fn new(feature_type: u8) -> Result<Self, String> {
        match feature_type {
            TEN_SEC | ONE_MIN => Ok(ClemapDecoder { feature_type }),
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

    #[inline]
    fn decode(
        &self,
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
            sensor: layout.sensor(),
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
        SensorId::from_object_id(&bytes_at(&self.header(), ID_AT))
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
pub(crate) mod tests {
    use super::*;

    /// One seed vector: the payload, and its expected fields or error reason.
    pub(crate) type Vector = (Vec<u8>, Result<Map<String, Value>, String>);

    /// The seed's vectors.
    pub(crate) fn seed_vectors() -> Vec<Vector> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/clemap_vectors.jsonl"
        );
        let text = std::fs::read_to_string(path).expect("the seed vectors are readable");
        let vectors: Vec<_> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("a JSON line");
                let payload = hex::decode(v["hex"].as_str().expect("hex")).expect("valid hex");
                let outcome = match (&v["expect"], &v["error"]) {
                    (Value::Object(fields), Value::Null) => Ok(fields.clone()),
                    (Value::Null, Value::String(reason)) => Err(reason.clone()),
                    other => panic!("unexpected vector {other:?}"),
                };
                (payload, outcome)
            })
            .collect();
        assert_eq!(vectors.len(), 50);
        vectors
    }

    fn decode(d: &ClemapDecoder, payload: &[u8]) -> Result<Option<(Decoded, Row)>, DecodeError> {
        let mut row = Row::new();
        d.decode("data/realtime/feature/x", payload, &mut row)
            .map(|o| o.map(|decoded| (decoded, row)))
    }

    fn sample_ten_sec() -> TenSecData {
        TenSecData {
            timestamp: 1_752_794_500.083_333,
            sensor_id: [
                0x41, 0x1e, 0x7e, 0xc2, 0x73, 0x78, 0xa6, 0x61, 0xc9, 0x35, 0x18, 0x7c,
            ],
            phase: 2,
            p: [1539.906, -2260.6264, 0.0005],
            q: [-0.0005, 1e6, -4964.667],
        }
    }

    fn sample_one_min() -> OneMinData {
        OneMinData {
            timestamp: 1_661_972_765.5,
            sensor_id: [
                0x38, 0xc2, 0x75, 0xf3, 0x4a, 0xed, 0x05, 0x6a, 0xd6, 0xea, 0x8e, 0xec,
            ],
            phase: 1,
            v: [230.1234, 231.0, 229.9996],
            i: [1.5, -2.25, 0.001],
            s: [345.0, 520.5, 0.0],
            p: [300.0, 500.25, -1.0],
            q: [10.0, -20.0, 30.0],
            pf: [0.95, 0.9, -0.5],
            phi: [18.19, 25.84, 120.0],
            avg_energy: [1.0e9, 123_456.789, -0.0004],
        }
    }

    #[test]
    fn every_seed_vector_decodes_like_the_seed() {
        let (mut good, mut bad) = (0, 0);
        for (payload, outcome) in seed_vectors() {
            let ten = decode(&ClemapDecoder { feature_type: 16 }, &payload);
            let one = decode(&ClemapDecoder { feature_type: 17 }, &payload);
            match outcome {
                Ok(expect) => {
                    good += 1;
                    let fields = decode_fields(&payload).expect("a good vector decodes");
                    assert_eq!(fields, expect, "payload {}", hex::encode(&payload));
                    // Same names in the same (layout) order, not only the same values.
                    assert!(
                        fields.keys().eq(expect.keys()),
                        "order: {:?}",
                        fields.keys()
                    );
                    let feature_type = expect["feature_type"].as_u64().expect("int") as u8;
                    let (mine, other) = if feature_type == 16 {
                        (ten, one)
                    } else {
                        (one, ten)
                    };
                    assert_eq!(other, Ok(None), "the other type is skipped");
                    let (decoded, row) = mine.expect("decodes").expect("not skipped");
                    assert_eq!(
                        decoded.sensor.as_str(),
                        expect["sensor_id"].as_str().expect("hex id")
                    );
                    let ts = expect["timestamp"].as_f64().expect("float");
                    assert_eq!(decoded.time_ms, (ts * 1000.0).round() as i64);
                    let names = ClemapDecoder { feature_type }.field_names();
                    assert_eq!(row.len(), names.len());
                    for (name, value) in names.iter().zip(&row) {
                        let want = expect[*name].as_f64().expect("number");
                        assert_eq!(value.to_bits(), want.to_bits(), "{name}");
                    }
                }
                Err(reason) => {
                    bad += 1;
                    let got = decode_fields(&payload).map_err(|e| e.reason());
                    assert_eq!(
                        got,
                        Err(reason.as_str()),
                        "payload {}",
                        hex::encode(&payload)
                    );
                    assert_eq!(ten.map_err(|e| e.reason()), Err(reason.as_str()));
                    assert_eq!(one.map_err(|e| e.reason()), Err(reason.as_str()));
                }
            }
        }
        assert!(good > 0 && bad > 0);
    }

    #[test]
    fn lengths_off_by_one_are_truncated_or_extra() {
        let ten = encode_ten_sec(&sample_ten_sec());
        let one = encode_one_min(&sample_one_min());
        let d = ClemapDecoder::new(16).expect("valid");
        assert_eq!(
            decode(&d, &ten[..69]),
            Err(DecodeError::Truncated {
                feature_type: 16,
                expected: 70,
                got: 69
            })
        );
        let mut longer = ten.to_vec();
        longer.push(0);
        assert_eq!(
            decode(&d, &longer),
            Err(DecodeError::Extra {
                feature_type: 16,
                expected: 70,
                got: 71
            })
        );
        // A broken message of the other type is an error, not a skip.
        assert_eq!(
            decode(&d, &one[..129]),
            Err(DecodeError::Truncated {
                feature_type: 17,
                expected: 130,
                got: 129
            })
        );
        let mut longer = one.to_vec();
        longer.push(0);
        assert_eq!(decode(&d, &longer).map_err(|e| e.reason()), Err("extra"));
        // A lone type byte.
        assert_eq!(decode(&d, &[16]).map_err(|e| e.reason()), Err("truncated"));
        assert_eq!(
            decode_fields(&ten[..69]).map_err(|e| e.reason()),
            Err("truncated")
        );
    }

    #[test]
    fn empty_and_unknown_types_are_rejected() {
        let d = ClemapDecoder::new(17).expect("valid");
        assert_eq!(decode(&d, &[]), Err(DecodeError::Empty));
        assert_eq!(decode_fields(&[]), Err(DecodeError::Empty));
        let mut ten = encode_ten_sec(&sample_ten_sec());
        for t in [0u8, 15, 18, 255] {
            ten[0] = t;
            assert_eq!(decode(&d, &ten), Err(DecodeError::UnknownType(t)));
            assert_eq!(decode(&d, &[t]), Err(DecodeError::UnknownType(t)));
            assert_eq!(decode_fields(&ten), Err(DecodeError::UnknownType(t)));
        }
        assert_eq!(DecodeError::UnknownType(18).reason(), "unknown_type");
    }

    #[test]
    fn non_finite_timestamps_are_rejected() {
        for ts in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut r = sample_ten_sec();
            r.timestamp = ts;
            let payload = encode_ten_sec(&r);
            let want = DecodeError::NonFinite("timestamp".into());
            assert_eq!(
                decode(&ClemapDecoder::new(16).expect("valid"), &payload),
                Err(want.clone())
            );
            // Also when the decoder would skip the type.
            assert_eq!(
                decode(&ClemapDecoder::new(17).expect("valid"), &payload),
                Err(want.clone())
            );
            assert_eq!(decode_fields(&payload), Err(want.clone()));
            let mut r = sample_one_min();
            r.timestamp = ts;
            let payload = encode_one_min(&r);
            assert_eq!(
                decode(&ClemapDecoder::new(17).expect("valid"), &payload),
                Err(want)
            );
        }
        // A finite timestamp whose ms overflow an i64 is invalid, not saturated.
        let mut r = sample_ten_sec();
        r.timestamp = 1e300;
        let got = decode(&ClemapDecoder::new(16).expect("valid"), &encode_ten_sec(&r));
        assert_eq!(got.map_err(|e| e.reason()), Err("invalid"));
    }

    #[test]
    fn the_type_filter_skips_the_other_type() {
        let ten = encode_ten_sec(&sample_ten_sec());
        let one = encode_one_min(&sample_one_min());
        let d16 = ClemapDecoder::new(16).expect("valid");
        let d17 = ClemapDecoder::new(17).expect("valid");
        assert_eq!(decode(&d16, &one), Ok(None));
        assert_eq!(decode(&d17, &ten), Ok(None));
        assert!(matches!(decode(&d16, &ten), Ok(Some(_))));
        assert!(matches!(decode(&d17, &one), Ok(Some(_))));
        assert!(ClemapDecoder::new(18).is_err());
        assert_eq!(d16.schema().len(), 7);
        assert_eq!(d17.schema().len(), 25);
        assert_eq!(d17.schema().name(24), "avg_energy_l3");
        assert_eq!(d16.schema().fields().collect::<Vec<_>>(), TEN_SEC_FIELDS);
    }

    #[test]
    fn ten_sec_round_trips_through_the_encoder() {
        let r = sample_ten_sec();
        let (decoded, row) = decode(&ClemapDecoder::new(16).expect("valid"), &encode_ten_sec(&r))
            .expect("decodes")
            .expect("kept");
        assert_eq!(decoded.sensor.as_str(), "411e7ec27378a661c935187c");
        assert_eq!(decoded.time_ms, 1_752_794_500_083);
        // Rounded to milli-units, halves away from zero.
        assert_eq!(
            row.as_slice(),
            &[2.0, 1539.906, -2260.626, 0.001, -0.001, 1e6, -4964.667]
        );
        // A row that is not empty on entry is reset, never overflowed.
        let mut row: Row = (0..32).map(f64::from).collect();
        let got = ClemapDecoder::new(16)
            .expect("valid")
            .decode("t", &encode_ten_sec(&r), &mut row);
        assert!(matches!(got, Ok(Some(_))));
        assert_eq!(row.len(), 7);
        let fields = decode_fields(&encode_ten_sec(&r)).expect("decodes");
        assert_eq!(fields["timestamp"], Value::from(1_752_794_500.083_333));
        assert_eq!(fields["phase"], Value::from(2));
        assert_eq!(fields["p_l2"], Value::from(-2260.626));
    }

    #[test]
    fn one_min_round_trips_through_the_encoder() {
        let r = sample_one_min();
        let payload = encode_one_min(&r);
        assert_eq!(payload.len(), ONE_MIN_LEN);
        let (decoded, row) = decode(&ClemapDecoder::new(17).expect("valid"), &payload)
            .expect("decodes")
            .expect("kept");
        assert_eq!(decoded.sensor.as_str(), "38c275f34aed056ad6ea8eec");
        assert_eq!(decoded.time_ms, 1_661_972_765_500);
        let mut want = vec![1.0];
        for l in 0..3 {
            want.extend([r.v[l], r.i[l], r.s[l], r.p[l], r.q[l], r.pf[l], r.phi[l]]);
        }
        want.extend(r.avg_energy);
        let rounded: Vec<f64> = want.iter().map(|v| (v * 1000.0).round() / 1000.0).collect();
        assert_eq!(row.as_slice(), rounded.as_slice());
        assert_eq!(row[1], 230.123);
        assert_eq!(row[8], 231.0);
        assert_eq!(row[24], 0.0);
        let fields = decode_fields(&payload).expect("decodes");
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(
            &names[..4],
            ["feature_type", "timestamp", "sensor_id", "phase"]
        );
        assert_eq!(&names[4..], &ONE_MIN_FIELDS[1..]);
        assert_eq!(fields["avg_energy_l2"], Value::from(123_456.789));
    }

    #[test]
    fn huge_i64_values_divide_like_python() {
        let mut payload = encode_ten_sec(&sample_ten_sec());
        payload[22..30].copy_from_slice(&i64::MAX.to_le_bytes());
        payload[30..38].copy_from_slice(&(-9_007_199_254_740_997_i64).to_le_bytes());
        let fields = decode_fields(&payload).expect("decodes");
        // CPython: 9223372036854775807 / 1000 and -9007199254740997 / 1000.
        assert_eq!(fields["p_l1"], Value::from(9_223_372_036_854_776.0));
        assert_eq!(fields["p_l2"], Value::from(-9_007_199_254_740.996));
    }

    #[test]
    fn config_defaults_to_type_16() {
        let c: ClemapConfig = serde_json::from_value(serde_json::json!({})).expect("valid");
        assert_eq!(c.feature_type, 16);
        let c: ClemapConfig =
            serde_json::from_value(serde_json::json!({ "feature_type": 17 })).expect("valid");
        assert_eq!(c, ClemapConfig { feature_type: 17 });
        assert!(serde_json::from_value::<ClemapConfig>(serde_json::json!({ "type": 17 })).is_err());
    }
}
