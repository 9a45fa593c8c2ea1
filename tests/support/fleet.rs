//! A deterministic fleet of meters for the fault tests: each sensor publishes one JSON
//! reading per tick at QoS 1 on a persistent session, stamped with its own clock, and
//! the fleet remembers what it published so a test can compute the expected windows.
//!
//! While the broker is away the readings wait in the client (nothing is dropped), and
//! rumqttc sends its unacknowledged ones again after reconnecting, as a real device
//! with a persistent session does: the pipeline may see duplicates, never gaps.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// One published reading.
#[derive(Clone, Copy, Debug)]
pub struct Published {
    pub sensor: usize,
    pub time_ms: i64,
    pub p: f64,
}

/// How the fleet publishes.
#[derive(Clone, Debug)]
pub struct FleetOptions {
    pub sensors: usize,
    /// Readings per second per sensor.
    pub rate: u32,
    /// Each sensor's clock offset from the wall clock, in ms (default all 0).
    pub clock_offsets_ms: Vec<i64>,
    /// `Some(start_ms)`: publish `ticks` readings per sensor from `start_ms` as fast as
    /// possible (a replay); `None`: in real time until stopped.
    pub replay_from_ms: Option<i64>,
    pub ticks: usize,
}

impl FleetOptions {
    pub fn realtime(sensors: usize) -> Self {
        FleetOptions {
            sensors,
            rate: 12,
            clock_offsets_ms: vec![0; sensors],
            replay_from_ms: None,
            ticks: usize::MAX,
        }
    }
}

/// The topic every reading goes to: `meters/<sensor>`.
pub const TOPIC_FILTER: &str = "meters/+";

/// The decode settings that read the fleet's payloads.
pub const DECODE: &str = "format: json\n    sensor_id: /s\n    timestamp: /t\n    timestamp_unit: ms\n    fields: { p: /p }";

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A running fleet.
pub struct Fleet {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    /// Held by the publisher while it publishes one tick, so a pause takes effect
    /// between ticks.
    tick: Arc<Mutex<()>>,
    /// PUBACKs received from the broker.
    acknowledged: Arc<AtomicUsize>,
    publisher: Option<JoinHandle<()>>,
    driver: Option<JoinHandle<()>>,
    published: Arc<Mutex<Vec<Published>>>,
    client: Client,
}

impl Fleet {
    /// Connects to `port` on loopback and starts publishing.
    pub fn start(port: u16, options: FleetOptions) -> Fleet {
        let mut mqtt = MqttOptions::new("test-fleet", "127.0.0.1", port);
        mqtt.set_clean_session(false);
        mqtt.set_keep_alive(Duration::from_secs(5));
        mqtt.set_inflight(100);
        // Large enough that publishing never blocks while the broker is away.
        let (client, mut connection) = Client::new(mqtt, 1_000_000);
        let stop = Arc::new(AtomicBool::new(false));
        let driver_stop = Arc::clone(&stop);
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let acks = Arc::clone(&acknowledged);
        let driver = std::thread::spawn(move || {
            for event in connection.iter() {
                if let Ok(Event::Incoming(Packet::PubAck(_))) = event {
                    acks.fetch_add(1, Ordering::SeqCst);
                }
                if event.is_err() {
                    if driver_stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        });
        let published = Arc::new(Mutex::new(Vec::new()));
        let paused = Arc::new(AtomicBool::new(false));
        let tick_lock = Arc::new(Mutex::new(()));
        let (publisher_stop, log, publishing) =
            (Arc::clone(&stop), Arc::clone(&published), client.clone());
        let (publisher_paused, publisher_tick) = (Arc::clone(&paused), Arc::clone(&tick_lock));
        let publisher = std::thread::spawn(move || {
            let period_ms = 1000.0 / f64::from(options.rate);
            let origin = options.replay_from_ms.unwrap_or_else(now_ms);
            for tick in 0..options.ticks {
                if publisher_stop.load(Ordering::SeqCst) {
                    return;
                }
                let due = origin + (tick as f64 * period_ms) as i64;
                if options.replay_from_ms.is_none() {
                    let wait = due - now_ms();
                    if wait > 0 {
                        std::thread::sleep(Duration::from_millis(wait as u64));
                    }
                }
                // A paused fleet catches up afterwards, as a device publishing its
                // backlog does.
                while publisher_paused.load(Ordering::SeqCst) {
                    if publisher_stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _tick = publisher_tick.lock().expect("lock");
                for sensor in 0..options.sensors {
                    let reading = Published {
                        sensor,
                        time_ms: due + options.clock_offsets_ms[sensor],
                        // Small integers: sums are exact in any order.
                        p: ((sensor * 7 + tick * 13) % 101) as f64,
                    };
                    let payload = format!(
                        r#"{{"s":"m{:02}","t":{},"p":{}}}"#,
                        reading.sensor, reading.time_ms, reading.p
                    );
                    publishing
                        .publish(
                            format!("meters/m{sensor:02}"),
                            QoS::AtLeastOnce,
                            false,
                            payload,
                        )
                        .expect("queue a publish");
                    log.lock().expect("lock").push(reading);
                }
            }
        });
        Fleet {
            stop,
            paused,
            tick: tick_lock,
            acknowledged,
            publisher: Some(publisher),
            driver: Some(driver),
            published,
            client,
        }
    }

    /// Waits for a replay to have queued everything.
    pub fn wait_published(&mut self) {
        if let Some(p) = self.publisher.take() {
            p.join().expect("publisher");
        }
    }

    /// Stops publishing after the current tick and waits until the broker has
    /// acknowledged every reading published so far.
    pub fn pause_until_acknowledged(&self) {
        self.paused.store(true, Ordering::SeqCst);
        drop(self.tick.lock().expect("lock"));
        let published = self.published.lock().expect("lock").len();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.acknowledged.load(Ordering::SeqCst) < published {
            assert!(
                Instant::now() < deadline,
                "the broker acknowledged {} of {published} readings within 10 s",
                self.acknowledged.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Publishes again after [`pause_until_acknowledged`](Self::pause_until_acknowledged).
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// What was published so far.
    pub fn published(&self) -> Vec<Published> {
        self.published.lock().expect("lock").clone()
    }

    /// Stops publishing, gives the client `drain` to send what it holds, and returns
    /// everything published.
    pub fn stop(mut self, drain: Duration) -> Vec<Published> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(p) = self.publisher.take() {
            p.join().expect("publisher");
        }
        std::thread::sleep(drain);
        let _ = self.client.disconnect();
        if let Some(d) = self.driver.take() {
            let _ = d.join();
        }
        self.published.lock().expect("lock").clone()
    }
}

/// Expected (count, mean of p) per (sensor name, window start) for windows of
/// `size_ms`, from the readings `keep` accepts.
pub fn expected_windows(
    readings: &[Published],
    size_ms: i64,
    keep: impl Fn(&Published) -> bool,
) -> BTreeMap<(String, i64), (u64, f64)> {
    let mut sums: BTreeMap<(String, i64), (u64, f64)> = BTreeMap::new();
    for r in readings.iter().filter(|r| keep(r)) {
        let start = r.time_ms.div_euclid(size_ms) * size_ms;
        let entry = sums
            .entry((format!("m{:02}", r.sensor), start))
            .or_default();
        entry.0 += 1;
        entry.1 += r.p;
    }
    sums.into_iter()
        .map(|(key, (n, sum))| (key, (n, sum / n as f64)))
        .collect()
}

/// The windows a `file` sink with `format: json` wrote: (count, mean of p) per
/// (sensor, window start), every emission of a window kept in order.
pub fn stored_windows(path: &std::path::Path) -> BTreeMap<(String, i64), Vec<(u64, f64)>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: BTreeMap<(String, i64), Vec<(u64, f64)>> = BTreeMap::new();
    // A line still being written (no newline yet) is not a stored window.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    for line in complete.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let sensor = v["sensor_id"].as_str().expect("sensor_id").to_string();
        let time = v["time_ms"].as_i64().expect("time_ms");
        let count = v["count"].as_f64().expect("count") as u64;
        let p = v["p"].as_f64().expect("p");
        out.entry((sensor, time)).or_default().push((count, p));
    }
    out
}

/// Window values keyed by (sensor, window start): (count, mean of p).
pub type Windows = BTreeMap<(String, i64), (u64, f64)>;

/// Each window emitted once: the one emission of every window.
pub fn emitted_once(stored: BTreeMap<(String, i64), Vec<(u64, f64)>>) -> Windows {
    let twice: Vec<_> = stored.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(twice.is_empty(), "windows stored twice: {twice:?}");
    stored
        .into_iter()
        .filter_map(|(k, v)| Some((k, *v.last()?)))
        .collect()
}

/// `got` (what `what` stored) has exactly the `expected` windows, with their counts
/// and means.
pub fn assert_same_windows(what: &str, expected: &Windows, got: &Windows) {
    let mut wrong = Vec::new();
    for (key, want) in expected {
        match got.get(key) {
            Some(g) if g.0 == want.0 && (g.1 - want.1).abs() < 1e-9 => {}
            other => wrong.push(format!("{key:?}: want {want:?}, {what} has {other:?}")),
        }
    }
    for key in got.keys().filter(|k| !expected.contains_key(k)) {
        wrong.push(format!("{key:?}: in {what}, never published"));
    }
    assert!(
        wrong.is_empty(),
        "{} of {} windows wrong in {what}:\n{}",
        wrong.len(),
        expected.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
}
