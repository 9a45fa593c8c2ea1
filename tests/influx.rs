//! The `influx` sink against real servers started here on loopback: InfluxDB 1.x
//! (`influxd`, v1 API) and VictoriaMetrics (v2 API). Every test runs `smartgrid run` on a
//! pipeline that also writes the same points to a line-protocol file (the oracle) and
//! compares what the database stored with that file, point by point.

// Tests may unwrap (clippy's allow-unwrap-in-tests does not reach helper functions).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use smartgrid_operators::spool::{Spool, SpoolOptions};

/// A point: (measurement, sensor_id, time in ms) → field values.
type Points = BTreeMap<(String, String, i64), BTreeMap<String, f64>>;

fn smartgrid() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smartgrid"))
}

/// Parse the oracle file (line protocol, ms precision, numeric fields, no spaces in tags).
fn read_line_protocol(path: &Path) -> Points {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut points = Points::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.split(' ');
        let (series, fields, time) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let mut series = series.split(',');
        let measurement = series.next().unwrap().to_string();
        let sensor = series
            .find_map(|t| t.strip_prefix("sensor_id="))
            .unwrap()
            .to_string();
        let values = fields
            .split(',')
            .map(|f| {
                let (k, v) = f.split_once('=').unwrap();
                (k.to_string(), v.parse::<f64>().unwrap())
            })
            .collect();
        let old = points.insert((measurement, sensor, time.parse().unwrap()), values);
        assert!(old.is_none(), "the oracle has a point twice: {line}");
    }
    points
}

/// Every point of `measurement` in influxd, as [`Points`].
fn influx_points(db: &testkit::Influxd, database: &str, measurement: &str) -> Points {
    let answer = db.query(database, &format!("SELECT * FROM \"{measurement}\""));
    let json: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let mut points = Points::new();
    let Some(series) = json["results"][0]["series"].as_array() else {
        return points;
    };
    for s in series {
        let columns: Vec<&str> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for row in s["values"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            let mut time = 0;
            let mut sensor = String::new();
            let mut fields = BTreeMap::new();
            for (c, v) in columns.iter().zip(row) {
                match *c {
                    "time" => time = v.as_i64().unwrap(),
                    "sensor_id" => sensor = v.as_str().unwrap().to_string(),
                    "pipeline" => {}
                    field => {
                        if let Some(x) = v.as_f64() {
                            fields.insert(field.to_string(), x);
                        }
                    }
                }
            }
            let old = points.insert((measurement.to_string(), sensor, time), fields);
            assert!(old.is_none(), "influxd returned a point twice");
        }
    }
    points
}

/// Every sample of `measurement`'s fields in VictoriaMetrics, as [`Points`]; panics on a
/// sample stored twice.
fn vm_points(vm: &testkit::VictoriaMetrics, measurement: &str) -> Points {
    let matcher = testkit::urlencode(&format!("{{__name__=~\"{measurement}_.*\"}}"));
    let export = vm.get(&format!("/api/v1/export?match[]={matcher}"));
    let mut points = Points::new();
    for line in export.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = v["metric"]["__name__"].as_str().unwrap();
        let field = name.strip_prefix(&format!("{measurement}_")).unwrap();
        let sensor = v["metric"]["sensor_id"].as_str().unwrap().to_string();
        for (value, time) in v["values"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["timestamps"].as_array().unwrap())
        {
            let fields = points
                .entry((
                    measurement.to_string(),
                    sensor.clone(),
                    time.as_i64().unwrap(),
                ))
                .or_default();
            let old = fields.insert(field.to_string(), value.as_f64().unwrap());
            assert!(
                old.is_none(),
                "VictoriaMetrics holds {name} at {time} twice"
            );
        }
    }
    points
}

/// Relative tolerance for values read back through JSON: `serde_json`'s default float
/// parser may be off by an ulp or two (the stored float64 is exact).
const JSON_ULPS: f64 = 1e-15;

/// Compare stored points with the oracle: the same points, values equal up to `rel`.
fn assert_same(stored: &Points, oracle: &Points, rel: f64) {
    assert!(!oracle.is_empty(), "the oracle is empty");
    let missing: Vec<_> = oracle.keys().filter(|k| !stored.contains_key(*k)).collect();
    let extra: Vec<_> = stored.keys().filter(|k| !oracle.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} points expected, {} stored; {} missing (first {:?}), {} unexpected (first {:?})",
        oracle.len(),
        stored.len(),
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    for (key, fields) in oracle {
        let got = &stored[key];
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            fields.keys().collect::<Vec<_>>(),
            "{key:?}"
        );
        for (f, v) in fields {
            let g = got[f];
            assert!(
                (g - v).abs() <= rel * v.abs().max(1e-9),
                "{key:?} {f}: stored {g}, expected {v}"
            );
        }
    }
}

/// A pipeline: simulated sensors → decode → 1 s means → `sinks` (YAML under `nodes:`).
fn pipeline(name: &str, simulate: &str, sinks: &str) -> String {
    format!(
        "pipeline: {name}
nodes:
  meters:
    type: simulate
{simulate}
  readings:
    type: decode
    input: meters
    format: clemap
  means:
    type: window_mean
    input: readings
    size: 1s
  oracle:
    type: file
    input: means
    path: oracle.lp
    precision: ms
{sinks}"
    )
}

struct Run {
    child: Child,
    log: mpsc::Receiver<String>,
    lines: Vec<String>,
}

fn start(dir: &Path, envs: &[(&str, &str)]) -> Run {
    let mut child = smartgrid()
        .args(["run", "p.yaml"])
        .current_dir(dir)
        .env("SMARTGRID_LOG", "info")
        .envs(envs.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smartgrid");
    let (tx, log) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[smartgrid] {line}");
            let _ = tx.send(line);
        }
    });
    Run {
        child,
        log,
        lines: Vec::new(),
    }
}

impl Run {
    /// Wait for a clean exit; the log lines.
    fn finish(mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.lines.extend(self.log.try_iter());
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                self.lines.extend(self.log.try_iter());
                assert!(status.success(), "smartgrid failed: {status:?}");
                return self.lines;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("smartgrid did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The value of counter `name` in the final "stopped; …" log line.
fn counter(lines: &[String], name: &str) -> u64 {
    let stopped = lines
        .iter()
        .rev()
        .find(|l| l.contains("stopped;"))
        .expect("the final counters line");
    stopped
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .map_or(0, |v| v.trim_matches('"').parse().unwrap())
}

#[test]
fn v1_to_influxd_stores_every_point_and_dead_letters_rejected_batches() {
    testkit::require_binary("influxd");
    let db = testkit::Influxd::start();
    db.query("energy", "CREATE DATABASE energy");
    // `p_l1` of measurement `conflict` is a string field: float points there are bad data.
    // (InfluxDB 1.x types fields per shard: the point is in the simulated data's week.)
    let (status, body) = db.write(
        "energy",
        "conflict,sensor_id=x p_l1=\"text\" 1717199999000\n",
    );
    assert_eq!(status, 204, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  store:
    type: influx
    input: means
    url: {url}
    api: v1
    db: energy
    precision: ms
    batch_size: 300
  conflicting:
    type: influx
    input: means
    url: {url}
    api: v1
    db: energy
    measurement: conflict
    precision: ns
    gzip: false
    dead_letter: rejected.jsonl
",
        url = db.url()
    );
    let simulate = "    sensors: 8\n    seed: 11\n    realtime: false\n    start: 2024-06-01T00:00:00Z\n    duration: 2m";
    std::fs::write(
        dir.path().join("p.yaml"),
        pipeline("v1test", simulate, &sinks),
    )
    .unwrap();
    let lines = start(dir.path(), &[]).finish(Duration::from_secs(60));

    let oracle = read_line_protocol(&dir.path().join("oracle.lp"));
    assert_eq!(oracle.len(), 8 * 120, "8 sensors, 120 one-second windows");
    let oracle: Points = oracle
        .into_iter()
        .map(|((_, s, t), f)| (("means".to_string(), s, t), f))
        .collect();
    assert_same(&influx_points(&db, "energy", "means"), &oracle, JSON_ULPS);
    assert_eq!(counter(&lines, "store.written"), 960);
    assert_eq!(counter(&lines, "store.dead_letters"), 0);

    // Every rejected point is in the dead-letter file with the server's reason.
    let letters: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("rejected.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert!(!letters.is_empty());
    let mut dead = 0;
    for letter in &letters {
        assert_eq!(letter["reason"], "rejected", "{letter}");
        assert_eq!(letter["node"], "conflicting", "{letter}");
        let error = letter["error"].as_str().unwrap();
        assert!(error.starts_with("HTTP 400: "), "{error}");
        assert!(error.contains("field type conflict"), "{error}");
        let batch = letter["lines"].as_str().unwrap();
        assert_eq!(
            batch.lines().count() as u64,
            letter["records"].as_u64().unwrap()
        );
        assert!(batch.lines().all(|l| l.starts_with("conflict,")));
        dead += batch.lines().count();
    }
    assert_eq!(
        dead, 960,
        "every point of the conflicting sink is dead-lettered"
    );
    assert_eq!(counter(&lines, "conflicting.dead_letters"), 960);
    let conflict = db.query("energy", "SELECT count(*) FROM conflict");
    assert!(
        conflict.contains("[[0,1]]"),
        "only the seeding point: {conflict}"
    );
}

#[test]
fn v2_to_victoria_metrics_stores_every_point_once() {
    testkit::require_binary("victoria-metrics");
    let vm = testkit::VictoriaMetrics::start();
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  store:
    type: influx
    input: means
    url: {url}
    org: home
    bucket: energy
    token: ${{INFLUX_TOKEN}}
    precision: ms
    tags: {{ site: lab }}
",
        url = vm.url()
    );
    let simulate = "    sensors: 10\n    seed: 3\n    realtime: false\n    start: 2024-06-01T00:00:00Z\n    duration: 3m";
    std::fs::write(
        dir.path().join("p.yaml"),
        pipeline("v2test", simulate, &sinks),
    )
    .unwrap();
    let lines =
        start(dir.path(), &[("INFLUX_TOKEN", "not-checked-by-vm")]).finish(Duration::from_secs(60));
    assert!(
        lines.iter().all(|l| !l.contains("not-checked-by-vm")),
        "the token is never logged"
    );
    let oracle = read_line_protocol(&dir.path().join("oracle.lp"));
    assert_eq!(oracle.len(), 10 * 180);
    let oracle: Points = oracle
        .into_iter()
        .map(|((_, s, t), f)| (("means".to_string(), s, t), f))
        .collect();
    // VictoriaMetrics stores values as decimals of about 13 significant digits
    // (178.49733333333333 comes back as 178.4973333333): 1e-11 relative, far below any
    // reading's resolution.
    assert_same(&vm_points(&vm, "means"), &oracle, 1e-11);
    let export = vm.get("/api/v1/export?match[]=means_p_l1");
    assert!(export.contains("\"site\":\"lab\""), "{export:.300}");
}

#[test]
fn a_30_second_outage_loses_and_doubles_nothing() {
    testkit::require_binary("influxd");
    let mut db = testkit::Influxd::start();
    db.query("energy", "CREATE DATABASE energy");
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  store:
    type: influx
    input: means
    url: {url}
    api: v1
    db: energy
    precision: ms
    batch_size: 50
    flush_interval: 200ms
    timeout: 2s
    retry: {{ initial_delay: 100ms, max_delay: 2s }}
    spool: {{ max_size: 64MiB }}
",
        url = db.url()
    );
    // Real time: readings arrive during the outage too.
    let simulate = "    sensors: 4\n    seed: 9\n    realtime: true\n    duration: 42s";
    std::fs::write(
        dir.path().join("p.yaml"),
        pipeline("outage", simulate, &sinks),
    )
    .unwrap();
    let run = start(dir.path(), &[]);
    std::thread::sleep(Duration::from_secs(6));
    let before = influx_points(&db, "energy", "means").len();
    assert!(before > 0, "points arrive before the outage");
    db.stop();
    std::thread::sleep(Duration::from_secs(30));
    db.restart();
    let lines = run.finish(Duration::from_secs(60));

    let oracle = read_line_protocol(&dir.path().join("oracle.lp"));
    assert!(oracle.len() >= 4 * 40, "{} windows", oracle.len());
    let oracle: Points = oracle
        .into_iter()
        .map(|((_, s, t), f)| (("means".to_string(), s, t), f))
        .collect();
    assert_same(&influx_points(&db, "energy", "means"), &oracle, JSON_ULPS);
    assert!(
        counter(&lines, "store.spooled") > 0,
        "batches went through the spool"
    );
    assert!(counter(&lines, "store.failures") > 0);
    assert_eq!(counter(&lines, "store.written"), oracle.len() as u64);
    assert!(lines.iter().any(|l| l.contains("accepts writes again")));
}

#[test]
fn kill_9_keeps_the_spool_and_the_next_start_replays_it() {
    testkit::require_binary("influxd");
    let mut db = testkit::Influxd::start();
    db.query("energy", "CREATE DATABASE energy");
    db.stop(); // down for the first run: every batch goes to the spool
    let dir = tempfile::tempdir().unwrap();
    let url = db.url();
    let sinks = |drain: &str| {
        format!(
            "  store:
    type: influx
    input: means
    url: {url}
    api: v1
    db: energy
    precision: ms
    batch_size: 200
    retry: {{ initial_delay: 100ms, max_delay: 1s }}
    spool: {{ dir: spool }}
    drain_timeout: {drain}
"
        )
    };
    let first = "    sensors: 6\n    seed: 5\n    realtime: false\n    start: 2024-06-01T00:00:00Z\n    duration: 3m";
    std::fs::write(
        dir.path().join("p.yaml"),
        pipeline("crash", first, &sinks("10m")),
    )
    .unwrap();
    let mut run = start(dir.path(), &[]);
    // The simulation ends quickly; the sink then keeps retrying (drain_timeout 10m).
    let oracle_path = dir.path().join("oracle.lp");
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_line_protocol(&oracle_path).len() < 6 * 180 {
        assert!(
            Instant::now() < deadline,
            "the first run did not produce its windows"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let wait = Instant::now() + Duration::from_secs(20);
    while !run.log.try_iter().any(|l| l.contains("write failed")) {
        assert!(Instant::now() < wait, "no failed write logged");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    run.child.kill().unwrap(); // SIGKILL
    run.child.wait().unwrap();
    let first_oracle = read_line_protocol(&oracle_path);
    assert_eq!(first_oracle.len(), 6 * 180);

    // Everything the first run produced is in the spool, intact.
    {
        let spool = Spool::open(dir.path().join("spool"), SpoolOptions::default()).unwrap();
        let spooled: usize = spool
            .iter()
            .map(|r| String::from_utf8(r.unwrap()).unwrap().lines().count())
            .sum();
        assert_eq!(
            spooled,
            6 * 180,
            "every window is in the spool after kill -9"
        );
    }

    // Second run, a later hour, the server back: the spool is replayed first.
    db.restart();
    std::fs::remove_file(&oracle_path).unwrap();
    let second = "    sensors: 6\n    seed: 5\n    realtime: false\n    start: 2024-06-01T01:00:00Z\n    duration: 1m";
    std::fs::write(
        dir.path().join("p.yaml"),
        pipeline("crash", second, &sinks("30s")),
    )
    .unwrap();
    let lines = start(dir.path(), &[]).finish(Duration::from_secs(90));
    assert!(lines.iter().any(|l| l.contains("from an earlier run")));
    let second_oracle = read_line_protocol(&oracle_path);
    assert_eq!(second_oracle.len(), 6 * 60);
    let oracle: Points = first_oracle
        .into_iter()
        .chain(second_oracle)
        .map(|((_, s, t), f)| (("means".to_string(), s, t), f))
        .collect();
    assert_same(&influx_points(&db, "energy", "means"), &oracle, JSON_ULPS);
    assert_eq!(counter(&lines, "store.written"), (6 * 180 + 6 * 60) as u64);
    let spool = Spool::open(dir.path().join("spool"), SpoolOptions::default()).unwrap();
    assert!(spool.is_empty(), "the replayed batches were acknowledged");
}

#[test]
fn sigterm_with_the_server_down_spools_everything_and_exits() {
    testkit::require_binary("influxd");
    let mut db = testkit::Influxd::start();
    let url = db.url();
    db.stop();
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  store:
    type: influx
    input: means
    url: {url}
    api: v1
    db: energy
    precision: ms
    flush_interval: 300ms
    retry: {{ initial_delay: 100ms, max_delay: 500ms }}
    spool: {{ dir: spool }}
    drain_timeout: 1s
"
    );
    // Real time, no end: only SIGTERM stops it.
    let simulate = "    sensors: 3\n    seed: 2\n    realtime: true";
    std::fs::write(
        dir.path().join("p.yaml"),
        pipeline("term", simulate, &sinks),
    )
    .unwrap();
    let run = start(dir.path(), &[]);
    std::thread::sleep(Duration::from_secs(4));
    let status = Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let lines = run.finish(Duration::from_secs(20));
    assert!(
        lines.iter().any(|l| l.contains("stay in the spool")),
        "the exit says where the batches are"
    );
    let oracle = read_line_protocol(&dir.path().join("oracle.lp"));
    assert!(oracle.len() >= 3 * 3, "{} windows", oracle.len());
    let spool = Spool::open(dir.path().join("spool"), SpoolOptions::default()).unwrap();
    let mut spooled = Points::new();
    for record in spool.iter() {
        let text = String::from_utf8(record.unwrap()).unwrap();
        let file = dir.path().join("spooled.lp");
        std::fs::write(&file, text).unwrap();
        spooled.extend(read_line_protocol(&file));
    }
    assert_same(&spooled, &oracle, 0.0);
}

#[test]
fn kill_9_mid_run_then_a_rerun_stores_every_point_once() {
    testkit::require_binary("influxd");
    let db = testkit::Influxd::start();
    db.query("energy", "CREATE DATABASE energy");
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  store:
    type: influx
    input: means
    url: {url}
    api: v1
    db: energy
    precision: ms
    batch_size: 20
    flush_interval: 200ms
",
        url = db.url()
    );
    // A fixed start a moment ago, paced in real time: the rerun produces the same
    // readings (catching up at once, then in real time) up to start + 12 s.
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        / 1000
        * 1000;
    let simulate = format!(
        "    sensors: 4\n    seed: 8\n    realtime: true\n    start: {start_ms}\n    duration: 12s"
    );
    std::fs::write(
        dir.path().join("p.yaml"),
        pipeline("rerun", &simulate, &sinks),
    )
    .unwrap();
    let mut run = start(dir.path(), &[]);
    std::thread::sleep(Duration::from_secs(5));
    run.child.kill().unwrap(); // SIGKILL mid-run
    run.child.wait().unwrap();
    let acknowledged = influx_points(&db, "energy", "means");
    assert!(
        !acknowledged.is_empty(),
        "points were stored before the kill"
    );

    std::fs::remove_file(dir.path().join("oracle.lp")).unwrap();
    start(dir.path(), &[]).finish(Duration::from_secs(60));
    let oracle: Points = read_line_protocol(&dir.path().join("oracle.lp"))
        .into_iter()
        .map(|((_, s, t), f)| (("means".to_string(), s, t), f))
        .collect();
    let stored = influx_points(&db, "energy", "means");
    assert!(
        acknowledged.keys().all(|k| stored.contains_key(k)),
        "nothing stored before the kill is lost"
    );
    // Every point once, with the values of the full run (the first run's last, partial
    // windows were overwritten by the rerun's complete ones).
    assert_same(&stored, &oracle, JSON_ULPS);
}

/// A stopped server never holds up the worker: the influx sink's queue is one chunk,
/// its writer stalls on retries and then spools, and the file sink on the same worker
/// still gets every reading while the server is away. Once the server is back, the
/// spool is replayed and the database holds exactly what the file holds.
#[test]
fn a_stopped_server_does_not_hold_up_the_pipeline() {
    testkit::require_binary("influxd");
    let mut db = testkit::Influxd::start();
    db.query("energy", "CREATE DATABASE energy");
    db.stop();
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  store:
    type: influx
    input: means
    url: {url}
    api: v1
    db: energy
    precision: ms
    batch_size: 200
    flush_interval: 100ms
    timeout: 1s
    queue: 1
    retry: {{ initial_delay: 1s, max_delay: 1s, attempts_before_spool: 3 }}
    spool: {{ dir: spool, fsync: false }}
    drain_timeout: 2m
",
        url = db.url()
    );
    // As fast as it goes: 2 simulated hours of 1 s windows for 4 sensors, in the past
    // (readings ahead of the clock are refused).
    let simulate = "    sensors: 4\n    seed: 5\n    realtime: false\n    start: 2026-11-24T00:00:00Z\n    duration: 2h";
    std::fs::write(
        dir.path().join("p.yaml"),
        pipeline("stalled", simulate, &sinks),
    )
    .unwrap();
    let started = Instant::now();
    let run = start(dir.path(), &[]);
    // The file fills up and stops growing while the server is still down: the input
    // has ended, and only the influx sink's drain keeps the process alive.
    let oracle_path = dir.path().join("oracle.lp");
    let mut last = (0, Instant::now());
    loop {
        let n = read_line_protocol(&oracle_path).len();
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the file sink stalled at {n} points with the server down"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let oracle = read_line_protocol(&oracle_path);
    assert!(oracle.len() > 4 * 1000, "{} windows", oracle.len());
    db.restart();
    let lines = run.finish(Duration::from_secs(120));
    let oracle: Points = oracle
        .into_iter()
        .map(|((_, s, t), f)| (("means".to_string(), s, t), f))
        .collect();
    assert_same(&influx_points(&db, "energy", "means"), &oracle, JSON_ULPS);
    assert!(counter(&lines, "store.spooled") > 0, "batches were spooled");
    assert_eq!(counter(&lines, "store.written"), oracle.len() as u64);
    assert_eq!(counter(&lines, "store.dead_letters"), 0);
}
