//! Window means, end to end through `smartgrid run`: compared with an oracle computed
//! here from the raw readings the same run stored, and identical for 1 and 2 workers.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const PIPELINE: &str = r#"
pipeline: windows-test
nodes:
  meters:
    type: simulate
    sensors: 7
    seed: 11
    realtime: false
    start: 1700000003000      # not aligned to a window: the first windows are partial
    duration: 5m
  readings:
    type: decode
    input: meters
    format: clemap
  means_10s:
    type: window_mean
    input: readings
    size: 10s
  means_1m:
    type: window_mean
    input: readings
    size: 1m
    fields: [p_l1, p_l2, p_l3]
  raw:
    type: file
    input: readings
    path: raw.jsonl
    format: json
  out_10s:
    type: file
    input: means_10s
    path: means_10s.jsonl
    format: json
  out_1m:
    type: file
    input: means_1m
    path: means_1m.jsonl
    format: json
"#;

type Key = (String, i64);

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn run(workers: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), PIPELINE).expect("write pipeline");
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .args(["run", "p.yaml", "--workers", &workers.to_string()])
        .current_dir(dir.path())
        .env("SMARTGRID_LOG", "warn")
        .output()
        .expect("run smartgrid");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// Mean of each field and the count, per (sensor, window start), from raw readings.
fn oracle(raw: &[serde_json::Value], size_ms: i64, fields: &[&str]) -> BTreeMap<Key, Vec<f64>> {
    let mut sums: BTreeMap<Key, (Vec<f64>, f64)> = BTreeMap::new();
    for r in raw {
        let t = r["time_ms"].as_i64().expect("time");
        let key = (
            r["sensor_id"].as_str().expect("sensor").to_string(),
            t - t.rem_euclid(size_ms),
        );
        let e = sums
            .entry(key)
            .or_insert_with(|| (vec![0.0; fields.len()], 0.0));
        for (s, f) in e.0.iter_mut().zip(fields) {
            *s += r[*f].as_f64().expect("field");
        }
        e.1 += 1.0;
    }
    sums.into_iter()
        .map(|(k, (s, n))| {
            let mut v: Vec<f64> = s.iter().map(|x| x / n).collect();
            v.push(n);
            (k, v)
        })
        .collect()
}

fn windows(out: &[serde_json::Value], fields: &[&str]) -> BTreeMap<Key, Vec<f64>> {
    let mut map = BTreeMap::new();
    for w in out {
        let key = (
            w["sensor_id"].as_str().expect("sensor").to_string(),
            w["time_ms"].as_i64().expect("time"),
        );
        let values = fields
            .iter()
            .chain(["count"].iter())
            .map(|f| w[*f].as_f64().expect("field"))
            .collect();
        assert!(
            map.insert(key.clone(), values).is_none(),
            "window {key:?} emitted twice"
        );
    }
    map
}

fn assert_close(got: &BTreeMap<Key, Vec<f64>>, want: &BTreeMap<Key, Vec<f64>>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same windows"
    );
    for (k, w) in want {
        for (a, b) in got[k].iter().zip(w) {
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                "{k:?}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn window_means_match_an_oracle_and_do_not_depend_on_the_worker_count() {
    let one = run(1);
    let raw = lines(&one.path().join("raw.jsonl"));
    assert_eq!(raw.len(), 7 * 300 * 12, "every simulated reading decoded");

    let all = ["phase", "p_l1", "p_l2", "p_l3", "q_l1", "q_l2", "q_l3"];
    let p = ["p_l1", "p_l2", "p_l3"];
    let want_10s = oracle(&raw, 10_000, &all);
    let want_1m = oracle(&raw, 60_000, &p);
    let got_10s = windows(&lines(&one.path().join("means_10s.jsonl")), &all);
    let got_1m = windows(&lines(&one.path().join("means_1m.jsonl")), &p);
    assert_close(&got_10s, &want_10s);
    assert_close(&got_1m, &want_1m);
    // 5 minutes from second 3: 31 ten-second windows and 6 one-minute windows per sensor.
    assert_eq!(got_10s.len(), 7 * 31);
    assert_eq!(got_1m.len(), 7 * 6);

    let two = run(2);
    assert_eq!(
        windows(&lines(&two.path().join("means_10s.jsonl")), &all),
        got_10s
    );
    assert_eq!(
        windows(&lines(&two.path().join("means_1m.jsonl")), &p),
        got_1m
    );
}

#[test]
fn two_processes_in_cluster_mode_give_the_same_windows_as_one() {
    let single = run(1);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), PIPELINE).expect("write pipeline");
    let hosts = format!(
        "127.0.0.1:{}\n127.0.0.1:{}\n",
        testkit::free_port(),
        testkit::free_port()
    );
    std::fs::write(dir.path().join("hosts"), hosts).expect("write hosts");
    let spawn = |process: &str| {
        Command::new(env!("CARGO_BIN_EXE_smartgrid"))
            .args(["run", "p.yaml", "--hosts", "hosts", "--process", process])
            .current_dir(dir.path())
            .env("SMARTGRID_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("run smartgrid")
    };
    let mut second = spawn("1");
    let mut first = spawn("0");
    assert!(first.wait().expect("wait").success());
    assert!(second.wait().expect("wait").success());
    let all = ["phase", "p_l1", "p_l2", "p_l3", "q_l1", "q_l2", "q_l3"];
    let p = ["p_l1", "p_l2", "p_l3"];
    // Sinks write from worker 0, which lives in process 0: every window is in its files.
    assert_eq!(
        windows(&lines(&dir.path().join("means_10s.jsonl")), &all),
        windows(&lines(&single.path().join("means_10s.jsonl")), &all)
    );
    assert_eq!(
        windows(&lines(&dir.path().join("means_1m.jsonl")), &p),
        windows(&lines(&single.path().join("means_1m.jsonl")), &p)
    );
}
