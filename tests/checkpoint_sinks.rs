//! Sinks in checkpoints, end to end: a `file` sink is cut back to the length its
//! checkpoint saved when the next run restores it (what followed is written again by
//! that run), and the `iothub` outbox is on disk under the state directory unless
//! `spool.dir` says otherwise.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::Run;

/// simulate (real time) → decode → 1 s windows → a JSON file.
fn file_pipeline(dir: &Path) -> PathBuf {
    support::write_pipeline(
        dir,
        r"
pipeline: restarts
state_dir: state
nodes:
  meters: { type: simulate, sensors: 3, realtime: true }
  readings: { type: decode, input: meters, format: clemap }
  means: { type: window_mean, input: readings, size: 1s }
  store: { type: file, input: means, path: means.jsonl, format: json }
",
    )
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Waits until the file holds more than `than` lines.
fn wait_for_lines(path: &Path, than: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while lines(path) <= than {
        assert!(
            Instant::now() < deadline,
            "{} stays at {than} lines",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A run until the file has grown by two lines, then SIGTERM (a stop that keeps
/// state: the sink saves the file's length in the checkpoint); its log.
fn run_until_stopped(pipeline: &Path, out: &Path, log_line: Option<&str>) -> String {
    let before = lines(out);
    let run = Run::start(pipeline, &[]);
    if let Some(needle) = log_line {
        run.wait_for(needle);
    }
    wait_for_lines(out, before + 2);
    run.terminate()
}

fn assert_json_lines(text: &str) {
    for line in text.lines() {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not a JSON line: {line:?}");
    }
}

#[test]
fn a_restored_file_sink_cuts_what_followed_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = file_pipeline(dir.path());
    let out = dir.path().join("means.jsonl");
    run_until_stopped(&pipeline, &out, None);
    assert!(
        dir.path()
            .join("state/p0/checkpoint/manifest.json")
            .exists(),
        "the stop left a checkpoint"
    );
    let saved = std::fs::read_to_string(&out).expect("the first run's means");
    assert_json_lines(&saved);
    // Lines written after the checkpoint (a crash would leave them): the next run
    // writes what followed the checkpoint again, so they must go.
    let mut text = saved.clone();
    text.push_str("{\"after\":\"the checkpoint\"}\n{\"torn\":");
    std::fs::write(&out, &text).expect("append");

    run_until_stopped(
        &pipeline,
        &out,
        Some("its length at the checkpoint restored"),
    );
    let now = std::fs::read_to_string(&out).expect("both runs' means");
    assert!(
        now.starts_with(&saved),
        "the first run's lines are kept as they were"
    );
    assert!(!now.contains("after") && !now.contains("torn"), "{now}");
    assert!(now.len() > saved.len(), "the second run appended");
    assert_json_lines(&now);
}

#[test]
fn a_file_shorter_than_its_checkpoint_is_left_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = file_pipeline(dir.path());
    let out = dir.path().join("means.jsonl");
    run_until_stopped(&pipeline, &out, None);
    // Rotated by someone: only the first line is left.
    let text = std::fs::read_to_string(&out).expect("means");
    let first = format!("{}\n", text.lines().next().expect("a line"));
    std::fs::write(&out, &first).expect("rotate");

    let log = run_until_stopped(&pipeline, &out, Some("fewer than the"));
    let now = std::fs::read_to_string(&out).expect("means");
    assert!(now.starts_with(&first), "{now}");
    assert!(lines(&out) >= 3, "the second run appended: {now}");
    assert_json_lines(&now);
    assert!(!log.contains("cut from"), "{log}");
}

/// A pipeline with an `iothub` sink without `spool:`, and a hub nothing answers for
/// (a loopback port nobody listens on).
fn hub_pipeline(dir: &Path, simulate: &str, window: &str) -> PathBuf {
    let port = testkit::free_port();
    support::write_pipeline(
        dir,
        &format!(
            r"
pipeline: nohub
nodes:
  meters: {{ type: simulate, sensors: 2, {simulate} }}
  readings: {{ type: decode, input: meters, format: clemap }}
  means: {{ type: window_mean, input: readings, size: {window} }}
  hub:
    type: iothub
    input: means
    connection_string: HostName=hub.example;DeviceId=pi;SharedAccessKey=c2VjcmV0
    host: 127.0.0.1
    port: {port}
    connect_timeout: 1s
    drain_timeout: 1s
"
        ),
    )
}

/// Bytes in the outbox's segment files.
fn outbox_bytes(outbox: &Path) -> u64 {
    std::fs::read_dir(outbox)
        .unwrap_or_else(|e| panic!("no outbox at {}: {e}", outbox.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn checked_log(out: &std::process::Output, what: &str) -> String {
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what}: {log}");
    assert!(!log.contains("c2VjcmV0"), "the key leaked: {log}");
    log
}

/// The run starts although the hub is away, and its messages wait on disk under the
/// state directory, for the next run.
#[test]
fn the_iothub_outbox_is_on_disk_under_the_state_directory_by_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = hub_pipeline(dir.path(), "realtime: false, duration: 1m", "10s");
    let run = |what: &str| {
        let out = support::smartgrid()
            .arg("run")
            .arg(&pipeline)
            .output()
            .expect("run");
        checked_log(&out, what)
    };
    let log = run("a first run");
    assert!(log.contains("not reachable yet"), "{log}");
    assert!(log.contains("stay in the spool"), "{log}");
    let outbox = dir.path().join(".smartgrid/state/nohub/p0/hub/outbox");
    assert!(
        outbox_bytes(&outbox) > 0,
        "the messages are in {}",
        outbox.display()
    );
    assert!(!dir.path().join("data/spool").exists(), "no other spool");

    let log = run("a second run");
    assert!(log.contains("messages of an earlier run"), "{log}");
}

/// SIGTERM: the open batch (which `flush_interval` would hold for 30 minutes) goes into
/// the outbox, and the sink's part is in the stop's checkpoint.
#[test]
fn a_stop_puts_the_open_iothub_batch_in_the_outbox_before_the_sink_s_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = hub_pipeline(dir.path(), "realtime: true", "1s");
    let run = Run::start(&pipeline, &[]);
    run.wait_for("not reachable yet");
    std::thread::sleep(Duration::from_millis(2_500));
    run.terminate();
    let state = dir.path().join(".smartgrid/state/nohub/p0");
    assert!(outbox_bytes(&state.join("hub/outbox")) > 0);
    let manifest = std::fs::read_to_string(state.join("checkpoint/manifest.json"))
        .expect("the stop's checkpoint");
    let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("JSON");
    assert!(
        manifest["parts"]
            .as_array()
            .expect("parts")
            .contains(&serde_json::json!(["hub", 0])),
        "{manifest}"
    );
}
