//! The node lifecycle against a real mosquitto: a run ends only when what its nodes
//! started has delivered (a publishing simulator alone publishes every reading), nodes
//! that publish keep their own MQTT identity, a cluster publishes each reading once,
//! and a node that cannot start stops the run before any worker does, with a clean
//! error.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Run, broker_log, run_cluster, smartgrid, write_pipeline};

/// A `mosquitto_sub` that records `topic hex-payload` lines, subscribed (checked with a
/// probe message) before it is returned.
struct Subscription {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Subscription {
    fn start(broker: &testkit::Mosquitto, topic: &str) -> Self {
        let port = broker.port().to_string();
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-F", "%t %x"])
            .args(["-t", topic, "-t", "probe/#"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub (bash scripts/test.sh installs mosquitto-clients)");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        let subscription = Subscription { child, lines };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !subscription.lines().iter().any(|l| l.starts_with("probe/")) {
            assert!(Instant::now() < deadline, "mosquitto_sub never subscribed");
            let published = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-t", "probe/x", "-m", "p"])
                .status()
                .expect("mosquitto_pub");
            assert!(published.success());
            std::thread::sleep(Duration::from_millis(100));
        }
        subscription
    }

    /// Every line but the probes.
    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    fn messages(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| !l.starts_with("probe/"))
            .collect()
    }

    /// The messages, once their number has not changed for a second (at most `timeout`).
    fn settled(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut last = usize::MAX;
        loop {
            let now = self.messages();
            if now.len() == last || Instant::now() > deadline {
                return now;
            }
            last = now.len();
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the broker closed a connection because another client took its id.
fn taken_over(broker: &testkit::Mosquitto) -> Vec<String> {
    broker_log(broker)
        .lines()
        .filter(|l| l.contains("already connected"))
        .map(str::to_string)
        .collect()
}

fn unique(messages: &[String]) -> usize {
    messages
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

fn run_to_end(pipeline: &Path, args: &[&str]) -> Output {
    smartgrid()
        .arg("run")
        .arg(pipeline)
        .args(args)
        .output()
        .expect("run smartgrid")
}

/// 10 sensors × 12 Hz × 10 s, published as fast as possible.
const READINGS: usize = 1200;

fn publishing_simulator(url: &str) -> String {
    format!(
        r"
pipeline: alone
nodes:
  meters:
    type: simulate
    sensors: 10
    rate: 12
    realtime: false
    start: 2026-11-24T06:00:00Z
    duration: 10s
    publish: {{ url: '{url}', topic: 'meters/{{sensor}}' }}
"
    )
}

#[test]
fn a_publishing_simulator_alone_delivers_every_reading_before_the_run_ends() {
    let broker = testkit::Mosquitto::start_with("max_queued_messages 100000\n");
    let subscription = Subscription::start(&broker, "meters/#");
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(dir.path(), &publishing_simulator(&broker.url()));
    for workers in ["1", "2"] {
        let before = subscription.messages().len();
        let out = run_to_end(&pipeline, &["--workers", workers]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The run has ended: the broker acknowledged everything, so it is all here
        // or on its way from the broker to the subscriber.
        let messages = subscription.settled(Duration::from_secs(20));
        let run = &messages[before..];
        assert_eq!(unique(run), READINGS, "{workers} worker(s)");
        assert!(run.len() >= READINGS, "QoS 1 may repeat, never lose");
    }
}

#[test]
fn a_cluster_publishes_each_simulated_reading_once() {
    let broker = testkit::Mosquitto::start_with("max_queued_messages 100000\n");
    let subscription = Subscription::start(&broker, "meters/#");
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(dir.path(), &publishing_simulator(&broker.url()));
    run_cluster(&pipeline, dir.path());
    let messages = subscription.settled(Duration::from_secs(20));
    assert_eq!(unique(&messages), READINGS);
    // Published by one process only: a second publisher would double every reading, and
    // with the same client id the two would take each other's connection.
    assert!(
        messages.len() < READINGS + READINGS / 10,
        "{} messages for {READINGS} readings",
        messages.len()
    );
    assert_eq!(taken_over(&broker), Vec::<String>::new());
}

/// One bad payload, published `count` times to `topic`.
fn publish_bad_payloads(broker: &testkit::Mosquitto, topic: &str, count: usize) {
    for _ in 0..count {
        let status = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
            .args(["-q", "1", "-t", topic, "-m", "not a clemap payload"])
            .status()
            .expect("mosquitto_pub");
        assert!(status.success());
    }
}

#[test]
fn two_dead_letter_publishers_on_one_broker_both_deliver() {
    let broker = testkit::Mosquitto::start_with("max_queued_messages 100000\n");
    let letters = Subscription::start(&broker, "dead/#");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = broker.url();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            r"
pipeline: twice
nodes:
  clemap: {{ type: mqtt, url: '{url}', topics: [in/+], client_id: twice-source }}
  first:
    type: decode
    input: clemap
    format: clemap
    dead_letter: {{ topic: dead/first, url: '{url}' }}
  second:
    type: decode
    input: clemap
    format: clemap
    dead_letter: {{ topic: dead/second, url: '{url}' }}
  store_first: {{ type: file, input: first, path: first.lp }}
  store_second: {{ type: file, input: second, path: second.lp }}
"
        ),
    );
    let run = Run::start(&pipeline, &[]);
    run.wait_for("subscribed");
    let count = 50;
    publish_bad_payloads(&broker, "in/a", count);
    let deadline = Instant::now() + Duration::from_secs(20);
    let per_topic = |topic: &str| {
        letters
            .messages()
            .iter()
            .filter(|l| l.starts_with(topic))
            .count()
    };
    while (per_topic("dead/first ") < count || per_topic("dead/second ") < count)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    run.terminate();
    assert_eq!(per_topic("dead/first "), count, "dead letters of `first`");
    assert_eq!(per_topic("dead/second "), count, "dead letters of `second`");
    // Each publisher kept its own connection.
    assert_eq!(taken_over(&broker), Vec::<String>::new());
}

fn hold_lock(dir: &Path) -> std::fs::File {
    std::fs::create_dir_all(dir).expect("spool dir");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .expect("lock file");
    lock.try_lock().expect("take the spool's lock");
    lock
}

#[test]
fn a_locked_spool_stops_the_run_before_any_worker_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool");
    let _held = hold_lock(&spool);
    let pipeline = write_pipeline(
        dir.path(),
        r"
pipeline: locked
nodes:
  meters: { type: simulate, sensors: 2, realtime: false, duration: 10s }
  readings: { type: decode, input: meters, format: clemap }
  store: { type: file, input: readings, path: out/readings.lp }
  influx:
    type: influx
    input: readings
    url: http://127.0.0.1:9
    bucket: b
    org: o
    spool: { dir: spool }
",
    );
    for workers in ["1", "2"] {
        let started = Instant::now();
        let out = run_to_end(&pipeline, &["--workers", workers]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("node `influx` failed to start") && stderr.contains("lock"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // No worker ran: the simulator's readings never reached the file sink.
        let stored =
            std::fs::read_to_string(dir.path().join("out/readings.lp")).unwrap_or_default();
        assert!(stored.is_empty(), "{workers} worker(s) wrote {stored}");
    }
}

/// A second run of a pipeline whose state directory another run holds is refused at
/// start with the directory named, and stores nothing.
#[test]
fn a_state_directory_in_use_stops_the_second_run_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _held = hold_lock(&dir.path().join(".smartgrid/state/twice/p0"));
    let pipeline = write_pipeline(
        dir.path(),
        r"
pipeline: twice
nodes:
  meters: { type: simulate, sensors: 2, realtime: false, duration: 10s }
  readings: { type: decode, input: meters, format: clemap }
  store: { type: file, input: readings, path: out/readings.lp }
",
    );
    let out = run_to_end(&pipeline, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("state directory") && stderr.contains("in use by another run"),
        "{stderr}"
    );
    assert!(!dir.path().join("out/readings.lp").exists(), "nothing ran");
}

/// `(reason, payload)` of every dead letter in `paths`, sorted.
fn dead_letters(paths: &[std::path::PathBuf]) -> Vec<(String, String)> {
    let mut letters: Vec<(String, String)> = paths
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
                    (v["reason"].to_string(), v["payload"].to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    letters.sort();
    letters
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(path)
        .expect("sink output")
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_cluster_decodes_and_stores_what_one_process_does() {
    let pipeline = r"
pipeline: split
nodes:
  meters:
    type: simulate
    sensors: 8
    realtime: false
    start: 2026-11-24T06:00:00Z
    duration: 20s
    faults: 0.05
  readings:
    type: decode
    input: meters
    format: clemap
    dead_letter: { file: out/dead.jsonl }
  means: { type: window_mean, input: readings, size: 10s }
  store: { type: file, input: means, path: out/means.lp }
";
    let alone = tempfile::tempdir().expect("tempdir");
    let out = run_to_end(&write_pipeline(alone.path(), pipeline), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cluster = tempfile::tempdir().expect("tempdir");
    let path = write_pipeline(cluster.path(), pipeline);
    run_cluster(&path, cluster.path());
    // The windows, written by the first process only, are the single run's.
    let means = sorted_lines(&cluster.path().join("out/means.lp"));
    assert!(!means.is_empty());
    assert_eq!(means, sorted_lines(&alone.path().join("out/means.lp")));
    // Each process dead-letters what it decoded, in its own file; together they are
    // the single run's.
    let expected = dead_letters(&[alone.path().join("out/dead.jsonl")]);
    assert!(!expected.is_empty(), "the simulator injects faults");
    let first = cluster.path().join("out/dead.jsonl");
    let second = cluster.path().join("out/dead.p1.jsonl");
    assert!(!dead_letters(std::slice::from_ref(&second)).is_empty());
    assert_eq!(dead_letters(&[first, second]), expected);
}
