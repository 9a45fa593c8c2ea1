//! Packing records into IoT Hub messages.
//!
//! IoT Hub bills device-to-cloud traffic in 4 KB blocks: a 300-byte message costs one
//! block, a 4096-byte message costs one block too. So records (one JSON object each) are
//! packed greedily into a JSON array `[r1,r2,…]` as long as the array stays within
//! `max_message_bytes` (default 4096, one block), and a message leaves when the next
//! record would not fit or when `flush_interval` has passed since its first record.
//!
//! A record is [`crate::formats::JsonRecord`]'s object, the same as a `json` line of
//! the `file` sink.

use std::time::{Duration, Instant};

/// The default message size: one billing block.
pub const BLOCK_BYTES: usize = 4096;

/// IoT Hub refuses device-to-cloud messages larger than 256 KB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Packs JSON records into arrays of at most `max_bytes`.
#[derive(Debug)]
pub struct Batcher {
    max_bytes: usize,
    flush_interval: Duration,
    current: String,
    records: usize,
    opened: Option<Instant>,
}

/// A record that cannot be sent: alone it is larger than IoT Hub accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a record of {0} bytes is larger than IoT Hub's 256 KB message limit")]
pub struct RecordTooLarge(pub usize);

impl Batcher {
    /// A batcher for messages of at most `max_bytes`, flushed `flush_interval` after
    /// their first record at the latest.
    pub fn new(max_bytes: usize, flush_interval: Duration) -> Self {
        Batcher {
            max_bytes: max_bytes.clamp(2, MAX_MESSAGE_BYTES),
            flush_interval,
            current: String::new(),
            records: 0,
            opened: None,
        }
    }

    /// Adds a record (one JSON value). Returns the messages completed by it: the
    /// previous batch if the record does not fit in it. A record too large for any
    /// batch goes alone (up to the 256 KB hard limit).
    pub fn push(&mut self, record: &str, now: Instant) -> Result<Option<String>, RecordTooLarge> {
        if record.len() + 2 > MAX_MESSAGE_BYTES {
            return Err(RecordTooLarge(record.len()));
        }
        // `[` + records joined by `,` + `]`: adding one costs its length and a comma.
        let done = if self.records > 0 && self.current.len() + 1 + record.len() + 1 > self.max_bytes
        {
            self.take()
        } else {
            None
        };
        if self.records == 0 {
            self.current.push('[');
            self.opened = Some(now);
        } else {
            self.current.push(',');
        }
        self.current.push_str(record);
        self.records += 1;
        Ok(done)
    }

    /// The batch so far as a message, if it holds any record.
    pub fn take(&mut self) -> Option<String> {
        if self.records == 0 {
            return None;
        }
        let mut message = std::mem::take(&mut self.current);
        message.push(']');
        self.records = 0;
        self.opened = None;
        Some(message)
    }

    /// When the current batch must leave, if it holds records.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened.map(|t| t + self.flush_interval)
    }

    /// The current batch, if its flush interval has passed at `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<String> {
        match self.deadline() {
            Some(deadline) if now >= deadline => self.take(),
            _ => None,
        }
    }

    /// Records in the current batch.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether the current batch is empty.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

#[cfg(test)]
mod tests {
    use smartgrid_runtime::{Reading, Row, Schema, SensorId};

    use super::*;
    use crate::formats::{JsonRecord, rfc3339};

    fn reading(i: usize, value: f64) -> Reading {
        Reading {
            sensor: SensorId::new(&format!("meter-{}", i % 7)).expect("short"),
            time_ms: 1_700_000_000_000 + i as i64 * 83,
            values: [value, value * 2.5, -(i as f64)]
                .into_iter()
                .collect::<Row>(),
        }
    }

    /// The oracle: greedy packing computed from the records' lengths alone.
    fn greedy_count(lengths: &[usize], max: usize) -> usize {
        let mut messages = 0;
        let mut size = 0; // bytes of the open message, brackets included; 0 = none open
        for &len in lengths {
            if size > 0 && size + 1 + len <= max {
                size += 1 + len;
            } else {
                messages += 1;
                size = len + 2;
            }
        }
        messages
    }

    #[test]
    fn records_round_trip_and_messages_fit() {
        let schema = Schema::new(["predicted", "actual", "error"]);
        let encoder = JsonRecord::new(&schema);
        let readings: Vec<Reading> = (0..5000)
            .map(|i| {
                reading(
                    i,
                    if i % 97 == 0 {
                        f64::NAN
                    } else {
                        i as f64 * 0.1
                    },
                )
            })
            .collect();
        let records: Vec<String> = readings.iter().map(|r| encoder.encode(r)).collect();
        for max in [200, 1000, 4096, 65536] {
            let mut batcher = Batcher::new(max, Duration::from_secs(3600));
            let now = Instant::now();
            let mut messages = Vec::new();
            for record in &records {
                messages.extend(batcher.push(record, now).expect("small"));
            }
            messages.extend(batcher.take());
            let lengths: Vec<usize> = records.iter().map(String::len).collect();
            assert_eq!(messages.len(), greedy_count(&lengths, max), "max {max}");
            let mut decoded = Vec::new();
            for message in &messages {
                assert!(message.len() <= max, "{} > {max}", message.len());
                let array: Vec<serde_json::Value> =
                    serde_json::from_str(message).expect("valid JSON");
                decoded.extend(array);
            }
            assert_eq!(decoded.len(), readings.len());
            for (value, reading) in decoded.iter().zip(&readings) {
                assert_eq!(value["sensor_id"], reading.sensor.as_str());
                assert_eq!(value["time"], rfc3339(reading.time_ms));
                assert_eq!(value["time_ms"], reading.time_ms);
                for (i, name) in schema.fields().enumerate() {
                    let expected = reading.values[i];
                    if expected.is_finite() {
                        assert_eq!(value[name].as_f64(), Some(expected), "{name}");
                    } else {
                        assert!(value[name].is_null());
                    }
                }
                assert_eq!(value.as_object().map(|o| o.len()), Some(3 + schema.len()));
            }
        }
    }

    #[test]
    fn flushes_by_time_and_sends_oversized_records_alone() {
        let start = Instant::now();
        let mut batcher = Batcher::new(64, Duration::from_secs(10));
        assert_eq!(batcher.push("1", start).expect("small"), None);
        assert_eq!(batcher.take_due(start + Duration::from_secs(9)), None);
        assert_eq!(
            batcher.take_due(start + Duration::from_secs(10)).as_deref(),
            Some("[1]")
        );
        assert!(batcher.is_empty() && batcher.deadline().is_none());

        let big = "9".repeat(100);
        assert_eq!(batcher.push("2", start).expect("small"), None);
        assert_eq!(
            batcher
                .push(&big, start)
                .expect("fits the hard limit")
                .as_deref(),
            Some("[2]")
        );
        assert_eq!(
            batcher.push("3", start).expect("small"),
            Some(format!("[{big}]"))
        );
        assert_eq!(batcher.take().as_deref(), Some("[3]"));
        assert_eq!(
            batcher.push(&"9".repeat(MAX_MESSAGE_BYTES), start),
            Err(RecordTooLarge(MAX_MESSAGE_BYTES))
        );
    }
}
