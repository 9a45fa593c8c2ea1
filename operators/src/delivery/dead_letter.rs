//! The one dead-letter file every sink writes: one JSON object per line,
//!
//! ```json
//! {"time":"2024-03-04T12:00:00.123Z","node":"store","reason":"rejected",
//!  "error":"HTTP 400: field type conflict","records":120,"lines":"means,sensor_id=…\n…"}
//! ```
//!
//! with `lines` for sinks that write text lines (influx, file) and `payload` for a
//! message (iothub). Credentials never reach it: a sink passes only what it encoded and
//! the server's answer.

use std::io::{BufWriter, Write as _};
use std::path::PathBuf;

use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::operator::open_output;

use crate::io::ThrottledLog;

/// Why records became dead letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The server refused the data itself (sending it again cannot help).
    Rejected,
    /// Shutting down with the spool full and the server away: the file is the last
    /// place on disk for them.
    SpoolFull,
    /// The spool could not take them (an I/O error).
    Unspoolable,
    /// Too big for one message, or the outbox would not take them.
    Undeliverable,
}

impl Reason {
    /// The name in the `reason` field and in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::SpoolFull => "spool_full",
            Reason::Unspoolable => "unspoolable",
            Reason::Undeliverable => "undeliverable",
        }
    }
}

/// The fields every dead letter starts with, whoever writes it (a sink, a decoder, a
/// source): `time` (RFC 3339, ms), `node`, `reason` (short and stable, the counter's
/// name), `error` (what went wrong, in words). Each writer adds what it has: `records`
/// and `lines`/`payload` (sinks), `topic` and `payload_hex` (decode), `topic` and
/// `size` (a source refusing a message).
pub fn letter(node: &str, reason: &str, error: &str) -> serde_json::Value {
    serde_json::json!({
        "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "node": node,
        "reason": reason,
        "error": error,
    })
}

/// What the letter carries.
pub enum Payload<'a> {
    /// Text lines, each ending in `\n` (one record each).
    Lines(&'a [u8]),
    /// One message (holding `records` records).
    Message(&'a [u8]),
}

/// A sink's dead-letter file, opened on the first letter; counts `<node>.dead_letters`.
pub struct DeadLetters {
    node: String,
    path: PathBuf,
    file: Option<BufWriter<std::fs::File>>,
    counter: Counter,
    log: ThrottledLog,
}

impl DeadLetters {
    /// Letters of `node` go to `path`; `counter` counts their records.
    pub fn new(node: &str, path: PathBuf, counter: Counter) -> Self {
        DeadLetters {
            node: node.to_string(),
            path,
            file: None,
            counter,
            log: ThrottledLog::new(node),
        }
    }

    /// Where the letters go.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Write one letter of `records` records, log it (throttled) and count it.
    pub fn write(&mut self, reason: Reason, error: &str, records: u64, payload: Payload<'_>) {
        self.counter.add(records);
        self.log.error(
            reason.as_str(),
            format_args!(
                "{records} records go to the dead-letter file {}: {error}",
                self.path.display()
            ),
        );
        let mut letter = letter(&self.node, reason.as_str(), error);
        letter["records"] = records.into();
        let (key, bytes) = match payload {
            Payload::Lines(b) => ("lines", b),
            Payload::Message(b) => ("payload", b),
        };
        letter[key] = String::from_utf8_lossy(bytes).into();
        if self.file.is_none() {
            match open_output(&self.path, false) {
                Ok(f) => self.file = Some(f),
                Err(e) => {
                    self.log.error(
                        "dead_letter_file",
                        format_args!("cannot open the dead-letter file: {e}"),
                    );
                    return;
                }
            }
        }
        if let Some(f) = &mut self.file {
            // Flushed per letter: they are rare, and must survive a crash that follows.
            if let Err(e) = writeln!(f, "{letter}").and_then(|()| f.flush()) {
                self.log.error(
                    "dead_letter_file",
                    format_args!("cannot write a dead letter: {e}"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_letter_per_line_with_the_shared_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dead.jsonl");
        let counter = smartgrid_runtime::metrics::Metrics::default().counter("n.dead_letters");
        let mut letters = DeadLetters::new("n", path.clone(), counter.clone());
        letters.write(
            Reason::Rejected,
            "HTTP 400: bad",
            2,
            Payload::Lines(b"a 1\nb 2\n"),
        );
        letters.write(
            Reason::Undeliverable,
            "too big",
            1,
            Payload::Message(b"[{}]"),
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["reason"], "rejected");
        assert_eq!(rows[0]["lines"], "a 1\nb 2\n");
        assert_eq!(rows[0]["records"], 2);
        assert_eq!(rows[1]["payload"], "[{}]");
        assert_eq!(rows[1]["node"], "n");
        assert_eq!(counter.get(), 3);
    }
}
