//! Bounded fuzzing, run by the test command: random and mutated payloads through every
//! decoder, and mutated pipeline files through parsing and planning. Nothing may panic;
//! every payload is either a reading, a skip or an error with a reason. The budget is a
//! fixed number of cases from fixed seeds, so a failure reproduces.

use std::path::Path;

use smartgrid_operators::formats::{
    ClemapDecoder, JsonConfig, JsonDecoder, PayloadDecoder, StructConfig, StructDecoder,
};
use smartgrid_runtime::Row;
use smartgrid_runtime::spec::{Env, parse_str};

/// xorshift64*: small, seedable, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// `seed` changed in one of the ways a broken device or a hostile sender would.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] = [0, 0xff, 0x7f, 0x80, b'"', b'{', b'-', b'e'][rng.below(8)];
            }
            2 => {
                let keep = rng.below(out.len() + 1);
                out.truncate(keep);
            }
            3 => {
                let len = rng.below(16);
                let extra = rng.bytes(len);
                out.extend(extra);
            }
            4 if out.len() >= 8 => {
                // A float or integer field set to an extreme.
                let i = rng.below(out.len() - 7);
                let value = [f64::NAN, f64::INFINITY, -0.0, 1e308, 5e-324][rng.below(5)];
                out[i..i + 8].copy_from_slice(&value.to_le_bytes());
            }
            _ => {
                let i = rng.below(out.len() + 1);
                let len = rng.below(4);
                let extra = rng.bytes(len);
                out.splice(i..i, extra);
            }
        }
    }
    out
}

fn clemap_seed() -> Vec<u8> {
    let mut payload = vec![16u8];
    payload.extend_from_slice(&1_732_435_200.5f64.to_le_bytes());
    payload.extend_from_slice(b"abcdefghijkl");
    payload.push(1);
    for v in [812_400i64, 433_000, 1_290_700, -5, 0, 7] {
        payload.extend_from_slice(&v.to_le_bytes());
    }
    payload
}

/// A type-17 record (`=Bd12sB21i3q`, 130 bytes).
fn clemap_17_seed() -> Vec<u8> {
    let mut payload = vec![17u8];
    payload.extend_from_slice(&1_732_435_200.5f64.to_le_bytes());
    payload.extend_from_slice(b"abcdefghijkl");
    payload.push(1);
    for v in 0..21i32 {
        payload.extend_from_slice(&(v * 1000).to_le_bytes());
    }
    for v in [1i64, 2, 3] {
        payload.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(payload.len(), 130);
    payload
}

fn decoders() -> Vec<(Box<dyn PayloadDecoder>, Vec<u8>)> {
    let json: JsonConfig = serde_json::from_str(
        r#"{"sensor_id": "/device", "timestamp": "/ts", "timestamp_unit": "ms",
            "fields": {"p_l1": "/power/l1", "energy": {"path": "/energy", "divide_by": 1000}}}"#,
    )
    .expect("a JSON format config");
    let structs: StructConfig = serde_json::from_str(
        r#"{"byte_order": "little", "fields": [
            {"name": "kind", "type": "u8", "role": "skip"},
            {"name": "ts", "type": "f64", "role": "timestamp", "unit": "s"},
            {"name": "id", "type": "bytes", "len": 12, "role": "sensor_id", "encoding": "hex"},
            {"type": "pad", "len": 1},
            {"name": "p_l1", "type": "i64", "divide_by": 1000}],
            "match": {"field": "kind", "value": 16}}"#,
    )
    .expect("a struct format config");
    let mut struct_seed = clemap_seed();
    struct_seed.truncate(1 + 8 + 12 + 1 + 8);
    vec![
        (
            Box::new(ClemapDecoder::new(16).expect("type 16")),
            clemap_seed(),
        ),
        (
            Box::new(ClemapDecoder::new(17).expect("type 17")),
            clemap_17_seed(),
        ),
        (
            Box::new(JsonDecoder::new(&json).expect("json decoder")),
            br#"{"device": "m-1", "ts": 1732435200500, "power": {"l1": 812.4}, "energy": "1234"}"#
                .to_vec(),
        ),
        (
            Box::new(StructDecoder::new(&structs).expect("struct decoder")),
            struct_seed,
        ),
    ]
}

#[test]
fn no_payload_makes_a_decoder_panic() {
    for (index, (mut decoder, seed)) in decoders().into_iter().enumerate() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ index as u64);
        let (mut ok, mut failed) = (0, 0);
        for case in 0..100_000 {
            let payload = if case % 4 == 0 {
                let len = rng.below(200);
                rng.bytes(len)
            } else {
                mutate(&mut rng, &seed)
            };
            let mut row = Row::new();
            match decoder.decode("data/realtime/feature/x", &payload, &mut row) {
                Ok(Some(d)) => {
                    ok += 1;
                    assert_eq!(row.len(), decoder.schema().len(), "decoder {index}");
                    assert!(
                        row.iter().all(|v| v.is_finite()),
                        "decoder {index}: {row:?}"
                    );
                    let _ = d.sensor;
                }
                Ok(None) => {}
                Err(e) => {
                    failed += 1;
                    assert!(!e.reason().is_empty());
                }
            }
        }
        // Both paths were exercised: the fuzzing reached past the first checks.
        assert!(
            ok > 0 && failed > 0,
            "decoder {index}: {ok} ok, {failed} failed"
        );
    }
}

#[test]
fn no_pipeline_file_makes_validation_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds: Vec<String> = ["pipeline.yaml", "deploy/pipeline.yaml"]
        .iter()
        .map(|p| std::fs::read_to_string(root.join(p)).expect("a shipped pipeline"))
        .collect();
    for dir in ["tests/pipelines/good", "tests/pipelines/broken"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("corpus").flatten() {
            if entry.path().extension().is_some_and(|e| e == "yaml") {
                seeds.push(std::fs::read_to_string(entry.path()).expect("read"));
            }
        }
    }
    let registry = smartgrid::builtin_registry();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut refused = 0;
    for case in 0..10_000 {
        let seed = &seeds[case % seeds.len()];
        let text = String::from_utf8_lossy(&mutate(&mut rng, seed.as_bytes())).into_owned();
        let env = Env::Fixed(Default::default());
        match parse_str(&text, "fuzz.yaml", root.to_path_buf(), env) {
            Err(problems) => {
                refused += 1;
                assert!(!problems.is_empty());
            }
            Ok(spec) => {
                if let Err(problems) = smartgrid_runtime::plan::plan(&spec, &registry) {
                    refused += 1;
                    assert!(!problems.0.is_empty());
                }
            }
        }
    }
    assert!(
        refused > 100,
        "only {refused} of the mutated files were refused"
    );
}
