//! The JSON lines a `file` sink writes (`format: json`), read back for assertions.

use std::path::Path;

/// Every JSON line of `path`; a missing file or a line that is not JSON fails the test.
pub fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// The number `key` of record `v`.
pub fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// A record's sensor and event time.
pub type Key = (String, i64);

/// The (sensor, event time) of record `v`.
pub fn key(v: &serde_json::Value) -> Key {
    (
        v["sensor_id"].as_str().expect("sensor").to_string(),
        v["time_ms"].as_i64().expect("time"),
    )
}
