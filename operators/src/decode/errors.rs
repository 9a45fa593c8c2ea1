//! Where undecodable payloads go: counted per reason, logged (rate-limited), and
//! optionally written to a dead-letter file and/or published to a dead-letter topic.
//! Nothing here stops the pipeline.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use smartgrid_runtime::Message;
use smartgrid_runtime::metrics::metric_name;
use smartgrid_runtime::metrics::{Counter, Metrics};

use crate::delivery::ThrottledLog;
use crate::formats::DecodeError;

/// Publishes one dead letter (JSON bytes) somewhere, e.g. an MQTT topic.
pub type Publish = Arc<dyn Fn(Vec<u8>) + Send + Sync>;

/// Dead-letter destinations shared by every worker of a decode node.
#[derive(Clone, Default)]
pub struct DeadLetters {
    /// An open JSON-lines file.
    pub file: Option<Arc<Mutex<std::io::BufWriter<std::fs::File>>>>,
    /// A publisher (dead-letter topic).
    pub publish: Option<Publish>,
}

/// One worker's error handling for one decode node.
pub struct ErrorSink {
    node: String,
    metrics: Metrics,
    total: Counter,
    by_reason: BTreeMap<&'static str, Counter>,
    dead_letters: DeadLetters,
    /// At most one line per reason per 10 s, with a count of the rest.
    log: ThrottledLog,
    dirty: bool,
}

impl ErrorSink {
    /// Errors of `node`, counted as `<node>.errors` and `<node>.errors.<reason>`.
    pub fn new(node: &str, metrics: &Metrics, dead_letters: DeadLetters) -> Self {
        ErrorSink {
            node: node.to_string(),
            metrics: metrics.clone(),
            total: metrics.counter(metric_name(node, "errors")),
            by_reason: BTreeMap::new(),
            dead_letters,
            log: ThrottledLog::new(node),
            dirty: false,
        }
    }

    /// Count, log and dead-letter one failure.
    pub fn record(&mut self, error: &DecodeError, message: &Message) {
        let reason = error.reason();
        self.total.inc();
        let node = &self.node;
        let metrics = &self.metrics;
        self.by_reason
            .entry(reason)
            .or_insert_with(|| metrics.counter(metric_name(node, &format!("errors.{reason}"))))
            .inc();

        self.log.warn(
            reason,
            format_args!("undecodable payload on `{}`: {error}", message.topic),
        );

        if self.dead_letters.file.is_none() && self.dead_letters.publish.is_none() {
            return;
        }
        let mut letter =
            crate::delivery::dead_letter::letter(&self.node, reason, &error.to_string());
        letter["topic"] = (*message.topic).into();
        letter["payload_hex"] = hex::encode(&message.payload).into();
        let mut line = letter.to_string().into_bytes();
        if let Some(publish) = &self.dead_letters.publish {
            publish(line.clone());
        }
        if let Some(file) = &self.dead_letters.file {
            line.push(b'\n');
            let mut f = file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(e) = f.write_all(&line) {
                tracing::error!(node = %self.node, "cannot write a dead letter: {e}");
            }
            self.dirty = true;
        }
    }

    /// Log what was held back once its interval has passed; flush the file.
    pub fn tick(&mut self, now: Instant) {
        self.log.tick(now);
        self.flush();
    }

    /// Flush the dead-letter file.
    pub fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        if let Some(file) = &self.dead_letters.file {
            let mut f = file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Err(e) = f.flush() {
                tracing::error!(node = %self.node, "cannot flush dead letters: {e}");
            }
        }
        self.dirty = false;
    }
}
