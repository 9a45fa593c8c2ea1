//! End to end: a real mosquitto (started here on a free loopback port) → `smartgrid run`
//! → files; and the embedded default pipeline as a newcomer runs it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn smartgrid() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smartgrid"))
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Forward a child's stderr lines to a channel (and to our stderr, for failures).
fn watch_stderr(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[smartgrid] {line}");
            let _ = tx.send(line);
        }
    });
    rx
}

fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no line containing {needle:?} within {timeout:?}");
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "smartgrid did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `mosquitto_pub` / `mosquitto_sub` pointed at `broker`, at QoS 1.
fn mosquitto_client(program: &str, broker: &testkit::Mosquitto, topic: &str) -> Command {
    let mut command = Command::new(program);
    command.args([
        "-h",
        "127.0.0.1",
        "-p",
        &broker.port().to_string(),
        "-q",
        "1",
        "-t",
        topic,
    ]);
    command
}

fn seed_vector(kind: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/clemap_vectors.jsonl");
    let text = std::fs::read_to_string(path).expect("the seed vectors in testdata/");
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|v| v["error"] == kind)
        .and_then(|v| hex::decode(v["hex"].as_str()?).ok())
        .unwrap_or_else(|| panic!("a `{kind}` vector"))
}

#[test]
fn mosquitto_to_files_with_dead_letters_and_clean_shutdown() {
    testkit::require_binary("mosquitto");
    testkit::require_binary("mosquitto_pub");
    // mosquitto queues at most 1000 messages per client by default and drops the rest
    // (even at QoS 1); a fast publisher outruns that on a loaded machine. Meter brokers
    // are configured with a larger queue, as docs/operations.md says
    // ("The broker's sessions").
    let broker = testkit::Mosquitto::start_with("max_queued_messages 100000\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = format!(
        r#"
pipeline: e2e
nodes:
  clemap:
    type: mqtt
    url: {url}
    topics: [data/realtime/feature/+]
    qos: 1
    client_id: e2e-test
  readings:
    type: decode
    input: clemap
    format: clemap
    dead_letter:
      file: dead.jsonl
      topic: smartgrid/dead-letters
      url: {url}
  means_10s:
    type: window_mean
    input: readings
    size: 10s
  raw:
    type: file
    input: readings
    path: raw.jsonl
    format: json
  out:
    type: file
    input: means_10s
    path: means.jsonl
    format: json
"#,
        url = broker.url()
    );
    std::fs::write(dir.path().join("p.yaml"), pipeline).expect("write");
    // Two workers: the subscription is on worker 0, so decode routes the readings to
    // the worker owning each sensor before the windows. `--drain`: SIGTERM flushes the
    // open windows (without it they are kept for the next run; see tests/restarts.rs).
    let mut run = smartgrid()
        .args(["run", "p.yaml", "--workers", "2", "--drain"])
        .current_dir(dir.path())
        .env("SMARTGRID_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smartgrid");
    let log = watch_stderr(&mut run);
    wait_for_line(&log, "subscribed", Duration::from_secs(20));
    // A real client listening on the dead-letter topic: it exits after two messages.
    let dead_topic = mosquitto_client("mosquitto_sub", &broker, "smartgrid/dead-letters")
        .args(["-C", "2", "-W", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    std::thread::sleep(Duration::from_millis(500));

    // Two malformed payloads from a real MQTT client, then a minute of three sensors.
    for (i, kind) in ["truncated", "unknown_type"].iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.bin"));
        std::fs::write(&file, seed_vector(kind)).expect("write payload");
        let status = mosquitto_client("mosquitto_pub", &broker, "data/realtime/feature/bad")
            .arg("-f")
            .arg(&file)
            .status()
            .expect("mosquitto_pub");
        assert!(status.success());
    }
    let sim = smartgrid()
        .args([
            "simulate",
            "--broker",
            &broker.url(),
            "--sensors",
            "3",
            "--seed",
            "5",
            "--duration",
            "1m",
            "--fast",
        ])
        .env("SMARTGRID_LOG", "warn")
        .output()
        .expect("simulate");
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let published = 3 * 60 * 12;

    let deadline = Instant::now() + Duration::from_secs(30);
    while lines(&dir.path().join("raw.jsonl")).len() < published && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = terminate(&mut run);
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");

    let raw = lines(&dir.path().join("raw.jsonl"));
    assert_eq!(
        raw.len(),
        published,
        "every published reading arrived and decoded exactly once"
    );
    let dead = lines(&dir.path().join("dead.jsonl"));
    let reasons: Vec<&str> = dead
        .iter()
        .map(|d| d["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(reasons, ["truncated", "unknown_type"]);
    assert_eq!(
        dead[0]["payload_hex"],
        hex::encode(seed_vector("truncated"))
    );
    assert_eq!(dead[0]["topic"], "data/realtime/feature/bad");
    let published_letters = dead_topic.wait_with_output().expect("mosquitto_sub");
    let letters: Vec<serde_json::Value> = String::from_utf8_lossy(&published_letters.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a dead letter is JSON"))
        .collect();
    assert_eq!(
        letters, dead,
        "the dead-letter topic got the same letters as the file"
    );

    // Window means (flushed on shutdown) against the raw readings.
    let means = lines(&dir.path().join("means.jsonl"));
    let mut expected: std::collections::BTreeMap<(String, i64), (f64, f64)> = Default::default();
    for r in &raw {
        let t = r["time_ms"].as_i64().expect("time");
        let e = expected
            .entry((
                r["sensor_id"].as_str().expect("id").into(),
                t - t.rem_euclid(10_000),
            ))
            .or_default();
        e.0 += r["p_l1"].as_f64().expect("p_l1");
        e.1 += 1.0;
    }
    assert_eq!(
        means.len(),
        expected.len(),
        "one mean per sensor and window, none lost at shutdown"
    );
    for m in &means {
        let key = (
            m["sensor_id"].as_str().expect("id").to_string(),
            m["time_ms"].as_i64().expect("time"),
        );
        let (sum, n) = expected[&key];
        assert_eq!(m["count"].as_f64(), Some(n));
        assert!((m["p_l1"].as_f64().expect("p_l1") - sum / n).abs() < 1e-6);
    }
}

#[test]
fn the_embedded_default_shows_10_second_means_within_15_seconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.yaml");
    std::fs::copy(default, dir.path().join("pipeline.yaml")).expect("copy the default pipeline");
    // The default model travels with it (the pipeline names it relative to itself).
    let models = dir.path().join("models/default");
    std::fs::create_dir_all(&models).expect("models folder");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/models/default/model.txt"),
        models.join("model.txt"),
    )
    .expect("copy the default model");
    let started = Instant::now();
    let mut run = smartgrid()
        .args(["run", "pipeline.yaml", "--for", "25s"])
        .current_dir(dir.path())
        .env("SMARTGRID_LOG", "info")
        .env_remove("MQTT_URL")
        .env_remove("SENSORS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smartgrid");
    let _log = watch_stderr(&mut run);
    let stdout = run.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a 10-second mean on stdout");
    assert!(
        started.elapsed() < Duration::from_secs(17),
        "first mean after {:?}",
        started.elapsed()
    );
    assert!(
        first.contains("means_10s") && first.contains("p_l1="),
        "{first}"
    );
    let status = run.wait().expect("wait");
    assert!(status.success());

    let stored =
        std::fs::read_to_string(dir.path().join("data/means_10s.lp")).expect("10 s means stored");
    let sensors: std::collections::BTreeSet<&str> = stored
        .lines()
        .map(|l| {
            l.split(',')
                .find_map(|kv| kv.strip_prefix("sensor_id="))
                .expect("sensor tag")
        })
        .collect();
    assert_eq!(sensors.len(), 5, "the default simulates 5 monitors");
    for line in stored.lines() {
        assert!(
            line.starts_with("means_10s,pipeline=smartgrid-default,sensor_id="),
            "{line}"
        );
    }
    // The stop kept the open windows; a second run restores them and, drained, emits
    // them: every reading is in one 10 s and one 1 min mean, each emitted once.
    assert!(
        dir.path()
            .join(".smartgrid/state/smartgrid-default/p0/checkpoint/manifest.json")
            .exists(),
        "the stop checkpointed the open windows"
    );
    let again = smartgrid()
        .args(["run", "pipeline.yaml", "--for", "3s", "--drain"])
        .current_dir(dir.path())
        .env_remove("MQTT_URL")
        .env_remove("SENSORS")
        .output()
        .expect("run again");
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let counts = |file: &str| -> (f64, usize, usize) {
        let text = std::fs::read_to_string(dir.path().join(file)).expect("means stored");
        let mut keys = std::collections::BTreeSet::new();
        let mut total = 0.0;
        for line in text.lines() {
            let (series, rest) = line.split_once(' ').expect("series");
            let (fields, time) = rest.rsplit_once(' ').expect("time");
            keys.insert((series.to_string(), time.to_string()));
            total += fields
                .split(',')
                .find_map(|f| f.strip_prefix("count="))
                .expect("count")
                .parse::<f64>()
                .expect("a number");
        }
        (total, keys.len(), text.lines().count())
    };
    let (in_10s, windows_10s, lines_10s) = counts("data/means_10s.lp");
    let (in_1m, windows_1m, lines_1m) = counts("data/means_1m.lp");
    assert_eq!(
        (windows_10s, windows_1m),
        (lines_10s, lines_1m),
        "a window emitted twice"
    );
    assert!(
        in_1m > 0.0 && in_1m == in_10s,
        "readings: {in_10s} in 10 s means, {in_1m} in 1 min means"
    );
    let dead =
        std::fs::read_to_string(dir.path().join("data/dead-letters.jsonl")).unwrap_or_default();
    assert!(
        dead.is_empty(),
        "the simulator sends no malformed payloads by default"
    );
}
