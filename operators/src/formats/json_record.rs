//! The one JSON record of a reading, written by the `json` format of the `file` and
//! `stdout` sinks (one per line) and by the `iothub` sink (packed into arrays):
//!
//! ```json
//! {"sensor_id":"meter-1","time":"2023-11-14T22:13:20.123Z","time_ms":1700000000123,"p_l1":2.5,"q_l1":null}
//! ```
//!
//! `sensor_id`, then the event time twice: `time` (RFC 3339, UTC, milliseconds) for
//! people and the cloud side, `time_ms` (ms since the Unix epoch, an integer) for
//! programs; then the schema's fields in order, each a number, or `null` for a NaN or
//! infinity (JSON has neither). Compact, no spaces.

use std::fmt::Write as _;

use smartgrid_runtime::{Reading, Schema};

use super::rfc3339;

/// Writes readings of one schema as JSON records; the field names are quoted once.
#[derive(Clone, Debug)]
pub struct JsonRecord {
    /// Field names already JSON-quoted, each with a leading `,` and a trailing `:`.
    keys: Vec<String>,
}

impl JsonRecord {
    /// Records of readings of `schema`.
    pub fn new(schema: &Schema) -> Self {
        JsonRecord {
            keys: schema
                .fields()
                .map(|f| format!(",{}:", serde_json::Value::from(f)))
                .collect(),
        }
    }

    /// Append the JSON object of `reading` (no newline) to `out`.
    pub fn write(&self, reading: &Reading, out: &mut String) {
        out.push_str("{\"sensor_id\":");
        out.push_str(&serde_json::Value::from(reading.sensor.as_str()).to_string());
        out.push_str(",\"time\":\"");
        out.push_str(&rfc3339(reading.time_ms));
        let _ = write!(out, "\",\"time_ms\":{}", reading.time_ms);
        for (key, value) in self.keys.iter().zip(reading.values.iter()) {
            out.push_str(key);
            match serde_json::Number::from_f64(*value) {
                Some(n) => {
                    let _ = write!(out, "{n}");
                }
                None => out.push_str("null"),
            }
        }
        out.push('}');
    }

    /// The JSON object of `reading`.
    pub fn encode(&self, reading: &Reading) -> String {
        let mut out = String::with_capacity(96 + 16 * self.keys.len());
        self.write(reading, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use smartgrid_runtime::{Row, SensorId};

    use super::*;

    #[test]
    fn a_record_has_the_sensor_both_times_and_the_fields_in_order() {
        let schema = Schema::new(["p", "count", "q \"x\""]);
        let record = JsonRecord::new(&schema);
        let reading = Reading {
            sensor: SensorId::new("s \"1\"").expect("short"),
            time_ms: 1_700_000_000_123,
            values: [2.5, 3.0, f64::NAN].into_iter().collect::<Row>(),
        };
        let text = record.encode(&reading);
        assert_eq!(
            text,
            r#"{"sensor_id":"s \"1\"","time":"2023-11-14T22:13:20.123Z","time_ms":1700000000123,"p":2.5,"count":3.0,"q \"x\"":null}"#
        );
        let mut out = String::from("[");
        record.write(&reading, &mut out);
        assert_eq!(out, format!("[{text}"));
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["q \"x\""], serde_json::Value::Null);
    }
}
