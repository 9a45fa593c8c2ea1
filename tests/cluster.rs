//! Three processes of one pipeline on loopback, sharing one MQTT subscription on a real
//! mosquitto (`$share/…`) and writing to a real influxd each from its own process: the
//! windows stored equal one process's over the same messages and the windows computed
//! here from what was published, each process received and wrote a share, and a process
//! killed with SIGKILL (the cluster then restarted from its checkpoints and logs) loses
//! nothing.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::fleet::{
    DECODE, Fleet, FleetOptions, Published, TOPIC_FILTER, expected_windows, stored_windows,
};
use support::{Run, counter};

const PROCESSES: usize = 3;
const WINDOW_MS: i64 = 2_000;
const LOG: &str = "info,smartgrid_runtime::checkpoint=debug";

/// A stored window: (sensor, start in ms) → (count, mean of p).
type Windows = BTreeMap<(String, i64), (u64, f64)>;

/// mqtt (QoS 1, a log) → decode → 2 s windows → influx (v1, database `db`).
fn pipeline(dir: &Path, mqtt: &str, influx: &str, db: &str) -> PathBuf {
    let subscription = format!("topics: [\"{TOPIC_FILTER}\"]");
    pipeline_with(dir, mqtt, &subscription, influx, db)
}

/// [`pipeline`] with the source's `subscription` settings (its topics and `cluster:`).
fn pipeline_with(dir: &Path, mqtt: &str, subscription: &str, influx: &str, db: &str) -> PathBuf {
    let store = format!(
        r#"type: influx
    input: means
    url: {influx}
    api: v1
    db: {db}
    precision: ms
    flush_interval: 200ms"#
    );
    pipeline_to(dir, mqtt, subscription, &store)
}

/// mqtt (QoS 1, a log) with `subscription` → decode → 2 s windows → the node `store`.
fn pipeline_to(dir: &Path, mqtt: &str, subscription: &str, store: &str) -> PathBuf {
    support::write_pipeline(
        dir,
        &format!(
            r#"
pipeline: cluster
state_dir: state
checkpoint_interval: 1s
nodes:
  meters:
    type: mqtt
    url: {mqtt}
    {subscription}
    qos: 1
    keep_alive: 2s
    retry: {{ initial_delay: 1s, max_delay: 2s }}
    wal: {{ max_size: 8MiB }}
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
    {store}
"#
        ),
    )
}

/// A broker that queues without a limit for a session that is away.
fn broker() -> testkit::Mosquitto {
    testkit::Mosquitto::start_with("max_queued_messages 0")
}

/// A hosts file of `PROCESSES` free loopback ports (new ones for every start: a
/// killed cluster's ports may still be held).
fn hosts(dir: &Path) -> PathBuf {
    let path = dir.join("hosts.txt");
    let text: String = (0..PROCESSES)
        .map(|_| format!("127.0.0.1:{}\n", testkit::free_port()))
        .collect();
    std::fs::write(&path, text).expect("hosts file");
    path
}

/// Starts every process of the cluster and waits until each has subscribed.
fn start_cluster(pipeline: &Path, dir: &Path) -> Vec<Run> {
    let hosts = hosts(dir);
    let hosts = hosts.to_str().expect("utf-8 path");
    let runs: Vec<Run> = (0..PROCESSES)
        .map(|i| {
            let args = ["--hosts", hosts, "--process", &i.to_string()];
            // The checkpoints' debug lines say when each process has written one.
            Run::start_with_env(pipeline, &args, &[("SMARTGRID_LOG", LOG)])
        })
        .collect();
    for run in &runs {
        run.wait_for("subscribed");
    }
    runs
}

/// Every window of measurement `means` in `db`.
fn stored(influx: &testkit::Influxd, db: &str) -> Windows {
    let answer = influx.query(db, "SELECT \"count\", p, sensor_id FROM means");
    let json: serde_json::Value = serde_json::from_str(&answer).expect("influx answers JSON");
    let mut windows = Windows::new();
    let Some(series) = json["results"][0]["series"].as_array() else {
        return windows;
    };
    for s in series {
        for row in s["values"].as_array().expect("values") {
            let (time, count, p, sensor) = (&row[0], &row[1], &row[2], &row[3]);
            let key = (
                sensor.as_str().expect("sensor_id").to_string(),
                time.as_i64().expect("time"),
            );
            let value = (
                count.as_f64().expect("count") as u64,
                p.as_f64().expect("p"),
            );
            windows.insert(key, value);
        }
    }
    windows
}

/// Waits until `db` holds exactly the windows `published` makes (bounded), and
/// returns what it holds.
fn wait_for_windows(influx: &testkit::Influxd, db: &str, published: &[Published]) -> Windows {
    let expected = expected_windows(published, WINDOW_MS, |_| true);
    let mut last = Windows::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        last = stored(influx, db);
        if same(&last, &expected) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(k, v)| last.get(*k).is_none_or(|g| !close(g, v)))
        .take(10)
        .map(|(k, v)| format!("{k:?}: want {v:?}, stored {:?}", last.get(k)))
        .collect();
    panic!(
        "{db}: {} windows stored, {} expected; first wrong:\n{}",
        last.len(),
        expected.len(),
        wrong.join("\n")
    );
}

fn close(a: &(u64, f64), b: &(u64, f64)) -> bool {
    a.0 == b.0 && (a.1 - b.1).abs() < 1e-9
}

fn same(got: &Windows, want: &Windows) -> bool {
    got.len() == want.len()
        && want
            .iter()
            .all(|(k, v)| got.get(k).is_some_and(|g| close(g, v)))
}

/// A replay of `sensors` meters, 12 readings a second each for `seconds` of event
/// time from `start_ms`, published as fast as the broker takes them.
fn replay(port: u16, start_ms: i64, sensors: usize, seconds: usize) -> Vec<Published> {
    let mut options = FleetOptions::realtime(sensors);
    options.replay_from_ms = Some(start_ms);
    options.ticks = 12 * seconds;
    let mut fleet = Fleet::start(port, options);
    fleet.wait_published();
    fleet.pause_until_acknowledged();
    fleet.stop(Duration::from_millis(100))
}

#[test]
fn three_processes_share_the_subscription_and_store_what_one_process_does() {
    testkit::require_binary("influxd");
    let influx = testkit::Influxd::start();
    influx.query("alone", "CREATE DATABASE alone");
    influx.query("cluster", "CREATE DATABASE cluster");
    // Whole windows from a fixed start, a few minutes back: the same messages twice.
    let start_ms = (support::fleet::now_ms() / 60_000 - 5) * 60_000;

    // The oracle run: one process over the messages.
    let single_broker = broker();
    let single_dir = tempfile::tempdir().expect("tempdir");
    let single_pipeline = pipeline(
        single_dir.path(),
        &single_broker.url(),
        &influx.url(),
        "alone",
    );
    let single = Run::start(&single_pipeline, &[]);
    single.wait_for("subscribed");
    let published = replay(single_broker.port(), start_ms, 12, 20);
    let alone = wait_for_windows(&influx, "alone", &published);
    let single_counters = single.terminate();
    assert_eq!(
        counter(&single_counters, "meters.messages"),
        Some(published.len() as u64)
    );

    // The cluster over the same messages.
    let cluster_broker = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster_pipeline = pipeline(dir.path(), &cluster_broker.url(), &influx.url(), "cluster");
    let runs = start_cluster(&cluster_pipeline, dir.path());
    let again = replay(cluster_broker.port(), start_ms, 12, 20);
    assert_eq!(
        again
            .iter()
            .map(|r| (r.sensor, r.time_ms))
            .collect::<Vec<_>>(),
        published
            .iter()
            .map(|r| (r.sensor, r.time_ms))
            .collect::<Vec<_>>(),
        "the fleet publishes the same readings again"
    );
    let together = wait_for_windows(&influx, "cluster", &published);
    assert_eq!(together.len(), alone.len());
    for (key, value) in &alone {
        assert!(close(&together[key], value), "{key:?}");
    }

    // Each process received a share of the messages and wrote a share of the windows;
    // together they received each message once.
    for run in &runs {
        run.signal("TERM");
    }
    let counters: Vec<String> = runs.into_iter().map(Run::counters).collect();
    let received: Vec<u64> = counters
        .iter()
        .map(|c| counter(c, "meters.messages").expect("a messages counter"))
        .collect();
    let written: Vec<u64> = counters
        .iter()
        .map(|c| counter(c, "store.written").unwrap_or(0))
        .collect();
    eprintln!("received per process: {received:?}; written per process: {written:?}");
    assert!(received.iter().all(|&n| n > 0), "{received:?}");
    assert_eq!(received.iter().sum::<u64>(), published.len() as u64);
    assert!(written.iter().all(|&n| n > 0), "{written:?}");
    assert_eq!(written.iter().sum::<u64>(), alone.len() as u64);
}

#[test]
fn a_process_killed_with_sigkill_and_the_cluster_restarted_loses_nothing() {
    testkit::require_binary("influxd");
    let influx = testkit::Influxd::start();
    influx.query("cluster", "CREATE DATABASE cluster");
    let mosquitto = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline(dir.path(), &mosquitto.url(), &influx.url(), "cluster");
    let mut runs = start_cluster(&pipeline, dir.path());

    // Meters publish in real time for 12 s, through the crash and the restart.
    let mut options = FleetOptions::realtime(12);
    options.ticks = 12 * 12;
    let mut fleet = Fleet::start(mosquitto.port(), options);
    // Some checkpoints first (every second), then the crash of the middle process.
    for run in &runs {
        run.wait_for("checkpoint written");
    }
    // Cuts are common (each second of watermark) and the first was just written:
    // 2.5 s puts the kill between two, so the restored cut is followed by logged
    // messages to replay.
    std::thread::sleep(Duration::from_millis(2_500));
    runs.remove(1).kill();
    // The others cannot go on without it (timely's model): they stop by themselves,
    // saying why, with exit code 1 and no panic. Each names the first peer it lost:
    // the killed one, or the other survivor if that one was quicker to stop; the
    // first to notice names the killed one.
    let mut named_the_killed = false;
    for mut run in runs {
        outlives_no_peer(&mut run);
        let log = run.log().join("\n");
        assert!(
            log.contains("error: lost the connection to process "),
            "no clear error: {log}"
        );
        named_the_killed |= log.contains("error: lost the connection to process 1 ");
        assert!(!log.contains("panicked"), "a panic: {log}");
        assert_eq!(run.exit_code(), Some(1));
    }
    assert!(named_the_killed, "no survivor named the killed process");

    let restarted = start_cluster(&pipeline, dir.path());
    fleet.wait_published();
    fleet.pause_until_acknowledged();
    let published = fleet.stop(Duration::from_millis(100));
    wait_for_windows(&influx, "cluster", &published);
    for run in &restarted {
        run.signal("TERM");
    }
    let replayed: u64 = restarted
        .into_iter()
        .map(|run| counter(&run.counters(), "meters.wal_replayed").unwrap_or(0))
        .sum();
    // The restart replayed the logs (the windows hold what they replayed, once).
    assert!(replayed > 0, "nothing was replayed after the crash");
}

#[test]
fn without_shared_subscriptions_each_process_takes_its_own_topics() {
    testkit::require_binary("influxd");
    let influx = testkit::Influxd::start();
    influx.query("cluster", "CREATE DATABASE cluster");
    let mosquitto = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    // One filter per meter: process i takes meters i, i + 3, i + 6, i + 9.
    let filters: Vec<String> = (0..12).map(|m| format!("\"meters/m{m:02}\"")).collect();
    let subscription = format!(
        "topics: [{}]\n    cluster: {{ subscribe: topics }}",
        filters.join(", ")
    );
    let pipeline = pipeline_with(
        dir.path(),
        &mosquitto.url(),
        &subscription,
        &influx.url(),
        "cluster",
    );
    let runs = start_cluster(&pipeline, dir.path());
    let start_ms = (support::fleet::now_ms() / 60_000 - 5) * 60_000;
    let published = replay(mosquitto.port(), start_ms, 12, 10);
    wait_for_windows(&influx, "cluster", &published);
    for run in &runs {
        run.signal("TERM");
    }
    let received: Vec<u64> = runs
        .into_iter()
        .map(|run| counter(&run.counters(), "meters.messages").expect("a messages counter"))
        .collect();
    // Four meters' readings each, every one of them.
    let per_meter = (published.len() / 12) as u64;
    assert_eq!(received, vec![4 * per_meter; PROCESSES]);
}

/// mqtt (QoS 1, a log) → decode → 2 s windows → a `file` sink (written by process 0).
fn file_pipeline(dir: &Path, mqtt: &str) -> PathBuf {
    let subscription = format!("topics: [\"{TOPIC_FILTER}\"]");
    let store = "type: file\n    input: means\n    path: means.jsonl\n    format: json";
    pipeline_to(dir, mqtt, &subscription, store)
}

/// Waits for `run`, a survivor of a killed peer, to stop by itself (timely's model: a
/// cluster cannot go on without one of its processes); fails after 30 s.
fn outlives_no_peer(run: &mut Run) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while run.still_running() {
        assert!(
            Instant::now() < deadline,
            "a peer outlived the killed process"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How the cluster is stopped before its restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGKILL of this process; the others stop on their own.
    Kill(usize),
    /// SIGTERM to every process: each writes a stop checkpoint.
    Term,
    /// SIGKILL of this process as if while it wrote its latest checkpoint: its newest
    /// is then left aside as a torn `checkpoint.tmp`, so the others' newest is not one
    /// it holds.
    KillWhileWriting(usize),
}

/// The time in the manifest of `<state>/p<process>/checkpoint`.
fn newest_checkpoint(dir: &Path, process: usize) -> u64 {
    let path = dir.join(format!("state/p{process}/checkpoint/manifest.json"));
    let text = std::fs::read_to_string(&path).expect("a checkpoint");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("json");
    manifest["time"].as_u64().expect("time")
}

/// Stops the cluster as `stop` says while meters publish in real time, restarts it,
/// and checks that process 0's file holds every window once, as computed from what was
/// published: one consistent cut restores every process's windows and the file at the
/// same point, so no window is written twice and none is lost.
fn a_restarted_cluster_writes_each_window_to_a_file_once(stop: Stop) {
    let mosquitto = broker();
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = file_pipeline(dir.path(), &mosquitto.url());
    let out = dir.path().join("means.jsonl");
    let mut runs = start_cluster(&pipeline, dir.path());
    let mut options = FleetOptions::realtime(12);
    options.ticks = 12 * 12;
    let mut fleet = Fleet::start(mosquitto.port(), options);
    for run in &runs {
        run.wait_for("checkpoint written");
    }
    // Some windows in the file first, then the stop between two cuts.
    std::thread::sleep(Duration::from_millis(3_500));
    assert!(
        !stored_windows(&out).is_empty(),
        "no window written before the stop"
    );
    match stop {
        Stop::Kill(victim) | Stop::KillWhileWriting(victim) => {
            runs.remove(victim).kill();
            for mut run in runs {
                outlives_no_peer(&mut run);
            }
        }
        Stop::Term => {
            for run in &runs {
                run.signal("TERM");
            }
            for run in runs {
                run.counters();
            }
        }
    }

    let mut newest_elsewhere = None;
    if let Stop::KillWhileWriting(victim) = stop {
        let state = dir.path().join(format!("state/p{victim}"));
        std::fs::rename(state.join("checkpoint"), state.join("checkpoint.tmp"))
            .expect("tear the victim's newest checkpoint");
        newest_elsewhere = Some(newest_checkpoint(dir.path(), (victim + 1) % PROCESSES));
    }

    let restarted = start_cluster(&pipeline, dir.path());
    for run in &restarted {
        let log = run.log().join("\n");
        let agreed = log
            .lines()
            .find(|l| l.contains("restore the newest checkpoint they all hold"))
            .unwrap_or_else(|| panic!("no checkpoint agreed on:\n{log}"));
        assert_eq!(
            agreed.contains("at_stop=true"),
            stop == Stop::Term,
            "{agreed}"
        );
        if let Some(newest) = newest_elsewhere {
            let time: u64 = agreed
                .split("time=")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("no time in {agreed}"));
            assert!(
                time < newest,
                "{agreed}: not before the others' newest {newest}"
            );
        }
    }
    fleet.wait_published();
    fleet.pause_until_acknowledged();
    let published = fleet.stop(Duration::from_millis(100));
    let expected = expected_windows(&published, WINDOW_MS, |_| true);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut written = stored_windows(&out);
    while written.len() < expected.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        written = stored_windows(&out);
    }
    for run in &restarted {
        run.signal("TERM");
    }
    let logs: Vec<String> = restarted.into_iter().map(Run::counters).collect();
    let repeated: Vec<String> = written
        .iter()
        .filter(|(_, emissions)| emissions.len() > 1)
        .take(10)
        .map(|(key, emissions)| format!("{key:?}: {emissions:?}"))
        .collect();
    assert!(
        repeated.is_empty(),
        "windows written more than once:\n{}\n{logs:?}",
        repeated.join("\n")
    );
    let wrong: Vec<String> = expected
        .iter()
        .filter(|(key, want)| {
            written
                .get(*key)
                .and_then(|e| e.first())
                .is_none_or(|got| !close(got, want))
        })
        .take(10)
        .map(|(key, want)| format!("{key:?}: want {want:?}, wrote {:?}", written.get(key)))
        .collect();
    assert!(
        wrong.is_empty() && written.len() == expected.len(),
        "{} windows written, {} expected; first wrong:\n{}",
        written.len(),
        expected.len(),
        wrong.join("\n")
    );
}

#[test]
fn after_a_sigkill_the_file_holds_every_window_once() {
    a_restarted_cluster_writes_each_window_to_a_file_once(Stop::Kill(1));
}

#[test]
fn after_a_sigkill_of_the_writing_process_the_file_holds_every_window_once() {
    a_restarted_cluster_writes_each_window_to_a_file_once(Stop::Kill(0));
}

#[test]
fn a_process_killed_while_writing_its_checkpoint_restores_the_one_before_everywhere() {
    a_restarted_cluster_writes_each_window_to_a_file_once(Stop::KillWhileWriting(2));
}

#[test]
fn after_a_graceful_stop_every_process_restores_its_stop_checkpoint() {
    a_restarted_cluster_writes_each_window_to_a_file_once(Stop::Term);
}
