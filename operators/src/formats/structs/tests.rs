//! The `struct` format against hand-built payloads and the Clemap seed vectors.

use serde_json::{Value, json};
use smartgrid_runtime::record::Row;

use super::*;
use crate::formats::clemap::{self, ClemapDecoder};
use crate::formats::{DecodeError, Decoded, FormatConfig, PayloadDecoder};

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
    d.clone()
        .decode(topic, payload, &mut row)
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
    let mut reference = ClemapDecoder::new(16).expect("valid");
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
    assert!(err(json!({ "fields": [ts, id, { "name": "x", "type": "bytes" }] })).contains("len"));
    assert!(
        err(json!({ "fields": [ts, id, { "name": "x", "type": "u8", "len": 1 }] })).contains("len")
    );
    assert!(err(json!({ "fields": [ts, id, { "type": "pad", "len": 0 }, p] })).contains("len"));
    assert!(err(json!({ "fields": [ts, id, { "type": "u8" }] })).contains("name"));
    assert!(err(json!({ "fields": [ts, id, { "name": "ts", "type": "u8" }] })).contains("twice"));
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
    let e = err(json!({ "fields": [kind, ts, id, p], "match": { "field": "kind", "value": 256 } }));
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
