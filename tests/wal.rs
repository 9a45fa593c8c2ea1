//! The `mqtt` source's write-ahead log against a real mosquitto and a real crash: a run
//! killed with SIGKILL while messages stream in, then started again, has lost nothing
//! the broker delivered to it. What the broker had not seen acknowledged it sends again;
//! what it had, the log replays.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use smartgrid_operators::io::mqtt::{Fsync, Journal, JournalCounters, JournalOptions};
use support::Run;
use support::fleet::{
    DECODE, Fleet, FleetOptions, Published, TOPIC_FILTER, expected_windows, stored_windows,
};

const WINDOW_MS: i64 = 2_000;

/// A broker that keeps sessions and queued messages across restarts of the pipeline.
fn persistent_broker(dir: &Path) -> testkit::Mosquitto {
    let store = dir.join("broker-store");
    std::fs::create_dir_all(&store).expect("broker store");
    testkit::Mosquitto::start_with(&format!(
        "persistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 0",
        store.display()
    ))
}

/// mqtt (with a log in `wal/`) → decode → 2 s windows, into `means.<run>.jsonl`, and
/// every reading into `readings.<run>.jsonl`.
fn pipeline(dir: &Path, url: &str, checkpoint_interval: &str, run: u32) -> PathBuf {
    support::write_pipeline(
        dir,
        &format!(
            r#"
pipeline: wal
state_dir: state
checkpoint_interval: {checkpoint_interval}
nodes:
  meters:
    type: mqtt
    url: {url}
    topics: ["{TOPIC_FILTER}"]
    qos: 1
    client_id: wal-test
    keep_alive: 2s
    retry: {{ initial_delay: 1s, max_delay: 2s }}
    wal: {{ dir: wal, max_size: 2MiB }}
  readings:
    type: decode
    input: meters
    {DECODE}
    watermark_delay: 500ms
    idle_timeout: 2s
  means:
    type: window_mean
    input: readings
    size: 2s
  store:
    type: file
    input: means
    path: means.{run}.jsonl
    format: json
  raw:
    type: file
    input: readings
    path: readings.{run}.jsonl
    format: json
"#
        ),
    )
}

/// The counter `name` in a run's final counters line.
fn counter(counters: &str, name: &str) -> u64 {
    counters
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {counters}"))
        .parse()
        .expect("a number")
}

/// The number after `name=` in a log line (its colours taken out).
fn field(line: &str, name: &str) -> u64 {
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    let line = plain.as_str();
    let at = line
        .find(&format!(" {name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    line[at + name.len() + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{name} in {line}"))
}

/// (sensor, time) of a fleet payload or of a stored reading.
fn key(json: &serde_json::Value, sensor: &str, time: &str) -> (String, i64) {
    (
        json[sensor].as_str().expect("sensor").to_string(),
        json[time].as_i64().expect("time"),
    )
}

/// Every reading a run decoded, as (sensor, time).
fn decoded(dir: &Path, run: u32) -> BTreeSet<(String, i64)> {
    let text =
        std::fs::read_to_string(dir.join(format!("readings.{run}.jsonl"))).unwrap_or_default();
    text.lines()
        .map(|line| {
            key(
                &serde_json::from_str(line).expect("json"),
                "sensor_id",
                "time_ms",
            )
        })
        .collect()
}

fn published_keys(published: &[Published]) -> BTreeSet<(String, i64)> {
    published
        .iter()
        .map(|r| (format!("m{:02}", r.sensor), r.time_ms))
        .collect()
}

/// What the killed run left in its log: where it starts, where it ends, and the
/// readings from `from` on.
fn read_log(dir: &Path, from: Option<u64>) -> (u64, u64, BTreeSet<(String, i64)>) {
    let options = JournalOptions {
        dir: dir.join("wal"),
        max_bytes: 2 << 20,
        fsync: Fsync::Group,
        commit_interval: Duration::ZERO,
    };
    let mut journal = Journal::open(options, JournalCounters::default()).expect("the log opens");
    let (start, end) = (journal.start(), journal.end());
    let replay = journal.replay(from.unwrap_or(start)).expect("replay");
    let readings = replay
        .map(|r| {
            let (_, message) = r.expect("readable");
            key(
                &serde_json::from_slice(&message.payload).expect("json"),
                "s",
                "t",
            )
        })
        .collect();
    (start, end, readings)
}

/// The replay position the checkpoint on disk names for the source.
fn checkpoint_position(dir: &Path) -> Option<u64> {
    // `checkpoint.old/` when the crash came between the two renames of a write.
    let text = ["checkpoint", "checkpoint.old"].iter().find_map(|d| {
        std::fs::read_to_string(dir.join(format!("state/p0/{d}/manifest.json"))).ok()
    })?;
    let json: serde_json::Value = serde_json::from_str(&text).expect("a manifest");
    json["positions"]["meters"].as_u64()
}

/// Run 1 with a streaming fleet, SIGKILLed after `before_kill`; run 2 started after a
/// pause (the broker queues meanwhile) and stopped once the fleet has stopped and
/// everything is in. Returns what was published, the log as the crash left it (start,
/// end, the position the checkpoint named), run 2's replay line and its counters.
struct Crash {
    published: Vec<Published>,
    log_start: u64,
    log_end: u64,
    checkpoint: Option<u64>,
    /// The readings in the log from the checkpoint's position (or its start) on.
    unprocessed: BTreeSet<(String, i64)>,
    replay_line: String,
    counters: String,
}

fn crash_and_restart(dir: &Path, checkpoint_interval: &str, before_kill: Duration) -> Crash {
    let broker = persistent_broker(dir);
    let run = Run::start(&pipeline(dir, &broker.url(), checkpoint_interval, 1), &[]);
    run.wait_for("subscribed");
    let fleet = Fleet::start(broker.port(), FleetOptions::realtime(10));
    std::thread::sleep(before_kill);
    run.kill();
    let checkpoint = checkpoint_position(dir);
    let (log_start, log_end, unprocessed) = read_log(dir, checkpoint);
    std::thread::sleep(Duration::from_secs(2));
    let run = Run::start(&pipeline(dir, &broker.url(), checkpoint_interval, 2), &[]);
    let replay_line = run.wait_for("replaying the write-ahead log");
    run.wait_for("subscribed");
    std::thread::sleep(Duration::from_secs(3));
    let published = fleet.stop(Duration::from_secs(3));
    // Everything is in: the idle rule closes the last windows.
    std::thread::sleep(Duration::from_secs(4));
    Crash {
        published,
        log_start,
        log_end,
        checkpoint,
        unprocessed,
        replay_line,
        counters: run.terminate(),
    }
}

/// No checkpoint is written before the crash (the interval is an hour), so the log
/// replays every message the killed run received: every reading published reaches the
/// second run, whether the log replayed it or the broker sent it (again), and every
/// window is complete there.
#[test]
fn acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crash = crash_and_restart(dir.path(), "1h", Duration::from_secs(3));
    assert_eq!(crash.checkpoint, None);
    assert_eq!(crash.log_start, 0);
    // Mid-stream: the first run had received (and acknowledged) some 3 s of readings.
    assert!(crash.log_end >= 100, "{} records logged", crash.log_end);
    assert_eq!(field(&crash.replay_line, "records"), crash.log_end);
    assert_eq!(
        counter(&crash.counters, "meters.wal_replayed"),
        crash.log_end
    );
    assert!(
        counter(&crash.counters, "meters.messages") > 0,
        "live ones too"
    );
    let published = published_keys(&crash.published);
    assert!(
        crash.unprocessed.is_subset(&published),
        "the log holds what was published"
    );
    let decoded = decoded(dir.path(), 2);
    let missing: Vec<_> = published.difference(&decoded).collect();
    assert!(
        missing.is_empty(),
        "{} of {} readings lost, e.g. {:?}",
        missing.len(),
        published.len(),
        &missing[..missing.len().min(10)]
    );
    // Every window of the second run holds all its readings (redeliveries may add
    // duplicates until window_mean drops them).
    let expected = expected_windows(&crash.published, WINDOW_MS, |_| true);
    let stored = stored_windows(&dir.path().join("means.2.jsonl"));
    let short: Vec<String> = expected
        .iter()
        .filter(|(k, want)| {
            stored
                .get(*k)
                .is_none_or(|emitted| emitted.iter().all(|got| got.0 < want.0))
        })
        .map(|(k, want)| format!("{k:?}: want {want:?}, stored {:?}", stored.get(k)))
        .collect();
    assert!(short.is_empty(), "{}", short.join("\n"));
}

/// With checkpoints every second, the log is truncated as they are written, and after
/// the crash it replays exactly the messages after the last checkpoint's position.
#[test]
fn the_log_replays_from_the_last_checkpoint_after_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crash = crash_and_restart(dir.path(), "1s", Duration::from_secs(5));
    let position = crash
        .checkpoint
        .expect("a checkpoint was written before the crash");
    assert!(
        0 < crash.log_start && crash.log_start <= position && position <= crash.log_end,
        "log {}..{}, checkpoint at {position}",
        crash.log_start,
        crash.log_end
    );
    assert_eq!(field(&crash.replay_line, "from"), position);
    assert_eq!(
        field(&crash.replay_line, "records"),
        crash.log_end - position
    );
    assert_eq!(
        counter(&crash.counters, "meters.wal_replayed"),
        crash.log_end - position
    );
    let decoded = decoded(dir.path(), 2);
    assert!(
        crash.unprocessed.is_subset(&decoded),
        "the second run decoded what the checkpoint did not cover"
    );
}
