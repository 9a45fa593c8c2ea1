//! The `iothub` sink end to end: `smartgrid run` → TLS → mosquitto standing in for the
//! hub, watched by `mosquitto_sub`. The same means also go to a `file` sink, whose JSON
//! lines are the independent record of what the IoT Hub messages must carry.
//!
//! Logins are not checked here (the SAS token depends on the wall clock); the device
//! client's tests check the token against a password file. The log shows the user name.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::tls::tls_broker;

use serde_json::Value;

const DEVICE: &str = "meter-7";
const HUB: &str = "smartgrid-test.azure-devices.net";

/// (topic, payload) of every message `mosquitto_sub` printed.
type Received = Arc<Mutex<Vec<(String, String)>>>;

struct Setup {
    broker: testkit::Mosquitto,
    dir: tempfile::TempDir,
    received: Received,
    watcher: Child,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.watcher.kill();
        let _ = self.watcher.wait();
    }
}

/// mosquitto over TLS and a `mosquitto_sub` on the device's events topic.
fn setup() -> Setup {
    testkit::require_binary("mosquitto");
    testkit::require_binary("mosquitto_sub");
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = tls_broker(dir.path(), "max_queued_messages 100000\n");
    let (watcher, received) = watch(&broker, dir.path());
    Setup {
        broker,
        dir,
        received,
        watcher,
    }
}

/// `mosquitto_sub` on the device's events topic, collecting (topic, payload) pairs.
fn watch(broker: &testkit::Mosquitto, dir: &Path) -> (Child, Received) {
    let connected_before = broker.log_tail().matches("as observer").count();
    let mut watcher = Command::new(testkit::find_binary("mosquitto_sub").expect("found"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port().to_string(),
            "-q",
            "1",
            "-v",
        ])
        .arg("--cafile")
        .arg(dir.join("ca.pem"))
        .args([
            "-i",
            "observer",
            "-t",
            &format!("devices/{DEVICE}/messages/events/#"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto_sub");
    let received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    let stdout = watcher.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // `-v`: topic, a space, the payload (JSON without spaces).
            if let Some((topic, payload)) = line.split_once(' ') {
                sink.lock()
                    .expect("lock")
                    .push((topic.to_string(), payload.to_string()));
            }
        }
    });
    // mosquitto_sub is subscribed once the broker logs it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.log_tail().matches("as observer").count() == connected_before {
        assert!(Instant::now() < deadline, "mosquitto_sub did not connect");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    (watcher, received)
}

fn pipeline(setup: &Setup, simulate: &str, window: &str, max_bytes: usize) -> String {
    pipeline_with(setup, simulate, window, max_bytes, "")
}

fn pipeline_with(
    setup: &Setup,
    simulate: &str,
    window: &str,
    max_bytes: usize,
    extra: &str,
) -> String {
    format!(
        r#"
pipeline: cloud
nodes:
  meters:
    type: simulate
    sensors: 3
{simulate}
  readings:
    type: decode
    input: meters
    format: clemap
  means:
    type: window_mean
    input: readings
    size: {window}
  cloud:
    type: iothub
    input: means
    connection_string: ${{IOTHUB_CONNECTION_STRING}}
    host: 127.0.0.1
    port: {port}
    tls: {{ ca_file: ca.pem }}
    max_message_bytes: {max_bytes}
    flush_interval: 1h
    properties: {{type: means}}
    spool: {{ dir: outbox }}
{extra}
  store:
    type: file
    input: means
    path: means.jsonl
    format: json
"#,
        port = setup.broker.port()
    )
}

fn smartgrid(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smartgrid"));
    command
        .args(["run", "p.yaml"])
        .current_dir(dir)
        .env(
            "IOTHUB_CONNECTION_STRING",
            format!(
                "HostName={HUB};DeviceId={DEVICE};SharedAccessKey=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
            ),
        )
        .env("SMARTGRID_LOG", "info");
    command
}

/// The file sink's means: the IoT Hub records are the same JSON records.
fn expected_records(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("means.jsonl"))
        .expect("the file sink's output")
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect()
}

/// Waits until `count` messages arrived and no more come for a second.
fn messages(setup: &Setup, at_least: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = (0, Instant::now());
    loop {
        let n = setup.received.lock().expect("lock").len();
        if n != last.0 {
            last = (n, Instant::now());
        }
        if n >= at_least && last.1.elapsed() > Duration::from_secs(1) {
            return setup.received.lock().expect("lock").clone();
        }
        assert!(Instant::now() < deadline, "{n} messages after 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Greedy packing of records of these lengths into `[a,b,…]` of at most `max` bytes.
fn greedy_count(lengths: &[usize], max: usize) -> usize {
    let (mut count, mut size) = (0, 0);
    for &len in lengths {
        if size > 0 && size + 1 + len <= max {
            size += 1 + len;
        } else {
            count += 1;
            size = len + 2;
        }
    }
    count
}

fn check(setup: &Setup, received: &[(String, String)], max_bytes: usize) -> usize {
    let topic =
        format!("devices/{DEVICE}/messages/events/$.ct=application%2Fjson&$.ce=utf-8&type=means");
    let mut records = Vec::new();
    for (t, payload) in received {
        assert_eq!(t, &topic);
        assert!(
            payload.len() <= max_bytes,
            "{} > {max_bytes}",
            payload.len()
        );
        let array: Vec<Value> = serde_json::from_str(payload).expect("a JSON array");
        records.extend(array);
    }
    let expected = expected_records(setup.dir.path());
    assert!(!expected.is_empty());
    assert_eq!(records, expected, "every mean, once, in order");
    let lengths: Vec<usize> = records.iter().map(|r| r.to_string().len()).collect();
    assert_eq!(received.len(), greedy_count(&lengths, max_bytes));
    records.len()
}

#[test]
fn a_run_sends_every_mean_packed_into_blocks() {
    let setup = setup();
    let max_bytes = 1024;
    std::fs::write(
        setup.dir.path().join("p.yaml"),
        pipeline(
            &setup,
            "    realtime: false\n    duration: 10m",
            "10s",
            max_bytes,
        ),
    )
    .expect("write");
    let out = smartgrid(setup.dir.path()).output().expect("run");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("everything acknowledged"), "{log}");

    let expected = expected_records(setup.dir.path()).len();
    let received = messages(&setup, 2);
    let records = check(&setup, &received, max_bytes);
    assert_eq!(records, expected);
    assert!(received.len() > 5, "{} messages", received.len());
    // The hub's user name shape, as the broker saw it.
    let log = std::fs::read_to_string(setup.broker.dir().join("mosquitto.log")).expect("log");
    assert!(
        log.contains(&format!("u'{HUB}/{DEVICE}/?api-version=2021-04-12'")),
        "{log}"
    );
}

#[test]
fn sigterm_sends_the_open_batch() {
    let setup = setup();
    // Neither size (256 KB) nor time (1 h) closes a batch during the run: only the
    // shutdown does.
    let max_bytes = 262_144;
    std::fs::write(
        setup.dir.path().join("p.yaml"),
        pipeline(&setup, "    realtime: true", "1s", max_bytes),
    )
    .expect("write");
    let mut run = smartgrid(setup.dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let stderr = run.stderr.take().expect("piped");
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().expect("lock");
            log.push_str(&line);
            log.push('\n');
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.lock().expect("lock").contains("connected to IoT Hub") {
        assert!(Instant::now() < deadline, "{}", log.lock().expect("lock"));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        setup.received.lock().expect("lock").is_empty(),
        "nothing is sent before the batch closes"
    );
    let status = Command::new("kill")
        .args(["-TERM", &run.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = run.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log.lock().expect("lock").clone();
    assert!(status.success(), "{log}");
    assert!(log.contains("everything acknowledged"), "{log}");
    let received = messages(&setup, 1);
    assert_eq!(received.len(), 1, "one batch");
    let records = check(&setup, &received, max_bytes);
    assert!(records >= 3, "{records} records");
}

/// With the hub unreachable, a run ends with its messages in the spool folder; the
/// next run sends them first, then its own.
#[test]
fn the_spool_keeps_messages_for_the_next_run() {
    let mut setup = setup();
    let max_bytes = 1024;
    std::fs::write(
        setup.dir.path().join("p.yaml"),
        pipeline_with(
            &setup,
            "    realtime: false\n    duration: 5m",
            "10s",
            max_bytes,
            "    drain_timeout: 2s",
        ),
    )
    .expect("write");
    let _ = setup.watcher.kill();
    let _ = setup.watcher.wait();
    setup.broker.stop();
    let out = smartgrid(setup.dir.path()).output().expect("run");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("stay in the spool"), "{log}");
    let first_run = expected_records(setup.dir.path()).len();

    setup.broker.restart();
    let (watcher, received) = watch(&setup.broker, setup.dir.path());
    setup.watcher = watcher;
    setup.received = received;
    let out = smartgrid(setup.dir.path()).output().expect("run");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("earlier run"), "{log}");
    assert!(log.contains("everything acknowledged"), "{log}");

    // The file sink appended both runs' means: the first run's come first.
    let expected = expected_records(setup.dir.path());
    // (Each run starts now, so the partial windows at its ends differ in number.)
    assert!(
        expected.len() > first_run + first_run / 2,
        "{}",
        expected.len()
    );
    let received = messages(&setup, 2);
    let mut records = Vec::new();
    let mut boundary = None;
    for (_, payload) in &received {
        assert!(payload.len() <= max_bytes);
        records.extend(serde_json::from_str::<Vec<Value>>(payload).expect("JSON array"));
        if records.len() == first_run {
            boundary = Some(records.len());
        }
    }
    assert_eq!(records, expected, "both runs' means, once each, in order");
    assert_eq!(boundary, Some(first_run), "no message mixes the two runs");
    let lengths: Vec<usize> = records.iter().map(|r| r.to_string().len()).collect();
    assert_eq!(
        received.len(),
        greedy_count(&lengths[..first_run], max_bytes)
            + greedy_count(&lengths[first_run..], max_bytes)
    );
}
