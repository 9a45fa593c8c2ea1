//! Messages that must not stop ingestion, against a real mosquitto: each is refused
//! once (counted, dead-lettered) and the pipeline goes on.

mod support;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{Run, broker_log, write_pipeline};

/// A well-formed Clemap type-16 payload (`=Bd12sBqqqqqq`, little-endian) for sensor
/// `id`, stamped `seconds` after the epoch.
fn clemap_payload(id: [u8; 12], seconds: f64) -> Vec<u8> {
    let mut payload = vec![16u8];
    payload.extend_from_slice(&seconds.to_le_bytes());
    payload.extend_from_slice(&id);
    payload.push(1);
    for value in [1_000_000i64, 2_000_000, 3_000_000, 0, 0, 0] {
        payload.extend_from_slice(&value.to_le_bytes());
    }
    assert_eq!(payload.len(), 70);
    payload
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}

#[test]
fn a_reading_stamped_in_2100_is_refused_and_windows_go_on() {
    let broker = testkit::Mosquitto::start_with("max_queued_messages 100000\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = broker.url();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            r"
pipeline: future
nodes:
  meters:
    type: simulate
    sensors: 3
    rate: 12
    publish: {{ url: '{url}', topic: 'data/realtime/feature/{{sensor}}' }}
  clemap: {{ type: mqtt, url: '{url}', client_id: future-source }}
  readings:
    type: decode
    input: clemap
    format: clemap
    dead_letter: {{ file: dead.jsonl }}
  means: {{ type: window_mean, input: readings, size: 1s }}
  store: {{ type: file, input: means, path: means.jsonl, format: json }}
"
        ),
    );
    let run = Run::start(&pipeline, &["--for", "9s"]);
    run.wait_for("subscribed");
    std::thread::sleep(Duration::from_secs(2));
    let injected_ms = now_ms();
    let future = dir.path().join("future.bin");
    std::fs::write(&future, clemap_payload(*b"future-clock", 4_102_444_800.0)).expect("write");
    publish_file(&broker, "data/realtime/feature/future", &future);
    let counters = run.counters();

    assert!(counters.contains("readings.errors.future=1"), "{counters}");
    assert!(counters.contains("means.late=0"), "{counters}");
    let letters = std::fs::read_to_string(dir.path().join("dead.jsonl")).expect("dead letters");
    let letters: Vec<serde_json::Value> = letters
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "future");
    assert_eq!(letters[0]["topic"], "data/realtime/feature/future");
    // Windows kept closing after the future reading: the watermark did not jump.
    let means = std::fs::read_to_string(dir.path().join("means.jsonl")).expect("windows");
    let after = means
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|w| {
            w["time_ms"]
                .as_i64()
                .is_some_and(|t| t > injected_ms + 2_000)
        })
        .count();
    assert!(
        after >= 3 * 3,
        "{after} windows after the future reading:\n{means}"
    );
}

/// How many times the broker accepted a connection from `client_id`.
fn connections(broker: &testkit::Mosquitto, client_id: &str) -> usize {
    broker_log(broker)
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains(&format!(" as {client_id} ")))
        .count()
}

fn publish_file(broker: &testkit::Mosquitto, topic: &str, path: &std::path::Path) {
    let status = broker
        .publisher(topic)
        .arg("-f")
        .arg(path)
        .status()
        .expect("mosquitto_pub");
    assert!(status.success());
}

/// Starts `smartgrid run` for `seconds` and returns once its MQTT source has subscribed.
fn run_until_subscribed(pipeline: &std::path::Path, seconds: u32) -> Run {
    let run = Run::start(pipeline, &["--for", &format!("{seconds}s")]);
    run.wait_for("subscribed");
    run
}

#[test]
fn an_oversized_message_is_refused_once_and_ingestion_goes_on() {
    let broker = testkit::Mosquitto::start_with("max_queued_messages 100000\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = broker.url();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            r"
pipeline: big
nodes:
  meters:
    type: simulate
    sensors: 3
    publish: {{ url: '{url}', topic: 'data/realtime/feature/{{sensor}}' }}
  clemap:
    type: mqtt
    url: '{url}'
    client_id: big-source
    dead_letter: {{ file: refused.jsonl }}
  readings: {{ type: decode, input: clemap, format: clemap }}
  means: {{ type: window_mean, input: readings, size: 1s }}
  store: {{ type: file, input: means, path: means.jsonl, format: json }}
"
        ),
    );
    let run = run_until_subscribed(&pipeline, 10);
    std::thread::sleep(Duration::from_secs(2));
    let injected_ms = now_ms();
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![0x5a; 2 * 1024 * 1024]).expect("write");
    publish_file(&broker, "data/realtime/feature/big", &big);
    let counters = run.counters();

    assert!(counters.contains("clemap.oversized=1"), "{counters}");
    // Refused once: the connection was never broken for it, so it was not redelivered.
    assert_eq!(
        connections(&broker, "big-source"),
        1,
        "{}",
        broker.log_tail()
    );
    let letters = std::fs::read_to_string(dir.path().join("refused.jsonl")).expect("letters");
    let letters: Vec<serde_json::Value> = letters
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["topic"], "data/realtime/feature/big");
    assert_eq!(letters[0]["size"], 2 * 1024 * 1024);
    assert_eq!(letters[0]["reason"], "oversized");
    assert!(letters[0].get("payload").is_none(), "the body is not kept");
    let means = std::fs::read_to_string(dir.path().join("means.jsonl")).expect("windows");
    let after = means
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|w| {
            w["time_ms"]
                .as_i64()
                .is_some_and(|t| t > injected_ms + 2_000)
        })
        .count();
    assert!(after >= 3 * 3, "{after} windows after the big message");
}

#[test]
fn a_dead_letter_too_large_to_publish_is_dropped_and_counted() {
    let broker = testkit::Mosquitto::start_with("max_queued_messages 100000\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = broker.url();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            r"
pipeline: letters
nodes:
  clemap: {{ type: mqtt, url: '{url}', topics: [in/+], client_id: letters-source }}
  readings:
    type: decode
    input: clemap
    format: clemap
    dead_letter: {{ topic: dead/readings, url: '{url}' }}
  store: {{ type: file, input: readings, path: out.lp }}
"
        ),
    );
    let run = run_until_subscribed(&pipeline, 6);
    // 700 KB of garbage: its letter carries the payload in hex, 1.4 MB, over the limit.
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![0x11; 700 * 1024]).expect("write");
    publish_file(&broker, "in/big", &big);
    std::thread::sleep(Duration::from_millis(500));
    let small = dir.path().join("small.bin");
    std::fs::write(&small, b"garbage").expect("write");
    publish_file(&broker, "in/small", &small);
    let counters = run.counters();
    assert!(counters.contains("readings.errors=2"), "{counters}");
    assert!(
        counters.contains("readings.dead_letters.dropped=1"),
        "{counters}"
    );
    // The publisher kept its one connection: nothing was retried for ever.
    assert_eq!(
        connections(&broker, "smartgrid-letters-readings-dead-letters"),
        1,
        "{}",
        broker.log_tail()
    );
}

fn validate_text(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(&pipeline, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .arg("validate")
        .arg(&pipeline)
        .env("SMARTGRID_LOG", "off")
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn names_that_cannot_be_client_ids_are_refused_by_validate() {
    let nodes = "nodes:\n  src: { type: mqtt, url: 'mqtt://127.0.0.1:1883', client_id: CLIENT }\n  d: { type: decode, input: src, format: clemap }\n  out: { type: stdout, input: d }\n";
    let (code, stderr) = validate_text(&format!(
        "pipeline: site/a\n{}",
        nodes.replace("CLIENT", "ok")
    ));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("p.yaml:1:11: invalid pipeline name `site/a`"),
        "{stderr}"
    );
    for bad in ["'meter/7'", "'meter 7'", "'a+b'"] {
        let (code, stderr) = validate_text(&format!(
            "pipeline: site-a\n{}",
            nodes.replace("CLIENT", bad)
        ));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("node `src`: the client id may not contain"),
            "{stderr}"
        );
    }
}

#[test]
fn a_source_that_never_subscribes_fails_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = dir.path().join("p.yaml");
    // Nothing listens on this port.
    let port = testkit::free_port();
    std::fs::write(
        &pipeline,
        format!(
            "pipeline: deaf\nnodes:\n  src: {{ type: mqtt, url: 'mqtt://127.0.0.1:{port}' }}\n  d: {{ type: decode, input: src, format: clemap }}\n  out: {{ type: file, input: d, path: out.lp }}\n"
        ),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .arg("run")
        .arg(&pipeline)
        .args(["--for", "3s"])
        .env("SMARTGRID_LOG", "warn")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("node `src`: never subscribed"), "{stderr}");
}
