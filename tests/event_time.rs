//! Event time when things go wrong, against a real mosquitto: broker restarts, a stalled
//! consumer, a sensor with a wrong clock, a fast replay. The oracle is the windows
//! computed here from what the fleet published: what an uninterrupted run gives.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::fleet::{
    DECODE, Fleet, FleetOptions, Published, TOPIC_FILTER, assert_same_windows, emitted_once,
    expected_windows, now_ms, stored_windows,
};
use support::{Run, persistent_broker};

const WINDOW_MS: i64 = 2_000;

/// mqtt → decode → 2 s windows → a JSON file, with a short idle rule so that an outage
/// outlasts it.
fn pipeline(dir: &Path, url: &str, decode_extra: &str) -> PathBuf {
    support::write_pipeline(
        dir,
        &format!(
            r#"
pipeline: event-time
nodes:
  meters:
    type: mqtt
    url: {url}
    topics: ["{TOPIC_FILTER}"]
    qos: 1
    client_id: event-time-test
    keep_alive: 2s
    retry: {{ initial_delay: 1s, max_delay: 4s }}
  readings:
    type: decode
    input: meters
    {DECODE}
    watermark_delay: 500ms
    idle_timeout: 2s
    dead_letter:
      file: dead.jsonl
{decode_extra}
  means:
    type: window_mean
    input: readings
    size: 2s
  store:
    type: file
    input: means
    path: means.jsonl
    format: json
"#
        ),
    )
}

/// The counter `name` in a run's final counters line.
fn counter(counters: &str, name: &str) -> u64 {
    support::counter(counters, name).unwrap_or_else(|| panic!("no {name} in {counters}"))
}

/// Every window the fleet's readings (those `keep` takes) fill was stored exactly once
/// with the expected count and mean, and no other window of those sensors was.
fn assert_windows(dir: &Path, published: &[Published], keep: impl Fn(&Published) -> bool) {
    let expected = expected_windows(published, WINDOW_MS, &keep);
    let stored = stored_windows(&dir.join("means.jsonl"));
    let kept: std::collections::BTreeSet<String> = published
        .iter()
        .filter(|r| keep(r))
        .map(|r| format!("m{:02}", r.sensor))
        .collect();
    let stored: BTreeMap<_, _> = stored
        .into_iter()
        .filter(|((sensor, _), _)| kept.contains(sensor))
        .collect();
    assert_same_windows("the file", &expected, &emitted_once(stored));
}

/// Runs the pipeline with a real-time fleet of `sensors`, calling `fault` after a
/// few seconds of traffic; returns what was published and the run's counters.
fn with_fault(
    dir: &Path,
    broker: &mut testkit::Mosquitto,
    sensors: usize,
    fault: impl FnOnce(&mut testkit::Mosquitto, &Run, &Fleet),
) -> (Vec<Published>, String) {
    let run = Run::start(&pipeline(dir, &broker.url(), ""), &[]);
    run.wait_for("subscribed");
    let fleet = Fleet::start(broker.port(), FleetOptions::realtime(sensors));
    std::thread::sleep(Duration::from_secs(4));
    fault(broker, &run, &fleet);
    std::thread::sleep(Duration::from_secs(6));
    let published = fleet.stop(Duration::from_secs(3));
    // Everything is in: the idle rule closes the last windows.
    std::thread::sleep(Duration::from_secs(4));
    (published, run.terminate())
}

/// Waits until the broker's process has exited.
fn wait_exited(broker: &mut testkit::Mosquitto) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.server().is_running() {
        assert!(Instant::now() < deadline, "the broker did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The watermark must not follow the clock while the source is away: what the broker
/// queued during the outage (longer than `idle_timeout`, stretched by the reconnect
/// backoff) is on time.
fn broker_restart(signal: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = persistent_broker();
    let (published, counters) = with_fault(dir.path(), &mut broker, 10, |broker, _, fleet| {
        if signal == "KILL" {
            // A killed broker loses what it acknowledged since its last save, and no
            // consumer can get that back (docs/operations.md, "The broker's sessions"). Save
            // with nothing in flight from the fleet, so what is lost is only what the
            // pipeline could lose: the broker still queues for it, the fleet's backlog
            // waits in the fleet's client through the outage.
            fleet.pause_until_acknowledged();
            broker.save();
        }
        broker.server().signal(signal);
        fleet.resume();
        wait_exited(broker);
        std::thread::sleep(Duration::from_secs(7));
        broker.restart();
    });
    assert_eq!(counter(&counters, "means.late"), 0, "{counters}");
    assert_eq!(
        counter(&counters, "readings.readings"),
        counter(&counters, "meters.messages")
    );
    assert_windows(dir.path(), &published, |_| true);
}

#[test]
fn broker_restart_with_sigterm_makes_nothing_late() {
    broker_restart("TERM");
}

#[test]
fn broker_restart_with_sigkill_makes_nothing_late() {
    broker_restart("KILL");
}

/// A consumer stalled for longer than 1.5 × keep-alive is disconnected by the broker;
/// after it resumes, the readings the broker held are on time.
#[test]
fn a_stalled_consumer_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = persistent_broker();
    let (published, counters) = with_fault(dir.path(), &mut broker, 10, |_, run, _| {
        run.signal("STOP");
        std::thread::sleep(Duration::from_secs(7));
        run.signal("CONT");
    });
    assert_eq!(counter(&counters, "means.late"), 0, "{counters}");
    assert_windows(dir.path(), &published, |_| true);
}

/// Twenty sensors, one stamping 4 min ahead (accepted: within `max_future`) and one
/// an hour ahead (refused): neither makes another sensor's reading late.
#[test]
fn a_sensor_with_a_wrong_clock_makes_no_other_reading_late() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Unbounded per-client queue: past mosquitto's default 1000 a burst is dropped.
    let broker = testkit::Mosquitto::start_with("max_queued_messages 0");
    let run = Run::start(&pipeline(dir.path(), &broker.url(), ""), &[]);
    run.wait_for("subscribed");
    let mut options = FleetOptions::realtime(20);
    options.clock_offsets_ms[3] = 4 * 60_000;
    options.clock_offsets_ms[7] = 3_600_000;
    let fleet = Fleet::start(broker.port(), options);
    std::thread::sleep(Duration::from_secs(8));
    let published = fleet.stop(Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(4));
    let counters = run.terminate();
    assert_eq!(counter(&counters, "means.late"), 0, "{counters}");
    let hour_ahead = published.iter().filter(|r| r.sensor == 7).count() as u64;
    assert_eq!(counter(&counters, "readings.errors.future"), hour_ahead);
    let dead = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap_or_default();
    assert_eq!(
        dead.lines().count() as u64,
        hour_ahead,
        "every refusal dead-lettered"
    );
    assert!(dead.lines().all(|l| l.contains("\"future\"")), "{dead}");
    // The sensors with a right clock: every window complete, once.
    assert_windows(dir.path(), &published, |r| r.sensor != 3 && r.sensor != 7);
}

/// Ten minutes of event time delivered in a burst: windows close as event time
/// passes, not one per wall-clock window length.
#[test]
fn a_fast_replay_closes_windows_as_event_time_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Unbounded per-client queue: past mosquitto's default 1000 a burst is dropped.
    let broker = testkit::Mosquitto::start_with("max_queued_messages 0");
    // A long idle rule: only event time can close the windows within this test.
    let path = pipeline(dir.path(), &broker.url(), "");
    let text = std::fs::read_to_string(&path)
        .expect("pipeline")
        .replace("idle_timeout: 2s", "idle_timeout: 1h");
    std::fs::write(&path, text).expect("pipeline");
    let run = Run::start(&path, &[]);
    run.wait_for("subscribed");
    let start = (now_ms() - 3_600_000).div_euclid(60_000) * 60_000;
    let mut fleet = Fleet::start(
        broker.port(),
        FleetOptions {
            sensors: 5,
            rate: 12,
            clock_offsets_ms: vec![0; 5],
            replay_from_ms: Some(start),
            ticks: 12 * 600,
        },
    );
    fleet.wait_published();
    let published_at = Instant::now();
    // All but the last window of each sensor (it waits for later event time).
    let expected = 5 * (600_000 / WINDOW_MS as usize - 1);
    let means = dir.path().join("means.jsonl");
    let deadline = published_at + Duration::from_secs(60);
    while stored_windows(&means).len() < expected {
        if Instant::now() >= deadline {
            let stored = stored_windows(&means);
            let mut latest = BTreeMap::new();
            for (sensor, start) in stored.keys() {
                latest.insert(sensor.clone(), *start);
            }
            let counters = run.terminate();
            panic!(
                "{} of {expected} windows after 60 s; latest window per sensor {latest:?}\n\
                 counters: {counters}\nbroker log: {}",
                stored.len(),
                broker.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Checked while the run goes on: nothing here waited for a shutdown.
    let last = start + 600_000 - WINDOW_MS;
    assert_windows(dir.path(), &fleet.published(), |r| r.time_ms < last);
    let counters = run.terminate();
    fleet.stop(Duration::ZERO);
    assert_eq!(counter(&counters, "means.late"), 0, "{counters}");
}
