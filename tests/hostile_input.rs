//! Messages that must not stop ingestion, against a real mosquitto: each is refused
//! once (counted, dead-lettered) and the pipeline goes on.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
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
    )
    .expect("write pipeline");
    let mut run = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .arg("run")
        .arg(&pipeline)
        .args(["--for", "9s"])
        .env("SMARTGRID_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smartgrid");
    let stderr = run.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[smartgrid] {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rx
        .recv_timeout(Duration::from_millis(100))
        .is_ok_and(|l| l.contains("subscribed"))
    {
        assert!(Instant::now() < deadline, "the source never subscribed");
    }
    std::thread::sleep(Duration::from_secs(2));
    let injected_ms = now_ms();
    let future = dir.path().join("future.bin");
    std::fs::write(&future, clemap_payload(*b"future-clock", 4_102_444_800.0)).expect("write");
    let status = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-q",
            "1",
        ])
        .args(["-t", "data/realtime/feature/future"])
        .arg("-f")
        .arg(&future)
        .status()
        .expect("mosquitto_pub");
    assert!(status.success());
    let mut counters = String::new();
    for line in rx.iter() {
        if line.contains("stopped;") {
            counters = line;
        }
    }
    assert!(run.wait().expect("wait").success());

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
