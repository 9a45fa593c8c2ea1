//! `smartgrid retrain` (feature `train`) through the real binary, against real servers
//! on loopback (Azurite for blobs, mosquitto for MQTT):
//!
//! * the same triplets from JSON-lines files, from IoT Hub routing blobs in Azurite
//!   (both `Body` encodings) and from an MQTT topic give the same training rows, and
//!   those rows (features, actual, weight) are what the test computes from the
//!   triplets it generated (good ones weighted 1/sample_good);
//! * bad triplets (malformed JSON, a missing feature) are counted and skipped with
//!   their place named;
//! * a candidate that beats the active model is published: signed (`model verify`
//!   accepts it), active in the registry, announced retained on the broker; a later,
//!   worse candidate is not published and nothing new is announced;
//! * training is deterministic: the same triplets give the same model bytes (once
//!   configured by a file, once by flags);
//! * the service trains once enough new triplets have arrived.
#![cfg(feature = "train")]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::cli::{Noise, arg, smartgrid, text};

use base64::Engine;
use serde_json::{Value, json};

const SAMPLE_GOOD: f64 = 0.25;

fn feature_names() -> Vec<String> {
    let mut names = Vec::new();
    for lag in 0..=5 {
        for phase in ["p_l1", "p_l2", "p_l3"] {
            names.push(if lag == 0 {
                phase.to_owned()
            } else {
                format!("{phase}-{lag}")
            });
        }
    }
    names
}

/// Each phase's mean power: the simulated households return towards it.
const MEAN: [f64; 3] = [500.0, 300.0, 800.0];

/// Triplet records as `compare_with_lag` writes them, for 4 sensors: each phase
/// returns 80 % of the way to its mean each window, plus noise, so the next window is
/// not this one (persistence misses the return, a model learns it). Some are flagged,
/// the rest are "sampled good" ones.
fn triplets(n: usize, seed: u64) -> Vec<Value> {
    let mut noise = Noise(seed);
    let names = feature_names();
    let mut out = Vec::new();
    let sensors = 4;
    let mut history: Vec<Vec<[f64; 3]>> = (0..sensors).map(|_| vec![MEAN; 7]).collect();
    for i in 0..n {
        let s = i % sensors;
        let h = &mut history[s];
        let last = h[h.len() - 1];
        let mut next = [0.0; 3];
        for p in 0..3 {
            next[p] = last[p] + 0.8 * (MEAN[p] - last[p]) + (noise.next() - 0.5) * 200.0;
        }
        h.push(next);
        let len = h.len();
        // features: the window before `next` and its five predecessors
        let mut record = serde_json::Map::new();
        record.insert("sensor_id".into(), json!(format!("meter-{s}")));
        let time_ms = 1_700_000_000_000i64 + (i / sensors) as i64 * 10_000;
        record.insert("time".into(), json!("2023-11-14T22:13:20.000Z"));
        record.insert("time_ms".into(), json!(time_ms));
        let actual: f64 = next.iter().sum();
        let predicted = h[len - 2].iter().sum::<f64>();
        let flagged = (actual - predicted).abs() > 150.0;
        record.insert("predicted".into(), json!(predicted));
        record.insert("actual".into(), json!(actual));
        record.insert("error".into(), json!(actual - predicted));
        record.insert("target_time".into(), json!(time_ms + 10_000));
        record.insert("model_version".into(), json!(12345));
        record.insert("flagged".into(), json!(if flagged { 1.0 } else { 0.0 }));
        for (k, name) in names.iter().enumerate() {
            let lag = k / 3;
            record.insert(name.clone(), json!(h[len - 2 - lag][k % 3]));
        }
        out.push(Value::Object(record));
    }
    out
}

/// The rows CSV the test expects for `records` (oldest first, by time then sensor).
fn expected_rows(records: &[Value], holdout: f64) -> Vec<String> {
    let names = feature_names();
    let mut sorted: Vec<&Value> = records.iter().collect();
    sorted.sort_by_key(|r| {
        (
            r["time_ms"].as_i64(),
            r["sensor_id"].as_str().map(str::to_owned),
        )
    });
    let n = sorted.len();
    let split = n - ((n as f64) * holdout).ceil() as usize;
    sorted
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut cells = vec![
                r["sensor_id"].as_str().unwrap_or_default().to_owned(),
                r["time_ms"].to_string(),
            ];
            cells.extend(
                names
                    .iter()
                    .map(|f| r[f].as_f64().unwrap_or(f64::NAN).to_string()),
            );
            cells.push(r["actual"].as_f64().unwrap_or(f64::NAN).to_string());
            let weight = if r["flagged"].as_f64() == Some(1.0) {
                1.0
            } else {
                1.0 / SAMPLE_GOOD
            };
            cells.push(weight.to_string());
            cells.push(u8::from(i >= split).to_string());
            cells.join(",")
        })
        .collect()
}

struct Setup {
    dir: tempfile::TempDir,
    key: PathBuf,
    public: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("a temp dir");
    let keys = dir.path().join("keys");
    let out = smartgrid()
        .args(["keys", "generate", "--out", arg(&keys)])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    Setup {
        key: keys.join("model-signing.key"),
        public: keys.join("model-signing.pub"),
        dir,
    }
}

/// A config file in the setup's directory; `sources` and `extra` are YAML lines.
fn config(s: &Setup, name: &str, registry: &str, sources: &str, extra: &str) -> PathBuf {
    let path = s.dir.path().join(name);
    let text = format!(
        "sources:\n{sources}\nsample_good: {SAMPLE_GOOD}\nholdout: 0.25\nmargin: 0.02\n\
         min_triplets: 50\ntraining: {{trees: 60, num_leaves: 15, params: [objective=regression_l1, min_data_in_leaf=5]}}\n\
         registry: {registry}\nsigning_key: {}\n{extra}",
        arg(&s.key)
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn retrain(config: &Path, args: &[&str]) -> (Value, String) {
    let out = smartgrid()
        .args(["retrain", "--config", arg(config)])
        .args(args)
        .output()
        .expect("run smartgrid retrain");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON report: {}", text(&out)));
    (report, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn csv_rows(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("rows file")
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// The retained message on `topic`, or `None` if there is none (within 3 s).
fn retained(broker: &testkit::Mosquitto, topic: &str) -> Option<Value> {
    broker
        .retained(topic)
        .map(|text| serde_json::from_str(&text).expect("an announcement is JSON"))
}

#[test]
fn files_blobs_and_mqtt_give_the_same_weighted_rows_and_bad_triplets_are_skipped() {
    testkit::require_binary("mosquitto");
    let s = setup();
    let records = triplets(240, 7);
    let expected = expected_rows(&records, 0.25);

    // 1. JSON lines: single records, a batch array, and two bad lines
    let file = s.dir.path().join("triplets.jsonl");
    let mut lines: Vec<String> = records[..200].iter().map(Value::to_string).collect();
    lines.push(Value::Array(records[200..].to_vec()).to_string());
    lines.insert(10, "{\"sensor_id\": \"meter-0\", truncated".into());
    let mut missing = records[0].clone();
    missing.as_object_mut().map(|m| m.remove("p_l2-3"));
    missing["time_ms"] = json!(1);
    lines.insert(20, missing.to_string());
    std::fs::write(&file, lines.join("\n") + "\n").expect("write triplets");
    let cfg = config(
        &s,
        "files.yaml",
        "registry-files",
        &format!("  files: [{}]", arg(&file)),
        "",
    );
    let rows_files = s.dir.path().join("rows-files.csv");
    let (report, stderr) = retrain(&cfg, &["--dry-run", "--rows-out", arg(&rows_files)]);
    assert_eq!(report["bad_triplets"], 2, "{report}");
    assert_eq!(report["triplets"], 240, "{report}");
    assert!(stderr.contains("line 11: malformed JSON"), "{stderr}");
    assert!(stderr.contains("line 21: no `p_l2-3` field"), "{stderr}");
    assert_eq!(
        csv_rows(&rows_files),
        expected,
        "rows from files vs the test's own"
    );

    // 2. IoT Hub routing blobs in Azurite: {hub}/{partition}/YYYY/MM/DD/HH/mm, JSON lines
    //    of envelopes; even blobs carry JSON bodies, odd ones base64 (no content type)
    let azurite = testkit::Azurite::start();
    azurite.create_container("triplets");
    for (b, chunk) in records.chunks(60).enumerate() {
        let mut blob = String::new();
        for (i, record) in chunk.iter().enumerate() {
            // the iothub sink packs records into arrays: every third message is a batch of one
            let message = if i % 3 == 0 {
                json!([record])
            } else {
                record.clone()
            };
            let body = if b % 2 == 0 {
                message
            } else {
                json!(base64::engine::general_purpose::STANDARD.encode(message.to_string()))
            };
            let envelope = json!({
                "EnqueuedTimeUtc": "2023-11-14T22:14:00.0000000Z",
                "Properties": {"type": "prediction_error"},
                "SystemProperties": {"connectionDeviceId": "pi-1", "enqueuedTime": "2023-11-14T22:14:00.0000000Z"},
                "Body": body,
            });
            blob.push_str(&envelope.to_string());
            blob.push('\n');
        }
        azurite.put_blob(
            "triplets",
            &format!("myhub/{b}/2023/11/14/22/{:02}", 10 + b),
            blob.as_bytes(),
        );
    }
    // outside the prefix (not read), and a blob of damaged envelopes (read, skipped)
    azurite.put_blob(
        "triplets",
        "otherhub/0/2023/11/14/22/10",
        b"{\"Body\": 5}\n",
    );
    azurite.put_blob(
        "triplets",
        "myhub/9/2023/11/14/23/00",
        b"{\"Body\": \"not base64!\"}\n{\"EnqueuedTimeUtc\": 1}\n{\"Body\": {\"sensor_id\": \"x\"}",
    );
    let sources = format!(
        "  blob:\n    account_url: {}\n    container: triplets\n    prefix: myhub/\n    account: {}\n    key_env: TEST_AZURITE_KEY",
        azurite.account_url(),
        testkit::AZURITE_ACCOUNT
    );
    let cfg = config(&s, "blob.yaml", "registry-blob", &sources, "");
    let rows_blob = s.dir.path().join("rows-blob.csv");
    let out = smartgrid()
        .args([
            "retrain",
            "--config",
            arg(&cfg),
            "--dry-run",
            "--rows-out",
            arg(&rows_blob),
        ])
        .env("TEST_AZURITE_KEY", testkit::AZURITE_KEY)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(testkit::AZURITE_KEY));
    for (line, reason) in [
        (1, "not base64"),
        (2, "no `Body` field"),
        (3, "malformed JSON"),
    ] {
        let place = format!("blob myhub/9/2023/11/14/23/00 line {line}: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&place) && l.contains(reason)),
            "{place}{reason}: {stderr}"
        );
    }
    assert_eq!(
        csv_rows(&rows_blob),
        expected,
        "rows from blobs vs the test's own"
    );

    // 3. MQTT: one message per triplet, sent once the trainer has subscribed
    let broker = testkit::Mosquitto::start();
    let sources = format!(
        "  mqtt:\n    url: {}\n    topic: test/triplets\n    listen: 4s",
        broker.url()
    );
    let cfg = config(&s, "mqtt.yaml", "registry-mqtt", &sources, "");
    let rows_mqtt = s.dir.path().join("rows-mqtt.csv");
    let mut child = smartgrid()
        .args([
            "retrain",
            "--config",
            arg(&cfg),
            "--dry-run",
            "--rows-out",
            arg(&rows_mqtt),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut line = String::new();
    while !line.contains("subscribed to test/triplets") {
        line.clear();
        let n = stderr.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "retrain ended before subscribing");
    }
    let mut publisher = broker
        .publisher("test/triplets")
        .arg("-l")
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    {
        let mut stdin = publisher.stdin.take().expect("piped");
        for record in &records {
            writeln!(stdin, "{record}").expect("to mosquitto_pub");
        }
    }
    assert!(publisher.wait().expect("mosquitto_pub").success());
    let out = child.wait_with_output().expect("retrain");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        csv_rows(&rows_mqtt),
        expected,
        "rows from MQTT vs the test's own"
    );
}

#[test]
fn a_better_candidate_is_published_signed_and_announced_a_worse_one_is_not() {
    testkit::require_binary("mosquitto");
    let s = setup();
    let broker = testkit::Mosquitto::start();
    let file = s.dir.path().join("triplets.jsonl");
    let records = triplets(2000, 11);
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("write triplets");
    let announce = format!(
        "announce: {{broker: {}, topic: test/model, base_url: 'http://127.0.0.1:8900'}}\n",
        broker.url()
    );
    let sources = format!("  files: [{}]", arg(&file));
    let cfg = config(&s, "retrain.yaml", "registry", &sources, &announce);

    // the registry is empty: the candidate must beat persistence, which the return defeats
    let (report, _) = retrain(&cfg, &[]);
    let version = report["published"]
        .as_str()
        .unwrap_or_else(|| panic!("not published: {report}"))
        .to_owned();
    let mae = &report["mae"];
    assert!(
        mae["candidate"].as_f64() < mae["persistence"].as_f64(),
        "{report}"
    );
    let model = s
        .dir
        .path()
        .join("registry/versions")
        .join(&version)
        .join("model.txt");
    let out = smartgrid()
        .args([
            "model",
            "verify",
            "--public-key",
            arg(&s.public),
            arg(&model),
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(model.with_file_name("model.txt.manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(manifest["version"], json!(version));
    assert_eq!(manifest["parent"], Value::Null);
    assert_eq!(manifest["training_rows"], report["training_rows"]);
    assert_eq!(manifest["metrics"]["mae"], mae["candidate"]);
    let state: Value = serde_json::from_slice(
        &std::fs::read(s.dir.path().join("registry/state.json")).expect("state"),
    )
    .expect("JSON");
    assert_eq!(state["active"], json!(version));
    let announced = retained(&broker, "test/model").expect("a retained announcement");
    assert_eq!(
        announced["manifest"], manifest,
        "the announcement carries the manifest as written"
    );
    assert_eq!(
        announced["url"],
        json!(format!("http://127.0.0.1:8900/models/{version}/model.txt"))
    );

    // a weak candidate (two trees) loses to the active version: nothing changes
    let (report, _) = retrain(&cfg, &["--trees", "2"]);
    assert_eq!(report["published"], Value::Null, "{report}");
    assert!(
        report["mae"]["candidate"].as_f64() > report["mae"]["active"].as_f64(),
        "{report}"
    );
    assert!(
        report["reason"]
            .as_str()
            .is_some_and(|r| r.contains("does not beat the active model")),
        "{report}"
    );
    let versions = std::fs::read_dir(s.dir.path().join("registry/versions"))
        .expect("versions")
        .count();
    assert_eq!(versions, 1);
    assert_eq!(
        retained(&broker, "test/model").expect("still retained")["manifest"]["version"],
        json!(version)
    );
}

/// Also: flags configure a run as the file's keys do.
#[test]
fn the_same_triplets_give_the_same_model_bytes() {
    let s = setup();
    let file = s.dir.path().join("triplets.jsonl");
    let lines: Vec<String> = triplets(600, 3).iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n") + "\n").expect("write triplets");
    let sources = format!("  files: [{}]", arg(&file));
    // the second run has only LightGBM's settings in its file, the rest as flags
    let training = s.dir.path().join("training.yaml");
    std::fs::write(
        &training,
        "min_triplets: 50\ntraining: {trees: 60, num_leaves: 15, params: [objective=regression_l1, min_data_in_leaf=5]}\n",
    )
    .expect("write config");
    let two = s.dir.path().join("two");
    let flags = [
        "--file",
        arg(&file),
        "--registry",
        arg(&two),
        "--signing-key",
        arg(&s.key),
        "--sample-good",
        "0.25",
        "--holdout",
        "0.25",
        "--margin",
        "0.02",
    ];
    let mut models = Vec::new();
    for registry in ["one", "two"] {
        let (report, _) = if registry == "one" {
            retrain(&config(&s, "one.yaml", registry, &sources, ""), &[])
        } else {
            retrain(&training, &flags)
        };
        let version = report["published"]
            .as_str()
            .unwrap_or_else(|| panic!("not published: {report}"))
            .to_owned();
        let path = s
            .dir
            .path()
            .join(registry)
            .join("versions")
            .join(&version)
            .join("model.txt");
        models.push((version, std::fs::read(path).expect("model")));
    }
    assert_eq!(models[0].0, models[1].0);
    assert!(models[0].1 == models[1].1, "the two models differ");
}

struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `--service` trains only once the trigger's count of new triplets has arrived: a
/// file below the count publishes nothing; appending to it crosses the count and a
/// version appears in the registry, trained on every triplet read so far.
#[test]
fn the_service_trains_when_enough_new_triplets_arrive() {
    let s = setup();
    let file = s.dir.path().join("triplets.jsonl");
    let records = triplets(1200, 5);
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines[..200].join("\n") + "\n").expect("write triplets");
    let sources = format!("  files: [{}]", arg(&file));
    let trigger = "trigger: {new_triplets: 1000, poll: 100ms}\n";
    let cfg = config(&s, "service.yaml", "registry", &sources, trigger);
    let mut service = Service(
        smartgrid()
            .args(["retrain", "--config", arg(&cfg), "--service"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run"),
    );
    let state = s.dir.path().join("registry/state.json");
    // several polls below the trigger: nothing is trained
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert!(!state.exists(), "trained before the trigger");
    let mut appended = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .expect("open");
    // the last line without its newline first: a half-written line is not read
    write!(appended, "{}\n{}", lines[200..1199].join("\n"), lines[1199]).expect("append");
    drop(appended);
    let mut stdout = BufReader::new(service.0.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("a report");
    let report: Value = serde_json::from_str(&line).expect("a JSON report");
    // 1199 complete lines were read by the time it trained; the last one comes later
    assert_eq!(report["triplets"], 1199, "{report}");
    let version = report["published"]
        .as_str()
        .unwrap_or_else(|| panic!("not published: {report}"));
    let active: Value =
        serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("JSON");
    assert_eq!(active["active"], json!(version));
    // SIGTERM ends the service cleanly between polls
    let pid = service.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = service.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// The weights reach LightGBM: on rows that only differ in their label, a squared-error
/// model converges to the labels' weighted mean (the oracle, computed here), not their
/// plain mean.
#[test]
fn weights_move_the_model_to_the_weighted_mean() {
    let rows: Vec<Vec<f64>> = (0..400).map(|i| vec![f64::from((i / 2) % 4)]).collect();
    let labels: Vec<f64> = (0..400)
        .map(|i| if i % 2 == 0 { 0.0 } else { 10.0 })
        .collect();
    let weights: Vec<f64> = (0..400)
        .map(|i| if i % 2 == 0 { 1.0 } else { 1.0 / SAMPLE_GOOD })
        .collect();
    let weighted_mean =
        labels.iter().zip(&weights).map(|(l, w)| l * w).sum::<f64>() / weights.iter().sum::<f64>();
    let params = smartgrid_models::train::TrainParams {
        trees: 200,
        learning_rate: 0.3,
        ..Default::default()
    };
    let names = vec!["x".to_owned()];
    let text = smartgrid_models::train::train_lightgbm_weighted(
        &rows,
        &labels,
        Some(&weights),
        &names,
        &params,
        |_| {},
    )
    .expect("train");
    let model = smartgrid_models::Model::parse(text.as_bytes()).expect("load");
    for x in 0..4 {
        let y = model.predict(&[f64::from(x)]);
        assert!(
            (y - weighted_mean).abs() < 0.01,
            "x={x}: {y} vs the weighted mean {weighted_mean}"
        );
    }
    // a zero weight is refused, not trained on
    let mut bad = weights.clone();
    bad[3] = 0.0;
    assert!(
        smartgrid_models::train::train_lightgbm_weighted(
            &rows,
            &labels,
            Some(&bad),
            &names,
            &params,
            |_| {}
        )
        .is_err()
    );
}
