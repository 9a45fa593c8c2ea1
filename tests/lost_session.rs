//! A broker that loses the sessions it kept for its clients, against a real mosquitto
//! (issue 12, case 7). Killed without persistence and restarted while the source waits
//! to reconnect, it forgets the source's persistent session: what is published before
//! the source is back is dropped by the broker. The source cannot get that back, but
//! it must show it: `<node>.sessions_lost` and a warning, and it subscribes again and
//! goes on ingesting. The oracle is the same outage with a broker that persists its
//! sessions (stopped with SIGTERM, or killed after an autosave): nothing lost, nothing
//! counted.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smartgrid_operators::io::mqtt::{Publisher, PublisherOptions, Qos};
use support::{Run, broker_log, counter, write_pipeline};

const SENSORS: u8 = 10;
/// Readings per sensor and batch: one second at 12 Hz.
const PER_SENSOR: i64 = 12;
const BATCH: usize = SENSORS as usize * PER_SENSOR as usize;
const CLIENT_ID: &str = "sessions-source";
/// The start of the source's warning.
const WARNING: &str = "the MQTT broker lost our session";

/// A reading as the file sink writes it: sensor id (hex) and event time.
type Reading = (String, i64);

/// How the broker goes down and comes back (on the same port).
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// SIGKILL, no persistence: every session is gone.
    KilledWithoutPersistence,
    /// SIGTERM with persistence: mosquitto saves its sessions as it exits.
    TerminatedWithPersistence,
    /// SIGKILL with persistence, after an autosave.
    KilledAfterAutosave,
}

/// What a run through an outage gave.
struct Outcome {
    /// The three batches as published: before the outage, while the source was away,
    /// after it was back.
    published: [BTreeSet<Reading>; 3],
    /// Every reading the file sink wrote, repeats included.
    stored: Vec<Reading>,
    counters: String,
    log: Vec<String>,
}

impl Outcome {
    fn unique(&self) -> BTreeSet<Reading> {
        self.stored.iter().cloned().collect()
    }

    fn counter(&self, name: &str) -> Option<u64> {
        counter(&self.counters, name)
    }

    fn warnings(&self) -> Vec<&String> {
        self.log.iter().filter(|l| l.contains(WARNING)).collect()
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}

/// A Clemap type-16 payload (`=Bd12sBqqqqqq`, little-endian) for sensor `id` at `ms`.
fn clemap_payload(id: [u8; 12], ms: i64) -> Vec<u8> {
    let mut payload = vec![16u8];
    let seconds = ms as f64 / 1000.0;
    payload.extend_from_slice(&seconds.to_le_bytes());
    payload.extend_from_slice(&id);
    payload.push(1);
    for value in [1_000_000i64, 2_000_000, 3_000_000, 0, 0, 0] {
        payload.extend_from_slice(&value.to_le_bytes());
    }
    payload
}

/// Publishes one batch (every sensor, 12 readings from `start_ms`) at QoS 1 and
/// returns once the broker acknowledged all of it.
fn publish_batch(broker: &testkit::Mosquitto, start_ms: i64) -> BTreeSet<Reading> {
    let publisher = Publisher::connect(
        &broker.url(),
        "sessions-meters",
        PublisherOptions::default(),
    )
    .expect("publisher");
    let mut readings = BTreeSet::new();
    for sensor in 0..SENSORS {
        let mut id = *b"meter-000000";
        id[11] = b'0' + sensor;
        for i in 0..PER_SENSOR {
            let ms = start_ms + i * 1000 / PER_SENSOR;
            let topic = format!("data/realtime/feature/{}", hex::encode(id));
            publisher
                .publish(&topic, clemap_payload(id, ms), Qos::AtLeastOnce)
                .expect("publish");
            readings.insert((hex::encode(id), ms));
        }
    }
    publisher
        .flush_and_close(Duration::from_secs(20))
        .expect("the broker acknowledged the batch");
    readings
}

/// Every reading in the file sink's JSON lines.
fn stored(path: &Path) -> Vec<Reading> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let sensor = v["sensor_id"].as_str().expect("sensor_id").to_string();
            (sensor, v["time_ms"].as_i64().expect("time_ms"))
        })
        .collect()
}

/// Waits (up to 20 s) until the file holds at least `count` readings.
fn wait_stored(path: &Path, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored(path).len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many times the broker accepted the source's connection (its log survives
/// restarts).
fn connections(broker: &testkit::Mosquitto) -> usize {
    broker_log(broker)
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains(&format!(" as {CLIENT_ID} ")))
        .count()
}

/// `smartgrid run`: mqtt (QoS 1, persistent session) → decode → file, through
/// `outage`: one batch before it, one published while the source waits to reconnect,
/// one after it is back.
fn run_through(outage: Outage) -> Outcome {
    testkit::require_binary("mosquitto");
    // Three batches fit mosquitto's queue either way (its default is 1000).
    let mut broker = match outage {
        Outage::KilledWithoutPersistence => {
            testkit::Mosquitto::start_with("max_queued_messages 100000\n")
        }
        Outage::TerminatedWithPersistence => {
            testkit::Mosquitto::start_persistent("max_queued_messages 100000\n")
        }
        Outage::KilledAfterAutosave => testkit::Mosquitto::start_persistent(
            "max_queued_messages 100000\nautosave_interval 1\n",
        ),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = broker.url();
    // The source waits at least 3.75 s (5 s less the jitter) before reconnecting: the
    // second batch goes out before it is back, as when a publisher reconnects first.
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            r"
pipeline: sessions
nodes:
  clemap:
    type: mqtt
    url: '{url}'
    client_id: {CLIENT_ID}
    qos: 1
    retry: {{ initial_delay: 5s, max_delay: 10s }}
  readings: {{ type: decode, input: clemap, format: clemap }}
  store: {{ type: file, input: readings, path: readings.jsonl, format: json }}
"
        ),
    );
    let output = dir.path().join("readings.jsonl");
    let run = Run::start(&pipeline, &[]);
    run.wait_for("subscribed");
    let start = now_ms();

    let before = publish_batch(&broker, start);
    // Every reading of the first batch stored, so all of it was acknowledged: the
    // outage loses nothing the broker had handed over.
    wait_stored(&output, BATCH);
    match outage {
        Outage::KilledWithoutPersistence => broker.stop(),
        Outage::TerminatedWithPersistence => broker.terminate(),
        Outage::KilledAfterAutosave => {
            broker.wait_autosave();
            broker.stop();
        }
    }
    broker.restart();

    let away = publish_batch(&broker, start + 2_000);
    assert_eq!(
        connections(&broker),
        1,
        "the source reconnected before the second batch was published\n{}",
        broker.log_tail()
    );
    run.wait_for(match outage {
        Outage::KilledWithoutPersistence => "subscribed again",
        _ => "reconnected to MQTT broker",
    });
    let after = publish_batch(&broker, start + 4_000);
    let expected = match outage {
        Outage::KilledWithoutPersistence => 2 * BATCH,
        _ => 3 * BATCH,
    };
    wait_stored(&output, expected);
    let log = run.log();
    let counters = run.terminate();
    Outcome {
        published: [before, away, after],
        stored: stored(&output),
        counters,
        log,
    }
}

#[test]
fn a_broker_that_lost_our_session_is_counted_and_warned_about() {
    let outcome = run_through(Outage::KilledWithoutPersistence);
    let counters = &outcome.counters;
    assert_eq!(
        outcome.counter("clemap.sessions_lost"),
        Some(1),
        "{counters}"
    );
    let warnings = outcome.warnings();
    assert_eq!(warnings.len(), 1, "{:#?}", outcome.log);
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains(CLIENT_ID),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("docs/operations.md"),
        "{}",
        warnings[0]
    );
    // The broker dropped the batch published while it had no session for us; the
    // batches before and after arrived in full.
    let [before, away, after] = &outcome.published;
    let unique = outcome.unique();
    assert!(before.is_subset(&unique), "first batch incomplete");
    assert!(
        after.is_subset(&unique),
        "ingestion did not go on after the loss"
    );
    assert!(
        unique.is_disjoint(away),
        "the broker queued for a session it forgot?"
    );
    assert_eq!(unique.len(), 2 * BATCH);
}

/// The oracle: every published reading arrives, and no loss is reported.
fn nothing_lost(outage: Outage) {
    let outcome = run_through(outage);
    let counters = &outcome.counters;
    assert_eq!(
        outcome.counter("clemap.sessions_lost"),
        Some(0),
        "{outage:?}: {counters}"
    );
    assert!(
        outcome.warnings().is_empty(),
        "{outage:?}: {:#?}",
        outcome.log
    );
    let published: BTreeSet<Reading> = outcome.published.iter().flatten().cloned().collect();
    assert_eq!(published.len(), 3 * BATCH);
    assert_eq!(outcome.unique(), published, "{outage:?}");
    // QoS 1 may deliver a reading twice, never drop one.
    let decoded = outcome.counter("readings.readings").expect("decoded count");
    assert!(
        decoded >= published.len() as u64,
        "{outage:?}: {decoded} decoded"
    );
    assert_eq!(decoded, outcome.stored.len() as u64, "{outage:?}");
}

#[test]
fn a_broker_that_persists_sessions_loses_nothing_across_sigterm() {
    nothing_lost(Outage::TerminatedWithPersistence);
}

#[test]
fn a_broker_that_persists_sessions_loses_nothing_across_sigkill_after_an_autosave() {
    nothing_lost(Outage::KilledAfterAutosave);
}
