//! Redeliveries and late readings through `smartgrid run` with a real mosquitto: a
//! deterministic publisher sends every reading of three sensors, then some of them
//! again, some new ones for windows already emitted (within the correction horizon) and
//! some for windows past it. The oracle is the windows computed here from the unique
//! readings that came within the horizon: the last line the file sink wrote for each
//! window must be that window, every redelivery is counted as a duplicate, every late
//! reading within the horizon as one correction, and the dead-letter file holds exactly
//! the readings past the horizon.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use support::Run;
use support::fleet::{DECODE, TOPIC_FILTER, now_ms};

const SENSORS: usize = 3;
const WINDOW_MS: i64 = 2_000;
const CORRECTION_MS: i64 = 10_000;

/// One reading: sensor index, event time, value.
type Sent = (usize, i64, f64);

/// Publishes readings in order at QoS 1 and waits for the broker's acknowledgements,
/// so a test knows they are on their way before it looks at the output.
struct Publisher {
    client: Client,
    acks: Receiver<()>,
}

impl Publisher {
    fn connect(port: u16) -> Publisher {
        let mut options = MqttOptions::new("corrections-test", "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = Client::new(options, 10_000);
        let (tx, acks) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        Publisher { client, acks }
    }

    fn send(&self, readings: &[Sent]) {
        for &(sensor, time_ms, p) in readings {
            let payload = format!(r#"{{"s":"m{sensor:02}","t":{time_ms},"p":{p}}}"#);
            self.client
                .publish(
                    format!("meters/m{sensor:02}"),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .expect("queue a publish");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for _ in readings {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.acks.recv_timeout(left) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("the broker did not acknowledge every reading")
                }
            }
        }
    }
}

/// Every line of a JSON-lines file (none if it does not exist yet).
fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Waits (20 s at most) until `done` holds for the lines of `path`.
fn wait_until(path: &Path, what: &str, done: impl Fn(&[serde_json::Value]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&lines(path)) {
        assert!(Instant::now() < deadline, "waited 20 s for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether every sensor's mean of the window starting at `start` was written.
fn emitted(means: &[serde_json::Value], start: i64) -> bool {
    means.iter().filter(|m| m["time_ms"] == start).count() >= SENSORS
}

/// The counter `name` in a run's final counters line.
fn counter(counters: &str, name: &str) -> u64 {
    support::counter(counters, name).unwrap_or_else(|| panic!("no {name} in {counters}"))
}

/// (count, mean of p) per (sensor, window start) from `readings`.
fn oracle(readings: &[Sent]) -> BTreeMap<(String, i64), (f64, f64)> {
    let mut sums: BTreeMap<(String, i64), (f64, f64)> = BTreeMap::new();
    for &(sensor, t, p) in readings {
        let e = sums
            .entry((format!("m{sensor:02}"), t.div_euclid(WINDOW_MS) * WINDOW_MS))
            .or_default();
        *e = (e.0 + 1.0, e.1 + p);
    }
    sums.into_iter()
        .map(|(k, (n, sum))| (k, (n, sum / n)))
        .collect()
}

#[test]
fn redeliveries_count_once_late_readings_correct_their_window_and_later_ones_are_dead_lettered() {
    let broker = testkit::Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = broker.url();
    // Only event time closes windows here: no idle rule, no out-of-order allowance.
    let pipeline = support::write_pipeline(
        dir.path(),
        &format!(
            r#"
pipeline: corrections
nodes:
  meters:
    type: mqtt
    url: {url}
    topics: ["{TOPIC_FILTER}"]
    qos: 1
    client_id: corrections-source
  readings:
    type: decode
    input: meters
    {DECODE}
    watermark_delay: 0s
    idle_timeout: 1h
  means:
    type: window_mean
    input: readings
    size: 2s
    correction: 10s
    dead_letter: {{ file: late.jsonl }}
  store:
    type: file
    input: means
    path: means.jsonl
    format: json
"#
        ),
    );
    let means = dir.path().join("means.jsonl");
    let late = dir.path().join("late.jsonl");
    let run = Run::start(&pipeline, &[]);
    run.wait_for("subscribed");
    let publisher = Publisher::connect(broker.port());
    // An hour ago, on a window boundary: within `max_future`, and windows are whole.
    let e = (now_ms() - 3_600_000).div_euclid(60_000) * 60_000;
    let at = |ms: i64, until: i64| (ms..until).step_by(250);
    let value = |sensor: usize, t: i64| ((sensor as i64 * 7 + (t - e) / 250 * 13) % 101) as f64;
    let tick = |from: i64, until: i64| -> Vec<Sent> {
        at(e + from, e + until)
            .flat_map(|t| (0..SENSORS).map(move |s| (s, t, value(s, t))))
            .collect()
    };
    let mut counted: Vec<Sent> = Vec::new();

    // 20 s of every sensor at 4 Hz: the windows up to [18 s, 20 s) are emitted.
    let first = tick(0, 20_001);
    publisher.send(&first);
    counted.extend(&first);
    wait_until(&means, "the first windows", |m| emitted(m, e + 18_000));

    // Sent again (as after a reconnect): to open windows and to emitted ones.
    let again: Vec<Sent> = first
        .iter()
        .copied()
        .filter(|&(s, t, _)| s == 1 && t >= e + 14_000)
        .collect();
    publisher.send(&again);
    // New readings for emitted windows, within 10 s of their close (the watermark is at
    // 20 s): one per (sensor, window), so each makes one correction however the
    // readings are batched.
    let within: Vec<Sent> = [
        (0, 12_100, 1_000.0),
        (2, 14_100, 2_000.5),
        (0, 18_900, 3.25),
    ]
    .into_iter()
    .map(|(s, t, p)| (s, e + t, p))
    .collect();
    publisher.send(&within);
    counted.extend(&within);
    wait_until(&means, "the corrections", |m| {
        within.iter().all(|&(s, t, _)| {
            let start = t.div_euclid(WINDOW_MS) * WINDOW_MS;
            let sensor = format!("m{s:02}");
            m.iter()
                .filter(|w| w["time_ms"] == start && w["sensor_id"] == sensor.as_str())
                .count()
                == 2
        })
    });

    // 20 s more: the windows above are past their horizon now.
    let second = tick(20_250, 40_001);
    publisher.send(&second);
    counted.extend(&second);
    wait_until(&means, "the later windows", |m| emitted(m, e + 38_000));
    let beyond: Vec<Sent> = [(0, 2_100, 7.0), (1, 2_200, 8.0), (2, 10_100, 9.0)]
        .into_iter()
        .map(|(s, t, p)| (s, e + t, p))
        .collect();
    publisher.send(&beyond);
    wait_until(&late, "the dead letters", |l| l.len() >= beyond.len());
    let counters = run.terminate();

    assert_eq!(
        counter(&counters, "means.duplicates"),
        again.len() as u64,
        "{counters}"
    );
    assert_eq!(
        counter(&counters, "means.corrections"),
        within.len() as u64,
        "{counters}"
    );
    assert_eq!(
        counter(&counters, "means.late"),
        beyond.len() as u64,
        "{counters}"
    );

    // The last line per window wins, as an overwrite by (series, time) would.
    let mut stored: BTreeMap<(String, i64), (f64, f64)> = BTreeMap::new();
    for w in lines(&means) {
        let key = (
            w["sensor_id"].as_str().expect("sensor").to_string(),
            w["time_ms"].as_i64().expect("time"),
        );
        let value = (
            w["count"].as_f64().expect("count"),
            w["p"].as_f64().expect("p"),
        );
        stored.insert(key, value);
    }
    // The window the last readings opened is not compared: it is saved or flushed as
    // the run ends, which is not the subject here.
    stored.retain(|(_, start), _| *start < e + 40_000);
    let mut want = oracle(&counted);
    want.retain(|(_, start), _| *start < e + 40_000);
    assert_eq!(stored.len(), want.len());
    for (key, (n, mean)) in &want {
        let (got_n, got_mean) = stored[key];
        assert!(
            got_n == *n && (got_mean - mean).abs() <= 1e-9 * mean.abs().max(1.0),
            "{key:?}: stored ({got_n}, {got_mean}), want ({n}, {mean})"
        );
    }

    let letters = lines(&late);
    let refused: BTreeSet<(String, i64, u64)> = letters
        .iter()
        .map(|l| {
            assert_eq!(l["reason"], "late", "{l}");
            assert_eq!(l["node"], "means", "{l}");
            assert_eq!(l["correction_ms"], CORRECTION_MS, "{l}");
            (
                l["sensor_id"].as_str().expect("sensor").to_string(),
                l["time_ms"].as_i64().expect("time"),
                l["fields"]["p"].as_f64().expect("p").to_bits(),
            )
        })
        .collect();
    let want: BTreeSet<(String, i64, u64)> = beyond
        .iter()
        .map(|&(s, t, p)| (format!("m{s:02}"), t, p.to_bits()))
        .collect();
    assert_eq!(letters.len(), beyond.len());
    assert_eq!(refused, want);
}
