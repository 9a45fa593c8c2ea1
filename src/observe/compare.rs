//! Predicted against actual power, for the status page's chart (`GET /api/compare`).
//!
//! Why a tap and not a buffer the compare operator fills: the tap point already sits on
//! every node's output and costs one relaxed load per batch while nobody listens, so a
//! run nobody watches pays nothing. The first request for a compare node starts a
//! collector thread that listens to that node's tap and keeps the last [`PER_SENSOR`]
//! comparisons of each sensor (at most [`SENSORS`] sensors); when no request has come
//! for [`IDLE`], the collector stops and drops its receiver, which closes the tap.
//!
//! The tap is a sample (up to 16 records of a batch, and what a full channel has no room
//! for is dropped): the chart may miss a point, but every point it shows is one the node
//! emitted, field for field.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use smartgrid_runtime::tap::Taps;

/// Comparisons kept per sensor.
pub(crate) const PER_SENSOR: usize = 60;
/// Sensors kept per compare node; later ones are not charted.
pub(crate) const SENSORS: usize = 1000;
/// How long a collector runs after the last request.
const IDLE: Duration = Duration::from_secs(60);

/// One comparison: the window it is about, and the two values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Point {
    /// The target window's time, ms since the epoch (`target_time`).
    pub time_ms: i64,
    pub predicted: f64,
    pub actual: f64,
}

/// The comparisons of one node, by sensor.
#[derive(Debug, Default)]
pub(crate) struct Series {
    by_sensor: BTreeMap<String, VecDeque<Point>>,
}

impl Series {
    /// Take one tap line (`{"sensor": …, "target_time": …, "predicted": …, …}`); lines
    /// without those fields are ignored.
    pub(crate) fn add_line(&mut self, line: &str) {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        let (Some(sensor), Some(predicted), Some(actual)) = (
            value["sensor"].as_str(),
            value["predicted"].as_f64(),
            value["actual"].as_f64(),
        ) else {
            return;
        };
        // Residuals are at their target time; triplets carry it as a field.
        let time_ms = value["target_time"]
            .as_f64()
            .map(|t| t as i64)
            .or_else(|| value["time_ms"].as_i64())
            .unwrap_or_default();
        if !self.by_sensor.contains_key(sensor) && self.by_sensor.len() >= SENSORS {
            return;
        }
        let points = self.by_sensor.entry(sensor.to_owned()).or_default();
        if points.len() == PER_SENSOR {
            points.pop_front();
        }
        points.push_back(Point {
            time_ms,
            predicted,
            actual,
        });
    }

    /// The sensors seen, and `sensor`'s points (the first sensor's if `None`).
    pub(crate) fn to_json(&self, node: &str, sensor: Option<&str>) -> serde_json::Value {
        let sensor = sensor.or_else(|| self.by_sensor.keys().next().map(String::as_str));
        let points = sensor
            .and_then(|s| self.by_sensor.get(s))
            .map(|points| {
                points
                    .iter()
                    .map(|p| json!({"time_ms": p.time_ms, "predicted": p.predicted, "actual": p.actual}))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        json!({
            "node": node,
            "sensors": self.by_sensor.keys().collect::<Vec<_>>(),
            "sensor": sensor,
            "points": points,
        })
    }
}

/// One compare node's collector: its series and when it was last asked for.
struct Collector {
    series: Arc<Mutex<Series>>,
    asked: Arc<Mutex<Instant>>,
    running: Arc<std::sync::atomic::AtomicBool>,
}

/// The collectors of a run, started on demand.
#[derive(Default)]
pub(crate) struct Comparisons {
    collectors: Mutex<HashMap<String, Collector>>,
}

impl Comparisons {
    /// `node`'s comparisons for `sensor`, starting (or keeping alive) its collector.
    /// `None` if `node` cannot be tapped.
    pub(crate) fn json(
        &self,
        taps: &Taps,
        node: &str,
        sensor: Option<&str>,
    ) -> Option<serde_json::Value> {
        use std::sync::atomic::Ordering;
        let mut collectors = self
            .collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stale = collectors
            .get(node)
            .is_some_and(|c| !c.running.load(Ordering::Relaxed));
        if stale || !collectors.contains_key(node) {
            let rx = taps.listen(node)?;
            let collector = Collector {
                series: Arc::default(),
                asked: Arc::new(Mutex::new(Instant::now())),
                running: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            };
            let (series, asked, running) = (
                Arc::clone(&collector.series),
                Arc::clone(&collector.asked),
                Arc::clone(&collector.running),
            );
            let spawned = std::thread::Builder::new()
                .name("smartgrid-compare".into())
                .spawn(move || {
                    collect(&rx, &series, &asked);
                    running.store(false, Ordering::Relaxed);
                });
            if let Err(e) = spawned {
                tracing::warn!("cannot start the status page's comparison collector: {e}");
                return None;
            }
            collectors.insert(node.to_owned(), collector);
        }
        let collector = collectors.get(node)?;
        *collector
            .asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let series = collector
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(series.to_json(node, sensor))
    }
}

fn collect(rx: &Receiver<String>, series: &Mutex<Series>, asked: &Mutex<Instant>) {
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => series
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .add_line(&line),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let last = *asked.lock().unwrap_or_else(PoisonError::into_inner);
        if last.elapsed() > IDLE {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_points_of_each_sensor() {
        let mut series = Series::default();
        for i in 0..PER_SENSOR + 3 {
            series.add_line(&format!(
                r#"{{"node":"r","sensor":"b","time_ms":{i},"target_time":{},"predicted":{i}.5,"actual":2}}"#,
                i * 10
            ));
        }
        series.add_line(r#"{"sensor":"a","time_ms":7,"predicted":1,"actual":null}"#);
        series.add_line(r#"{"sensor":"a","time_ms":7,"predicted":1,"actual":3}"#);
        series.add_line("not json");
        let json = series.to_json("r", Some("b"));
        assert_eq!(json["sensors"], json!(["a", "b"]));
        let points = json["points"].as_array().expect("points");
        assert_eq!(points.len(), PER_SENSOR);
        assert_eq!(points[0]["time_ms"], 30);
        assert_eq!(points[0]["predicted"], 3.5);
        let first = series.to_json("r", None);
        assert_eq!(first["sensor"], "a");
        assert_eq!(
            first["points"],
            json!([{"time_ms": 7, "predicted": 1.0, "actual": 3.0}])
        );
    }
}
