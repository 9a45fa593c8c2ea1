//! The dead letter of a reading that came past its window's correction horizon: one
//! JSON object per reading, in the shape every dead letter shares (`time`, `node`,
//! `reason`, `error`), then the reading and why it was refused:
//!
//! ```json
//! {"time":"2026-12-01T12:00:00.123Z","node":"means_10s","reason":"late",
//!  "error":"1m 18s 500ms after its window closed; corrections are kept for 1m",
//!  "sensor_id":"meter-1","time_ms":1700000003250,"fields":{"p_l1":230.5,"p_l2":…},
//!  "window_start_ms":1700000000000,"window_ms":10000,"late_by_ms":78500,"correction_ms":60000}
//! ```
//!
//! `late_by_ms` is how far the batch's event time (the watermark) had passed the window's
//! close (its end plus `lateness`); `fields` holds every field of the input, so the
//! reading can be replayed.

use std::sync::Arc;

use smartgrid_runtime::Schema;

use super::sums::Refused;
use crate::delivery::record_letters::Letters;

/// The reason in the letter and in the log.
const REASON: &str = "late";

/// Where one `window_mean` node's late readings go.
#[derive(Clone, Default)]
pub struct LateLetters {
    node: Arc<str>,
    /// The input's field names, for the letter's `fields`.
    input: Option<Schema>,
    letters: Letters,
}

impl LateLetters {
    /// Letters of node `node` reading `input`, to `letters`.
    pub fn new(node: &str, input: Schema, letters: Letters) -> Self {
        LateLetters {
            node: Arc::from(node),
            input: Some(input),
            letters,
        }
    }

    /// Write one letter per refused reading, all at once.
    pub(super) fn write(&self, refused: &[&Refused], size_ms: u64, correction_ms: u64) {
        if !self.letters.is_some() || refused.is_empty() {
            return;
        }
        let letters: Vec<serde_json::Value> = refused
            .iter()
            .map(|r| self.letter(r, size_ms, correction_ms))
            .collect();
        self.letters.write(&self.node, &letters);
    }

    fn letter(&self, refused: &Refused, size_ms: u64, correction_ms: u64) -> serde_json::Value {
        let late_by_ms = refused.now.saturating_sub(refused.close);
        let error = format!(
            "{} after its window closed; corrections are kept for {}",
            humantime::format_duration(std::time::Duration::from_millis(late_by_ms)),
            humantime::format_duration(std::time::Duration::from_millis(correction_ms)),
        );
        let mut letter = crate::delivery::dead_letter::letter(&self.node, REASON, &error);
        let reading = &refused.reading;
        let fields: serde_json::Map<String, serde_json::Value> = match &self.input {
            Some(schema) => schema
                .fields()
                .zip(reading.values.iter())
                .map(|(name, &v)| (name.to_string(), v.into()))
                .collect(),
            None => reading
                .values
                .iter()
                .enumerate()
                .map(|(i, &v)| (i.to_string(), v.into()))
                .collect(),
        };
        letter["sensor_id"] = reading.sensor.as_str().into();
        letter["time_ms"] = reading.time_ms.into();
        letter["fields"] = fields.into();
        letter["window_start_ms"] = refused.start_ms.into();
        letter["window_ms"] = size_ms.into();
        letter["late_by_ms"] = late_by_ms.into();
        letter["correction_ms"] = correction_ms.into();
        letter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartgrid_runtime::{Reading, SensorId};

    #[test]
    fn a_letter_carries_the_reading_by_field_name_and_why_it_was_refused() {
        let letters = LateLetters::new("means", Schema::new(["p_l1", "p_l2"]), Letters::default());
        let refused = Refused {
            size: 0,
            reading: Reading {
                sensor: SensorId::new("meter-1").expect("short"),
                time_ms: 1_003,
                values: [1.5, -2.0].into_iter().collect(),
            },
            start_ms: 1_000,
            close: 1_999,
            now: 80_499,
        };
        let letter = letters.letter(&refused, 1_000, 60_000);
        assert_eq!(letter["node"], "means");
        assert_eq!(letter["reason"], "late");
        assert_eq!(letter["sensor_id"], "meter-1");
        assert_eq!(letter["time_ms"], 1_003);
        assert_eq!(
            letter["fields"],
            serde_json::json!({"p_l1": 1.5, "p_l2": -2.0})
        );
        assert_eq!(letter["window_start_ms"], 1_000);
        assert_eq!(letter["late_by_ms"], 78_500);
        assert_eq!(letter["correction_ms"], 60_000);
        assert_eq!(
            letter["error"],
            "1m 18s 500ms after its window closed; corrections are kept for 1m"
        );
    }
}
