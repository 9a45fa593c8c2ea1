//! Runs the example's pipeline through its own binary and checks the `ewma` output
//! against an EWMA computed here from the raw readings the same run stored.

use std::collections::BTreeMap;
use std::process::Command;

fn read_json_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn the_custom_ewma_operator_runs_in_a_pipeline_and_matches_an_oracle() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let pipeline = concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.yaml");
    let status = Command::new(env!("CARGO_BIN_EXE_custom-operator"))
        .args(["run", pipeline])
        .env("OUT_DIR", out_dir.path())
        .env("SMARTGRID_LOG", "warn")
        .status()
        .expect("run the example binary");
    assert!(status.success());

    let raw = read_json_lines(&out_dir.path().join("raw.jsonl"));
    let smooth = read_json_lines(&out_dir.path().join("smooth.jsonl"));
    // 3 sensors × 2 minutes × 12 Hz.
    assert_eq!(raw.len(), 3 * 120 * 12);
    assert_eq!(smooth.len(), raw.len());

    let by_sensor = |rows: &[serde_json::Value]| {
        let mut map: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
        for r in rows {
            map.entry(r["sensor_id"].as_str().expect("sensor").to_string())
                .or_default()
                .push(r.clone());
        }
        for v in map.values_mut() {
            v.sort_by_key(|r| r["time_ms"].as_i64());
        }
        map
    };
    let raw = by_sensor(&raw);
    let smooth = by_sensor(&smooth);
    assert_eq!(
        raw.keys().collect::<Vec<_>>(),
        smooth.keys().collect::<Vec<_>>()
    );
    let alpha = 0.2;
    for (sensor, readings) in &raw {
        let mut avg: Option<[f64; 3]> = None;
        for (r, s) in readings.iter().zip(&smooth[sensor]) {
            assert_eq!(r["time_ms"], s["time_ms"]);
            let x = ["p_l1", "p_l2", "p_l3"].map(|f| r[f].as_f64().expect("number"));
            let next = match avg {
                None => x,
                Some(a) => [0, 1, 2].map(|i| alpha * x[i] + (1.0 - alpha) * a[i]),
            };
            avg = Some(next);
            for (i, f) in ["p_l1", "p_l2", "p_l3"].iter().enumerate() {
                let got = s[*f].as_f64().expect("number");
                assert!(
                    (got - next[i]).abs() <= 1e-9 * next[i].abs().max(1.0),
                    "{sensor} {f}: {got} vs {}",
                    next[i]
                );
            }
            // Fields not listed pass through unchanged.
            assert_eq!(r["q_l1"], s["q_l1"]);
        }
    }
}

#[test]
fn the_custom_kind_is_in_its_binarys_schema_and_kinds() {
    let schema = Command::new(env!("CARGO_BIN_EXE_custom-operator"))
        .arg("schema")
        .output()
        .expect("schema");
    assert!(schema.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).expect("JSON");
    let kinds = schema
        .pointer("/properties/nodes/additionalProperties/oneOf")
        .and_then(|k| k.as_array())
        .expect("the node kinds");
    let ewma = kinds
        .iter()
        .find(|k| k["title"] == "ewma")
        .expect("the ewma kind");
    assert!(ewma.pointer("/properties/alpha").is_some(), "{ewma}");
    assert_eq!(
        ewma.pointer("/then/required/0"),
        Some(&serde_json::json!("alpha"))
    );

    let keys = Command::new(env!("CARGO_BIN_EXE_custom-operator"))
        .args(["kinds", "ewma"])
        .output()
        .expect("kinds ewma");
    assert!(keys.status.success());
    let text = String::from_utf8_lossy(&keys.stdout);
    assert!(text.contains("alpha  (number)  required"), "{text}");
    assert!(text.contains("Weight of the newest reading"), "{text}");
}

/// The example's pipeline tests (`pipeline.test.yaml`) pass with this crate's binary,
/// which knows the `ewma` kind.
#[test]
fn the_pipeline_tests_pass_with_the_example_binary() {
    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.test.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_custom-operator"))
        .args(["test", tests])
        .env("SMARTGRID_LOG", "off")
        .output()
        .expect("run the example binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 passed; 0 failed"), "{stdout}");
}
