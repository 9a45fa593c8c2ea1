//! Restarts against real mosquitto and influxd: a graceful restart in the middle of a
//! window keeps the window's readings (checkpointed, not flushed partially), so the
//! file and the database end with what one uninterrupted run stores. The oracle is the
//! windows computed here from what the fleet published.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::fleet::{
    DECODE, Fleet, FleetOptions, Published, TOPIC_FILTER, Windows, assert_same_windows,
    emitted_once, expected_windows, stored_windows,
};
use support::{Run, persistent_broker};

const WINDOW_MS: i64 = 10_000;

/// mqtt → decode → 10 s windows → a JSON file and InfluxDB.
fn pipeline(dir: &Path, broker: &str, influx: &str) -> PathBuf {
    support::write_pipeline(
        dir,
        &format!(
            r#"
pipeline: restarts
nodes:
  meters:
    type: mqtt
    url: {broker}
    topics: ["{TOPIC_FILTER}"]
    qos: 1
    client_id: restarts-test
  readings:
    type: decode
    input: meters
    {DECODE}
    watermark_delay: 500ms
    idle_timeout: 2s
  means:
    type: window_mean
    input: readings
    size: 10s
  store:
    type: file
    input: means
    path: means.jsonl
    format: json
  db:
    type: influx
    input: means
    url: {influx}
    api: v1
    db: energy
    precision: ms
"#
        ),
    )
}

/// (count, p) per (sensor, window start) in InfluxDB.
fn influx_windows(db: &testkit::Influxd) -> Windows {
    let answer = db.query(
        "energy",
        "SELECT \"count\", \"p\", \"sensor_id\" FROM \"means\"",
    );
    let json: serde_json::Value = serde_json::from_str(&answer).expect("json");
    let mut out = BTreeMap::new();
    for series in json["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for row in series["values"].as_array().into_iter().flatten() {
            let time = row[0].as_i64().expect("time");
            let count = row[1].as_f64().expect("count") as u64;
            let p = row[2].as_f64().expect("p");
            let sensor = row[3].as_str().expect("sensor").to_string();
            out.insert((sensor, time), (count, p));
        }
    }
    out
}

/// [`pipeline`] with a write-ahead log on the source and a checkpoint every 300 ms.
fn logged_pipeline(dir: &Path, broker: &str, influx: &str) -> PathBuf {
    let path = pipeline(dir, broker, influx);
    let text = std::fs::read_to_string(&path)
        .expect("pipeline")
        .replace(
            "pipeline: restarts\n",
            "pipeline: restarts\ncheckpoint_interval: 300ms\n",
        )
        .replace(
            "    client_id: restarts-test\n",
            "    client_id: restarts-test\n    wal: { dir: wal }\n",
        );
    std::fs::write(&path, text).expect("pipeline");
    path
}

/// Every window the fleet published is in the file once and in InfluxDB, with the
/// values computed here.
fn assert_stored(dir: &Path, db: &testkit::Influxd, published: &[Published]) {
    let expected = expected_windows(published, WINDOW_MS, |_| true);
    let stored = emitted_once(stored_windows(&dir.join("means.jsonl")));
    assert_same_windows("the file", &expected, &stored);
    assert_same_windows("InfluxDB", &expected, &influx_windows(db));
}

/// Waits (up to 20 s) until the file holds a line for every window published: once
/// the input is quiet for `idle_timeout`, the watermark follows the clock and closes
/// the last one (up to a window length later).
fn wait_for_windows(dir: &Path, published: &[Published]) {
    let expected = expected_windows(published, WINDOW_MS, |_| true);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let stored = stored_windows(&dir.join("means.jsonl"));
        if expected.keys().all(|k| stored.contains_key(k)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Graceful restart 13 s into the run (3 s into a window): each window once in the
/// file, and the database holds every window's full mean.
#[test]
fn a_graceful_restart_mid_window_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = persistent_broker();
    let db = testkit::Influxd::start();
    db.query("energy", "CREATE DATABASE energy");
    let path = pipeline(dir.path(), &broker.url(), &db.url());

    let first = Run::start(&path, &[]);
    first.wait_for("subscribed");
    let fleet = Fleet::start(broker.port(), FleetOptions::realtime(10));
    // Stop 3 s into a window, after at least one whole window (the fleet's clock is
    // the wall clock).
    std::thread::sleep(Duration::from_secs(10));
    let into_window = support::fleet::now_ms().rem_euclid(WINDOW_MS);
    std::thread::sleep(Duration::from_millis(
        (3_000 - into_window).rem_euclid(WINDOW_MS) as u64,
    ));
    let counters = first.terminate();
    assert!(
        std::fs::read_dir(dir.path().join(".smartgrid/state/restarts/p0/checkpoint")).is_ok(),
        "a checkpoint was left: {counters}"
    );
    // Down for a moment; the broker keeps what comes meanwhile.
    std::thread::sleep(Duration::from_secs(2));
    let second = Run::start(&path, &[]);
    second.wait_for("subscribed");
    std::thread::sleep(Duration::from_secs(12));
    let published: Vec<Published> = fleet.stop(Duration::from_secs(2));
    wait_for_windows(dir.path(), &published);
    let counters = second.terminate();
    assert!(counters.contains("means.late=0"), "{counters}");

    assert_stored(dir.path(), &db, &published);
}

/// kill -9 at ten moments while readings flow, each followed by a restart: with the
/// write-ahead log, the checkpoints and the file sink's truncation, the file ends
/// with every window once and the values one uninterrupted run stores.
#[test]
fn kill_9_at_ten_moments_gives_the_uninterrupted_run_s_windows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = persistent_broker();
    let db = testkit::Influxd::start();
    db.query("energy", "CREATE DATABASE energy");
    let path = logged_pipeline(dir.path(), &broker.url(), &db.url());

    // The first run subscribes: from then on the broker keeps what is published.
    let mut run = Run::start(&path, &[]);
    run.wait_for("subscribed");
    let fleet = Fleet::start(broker.port(), FleetOptions::realtime(10));
    // Moments from a fixed seed: the test is the same on every run.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for kill in 0..10 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let alive = 1_000 + seed % 2_500;
        std::thread::sleep(Duration::from_millis(alive));
        run.kill();
        eprintln!("kill -9 number {kill} after {alive} ms");
        run = Run::start(&path, &[]);
    }
    let last = run;
    last.wait_for("subscribed");
    std::thread::sleep(Duration::from_secs(3));
    let published: Vec<Published> = fleet.stop(Duration::from_secs(2));
    wait_for_windows(dir.path(), &published);
    let counters = last.terminate();
    assert!(counters.contains("means.late=0"), "{counters}");

    assert_stored(dir.path(), &db, &published);
}

/// kill -9, then the state directory as a crash in the middle of writing the next
/// checkpoint leaves it (the current one moved aside, the new one half written): the
/// next run falls back to the previous checkpoint, replays the log from its position,
/// and the outputs are still the uninterrupted run's.
#[test]
fn a_crash_while_writing_a_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = persistent_broker();
    let db = testkit::Influxd::start();
    db.query("energy", "CREATE DATABASE energy");
    let path = logged_pipeline(dir.path(), &broker.url(), &db.url());
    let first = Run::start(&path, &[]);
    first.wait_for("subscribed");
    let fleet = Fleet::start(broker.port(), FleetOptions::realtime(10));
    std::thread::sleep(Duration::from_secs(4));
    first.kill();

    let state = dir.path().join(".smartgrid/state/restarts/p0");
    std::fs::rename(state.join("checkpoint"), state.join("checkpoint.old"))
        .expect("a periodic checkpoint was written");
    let torn = state.join("checkpoint.tmp");
    std::fs::create_dir_all(&torn).expect("tmp");
    std::fs::write(torn.join("means.0"), b"\x0f\x00\x00").expect("a torn part");

    let second = Run::start(&path, &[]);
    second.wait_for("subscribed");
    std::thread::sleep(Duration::from_secs(3));
    let published: Vec<Published> = fleet.stop(Duration::from_secs(2));
    wait_for_windows(dir.path(), &published);
    let counters = second.terminate();
    assert!(counters.contains("means.late=0"), "{counters}");
    assert_stored(dir.path(), &db, &published);
}
