//! Live samples of a node's records, for `smartgrid tap URL NODE`.
//!
//! The renderer gives every node's output a [`TapPoint`]; while nobody listens, a batch
//! costs it one relaxed load. A listener ([`Taps::listen`]) gets up to
//! [`PER_BATCH`] records of each batch as JSON lines through a bounded channel that
//! drops what it has no room for: a slow reader sees a sample and never slows the
//! dataflow.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};

use crate::operator::PortType;
use crate::record::{Message, Reading};
use crate::schema::Schema;

/// Records of one batch a listener gets at most.
pub const PER_BATCH: usize = 16;

/// Lines a listener's channel holds before new ones are dropped.
const CHANNEL: usize = 1024;

/// Every node's tap point, by node name.
#[derive(Clone, Debug, Default)]
pub struct Taps(Arc<Mutex<BTreeMap<String, Arc<TapPoint>>>>);

impl Taps {
    /// The tap point of `node`, whose output is `port` (shared by every worker).
    pub fn point(&self, node: &str, port: &PortType) -> Arc<TapPoint> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(node.to_owned()).or_insert_with(|| {
            Arc::new(TapPoint {
                node: node.to_owned(),
                schema: match port {
                    PortType::Readings(schema) => Some(schema.clone()),
                    PortType::Messages => None,
                },
                listeners: AtomicUsize::new(0),
                senders: Mutex::new(Vec::new()),
            })
        }))
    }

    /// Listen to `node`'s records (JSON lines); `None` if no such node has an output.
    /// Dropping the receiver ends the listening at the next batch.
    pub fn listen(&self, node: &str) -> Option<Receiver<String>> {
        let point = Arc::clone(
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(node)?,
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL);
        point
            .senders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        point.listeners.fetch_add(1, Ordering::Relaxed);
        Some(rx)
    }

    /// The nodes that can be tapped.
    pub fn nodes(&self) -> Vec<String> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.keys().cloned().collect()
    }
}

/// One node's output, as the renderer sees it.
#[derive(Debug)]
pub struct TapPoint {
    node: String,
    schema: Option<Schema>,
    listeners: AtomicUsize,
    senders: Mutex<Vec<SyncSender<String>>>,
}

impl TapPoint {
    /// Whether someone listens: one relaxed load, so every batch may ask.
    #[inline]
    pub fn is_open(&self) -> bool {
        self.listeners.load(Ordering::Relaxed) > 0
    }

    /// Offer a batch of readings (call it only when [`is_open`](Self::is_open)).
    pub fn readings(&self, time: u64, batch: &[Reading]) {
        let lines: Vec<String> = batch
            .iter()
            .take(PER_BATCH)
            .map(|r| {
                let mut object = serde_json::Map::new();
                object.insert("node".into(), self.node.clone().into());
                object.insert("time".into(), time.into());
                object.insert("sensor".into(), r.sensor.as_str().into());
                object.insert("time_ms".into(), r.time_ms.into());
                for (i, value) in r.values.iter().enumerate() {
                    let name = match &self.schema {
                        Some(schema) if i < schema.len() => schema.name(i).to_owned(),
                        _ => format!("field{i}"),
                    };
                    // NaN and infinities have no JSON number: null.
                    object.insert(name, (*value).into());
                }
                serde_json::Value::Object(object).to_string()
            })
            .collect();
        self.send(lines);
    }

    /// Offer a batch of raw payloads: their topic and size, not their bytes.
    pub fn messages(&self, time: u64, batch: &[Message]) {
        let lines: Vec<String> = batch
            .iter()
            .take(PER_BATCH)
            .map(|m| {
                serde_json::json!({
                    "node": self.node,
                    "time": time,
                    "topic": &*m.topic,
                    "bytes": m.payload.len(),
                })
                .to_string()
            })
            .collect();
        self.send(lines);
    }

    fn send(&self, lines: Vec<String>) {
        let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        senders.retain(|tx| {
            for line in &lines {
                match tx.try_send(line.clone()) {
                    Ok(()) => {}
                    // A sample: what does not fit is left out.
                    Err(TrySendError::Full(_)) => break,
                    Err(TrySendError::Disconnected(_)) => {
                        self.listeners.fetch_sub(1, Ordering::Relaxed);
                        return false;
                    }
                }
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Row;
    use crate::record::SensorId;

    #[test]
    fn a_listener_gets_json_lines_and_leaving_closes_the_tap() {
        let taps = Taps::default();
        let point = taps.point("means", &PortType::Readings(Schema::new(["p"])));
        assert!(!point.is_open());
        let rx = taps.listen("means").expect("a tap point");
        assert!(point.is_open());
        let mut values = Row::new();
        values.push(1.5);
        let reading = Reading {
            sensor: SensorId::new("s1").expect("short"),
            time_ms: 7,
            values,
        };
        point.readings(10, std::slice::from_ref(&reading));
        let line: serde_json::Value =
            serde_json::from_str(&rx.recv().expect("a line")).expect("JSON");
        assert_eq!(line["sensor"], "s1");
        assert_eq!(line["p"], 1.5);
        drop(rx);
        point.readings(11, &[reading]);
        assert!(!point.is_open());
        assert!(taps.listen("nope").is_none());
    }
}
