//! The Clemap decoder against the seed's reference vectors (`testdata/clemap_vectors.jsonl`).

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
    // A copy: the helper takes the decoder shared, as the tests build it.
    d.clone()
        .decode("data/realtime/feature/x", payload, &mut row)
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
        let ten = decode(&ClemapDecoder::new(16).expect("valid"), &payload);
        let one = decode(&ClemapDecoder::new(17).expect("valid"), &payload);
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
                let names = ClemapDecoder::new(feature_type)
                    .expect("valid")
                    .field_names();
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
