//! The learning loop end to end, on loopback, without a restart: a device pipeline
//! starts with the seed's XGBoost model (far worse than persistence on simulated
//! households), its triplets go to an outbox file, `smartgrid retrain` trains on them
//! and publishes a signed model to its registry, announced retained on mosquitto and
//! served by `smartgrid registry serve`; the running device fetches it, checks it,
//! shadows it and promotes it.
//!
//! Readings come from two runs of a publishing simulator (one before the retrain, one
//! after the announcement), so what each model sees does not depend on timing. The
//! oracle for "better" is the triplets themselves: per prediction the retrained model
//! must send at most half as many triplets as the seed model did; for "nothing lost"
//! it is the simulator's own count of readings, against what the device decoded.
//!
//! The other outcomes (tampered model, another key, worse candidate, rollback) have
//! their own tests: tests/model_rollout.rs (device) and tests/retrain.rs (training).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use support::statuses::Statuses;
use support::{Run, counter, smartgrid, wait_until, write_pipeline};

const SENSORS: u64 = 6;
/// Readings per second per sensor (the simulator's ticks).
const RATE: u64 = 1;
/// Hours of readings before the retrain (a whole day: the model sees every hour's
/// load) and after it.
const HOURS: [u64; 2] = [24, 6];
const START: &str = "2024-06-01T00:00:00Z";
const TOPIC: &str = "models/household";
const STATUS: &str = "models/household/status";

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Publishes `HOURS` of simulated readings from `start` to the broker, to the end.
fn publish_readings(dir: &Path, broker: &testkit::Mosquitto, name: &str, start: &str, hours: u64) {
    std::fs::create_dir_all(dir.join(name)).expect("simulator dir");
    let pipeline = write_pipeline(
        &dir.join(name),
        &format!(
            r#"
pipeline: {name}
nodes:
  meters:
    type: simulate
    sensors: {SENSORS}
    rate: {RATE}
    seed: 7
    realtime: false
    start: {start}
    duration: {hours}h
    publish: {{url: "{url}", topic: "data/realtime/feature/{{sensor}}", qos: 1}}
"#,
            url = broker.url()
        ),
    );
    let out = smartgrid()
        .arg("run")
        .arg(&pipeline)
        .output()
        .expect("run the simulator");
    assert!(out.status.success(), "{out:?}");
}

/// The JSON lines of `file`.
fn lines(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Records of `file` by their `model_version`.
fn by_version(file: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in lines(file) {
        *counts
            .entry(record["model_version"].to_string())
            .or_default() += 1;
    }
    counts
}

/// Waits until `file` has at least `least` lines and stopped growing for two seconds.
fn settled(file: &Path, least: usize) -> usize {
    let mut last = (0, std::time::Instant::now());
    wait_until(&format!("{} to settle", file.display()), || {
        let n = lines(file).len();
        if n != last.0 {
            last = (n, std::time::Instant::now());
        }
        (n >= least && last.1.elapsed() > Duration::from_secs(2)).then_some(n)
    })
}

#[test]
fn triplets_retrain_a_signed_model_that_the_running_device_shadows_and_promotes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    // The bursts outrun the device: the broker must queue them, not drop past its
    // default of 1000 queued messages per client.
    let broker = testkit::Mosquitto::start_with("max_queued_messages 1000000\n");
    let out = smartgrid()
        .args(["keys", "generate", "--out"])
        .arg(path(dir, "keys"))
        .output()
        .expect("keys generate");
    assert!(out.status.success(), "{out:?}");
    let seed = path(dir, "seed.json");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/model_xgboost.json"),
        &seed,
    )
    .expect("the seed model");

    // The registry's own server, for the model bodies.
    let registry = path(dir, "registry");
    std::fs::create_dir_all(&registry).expect("registry dir");
    let port = testkit::free_port();
    let _served = Served(
        smartgrid()
            .args(["registry", "serve"])
            .arg(&registry)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .spawn()
            .expect("registry serve"),
    );

    let device = write_pipeline(
        dir,
        &format!(
            r#"
pipeline: household
nodes:
  meters:
    type: mqtt
    url: "{url}"
    topics: [data/realtime/feature/+]
    qos: 1
  readings:
    type: decode
    input: meters
    format: clemap
    # the simulated readings are hours old and come in two bursts: the watermark
    # must wait for the second, not follow the wall clock in between
    idle_timeout: 1h
  means:
    type: window_mean
    input: readings
    size: 10s
  predictions:
    type: predict
    input: means
    model: {seed}
    horizon: 10s
    features:
      fields: [p_l1, p_l2, p_l3]
      lags: {{fields: [p_l1, p_l2, p_l3], count: 5}}
    updates:
      mqtt: {{url: "{url}", topic: {TOPIC}}}
      public_key: {dir}/keys/model-signing.pub
      actual: [p_l1, p_l2, p_l3]
      dir: {dir}/device-models
      shadow: 20m
      watch: 20m
      status_topic: {STATUS}
  drift:
    type: compare_with_lag
    inputs: [predictions, means]
    actual: [p_l1, p_l2, p_l3]
    threshold: {{absolute: 100, relative: 0.1}}
    sample_good: 0.05
  outbox:
    type: file
    input: drift
    path: {dir}/triplets.jsonl
    format: json
  out_predictions:
    type: file
    input: predictions
    path: {dir}/predictions.jsonl
    format: json
"#,
            url = broker.url(),
            seed = seed.display(),
            dir = dir.display(),
        ),
    );
    let statuses = Statuses::subscribe(&broker, STATUS);
    let run = Run::start(&device, &[]);
    run.wait_for("subscribed node=meters");

    // The seed model's hours: its triplets are the training data.
    publish_readings(dir, &broker, "first", START, HOURS[0]);
    let triplets = path(dir, "triplets.jsonl");
    let first_triplets = settled(&triplets, 1_000);
    let seed_version = by_version(&triplets)
        .into_keys()
        .next()
        .expect("a model version");

    let config = path(dir, "retrain.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
sources: {{files: [{triplets}]}}
sample_good: 0.05
relative_to: []
holdout: 0.2
margin: 0.05
training: {{trees: 200, seed: 42, params: [objective=regression_l1]}}
registry: {registry}
signing_key: {dir}/keys/model-signing.key
active_model: {{path: {seed}, relative_to: []}}
announce: {{broker: "{url}", topic: {TOPIC}, base_url: "http://127.0.0.1:{port}"}}
"#,
            triplets = triplets.display(),
            registry = registry.display(),
            dir = dir.display(),
            seed = seed.display(),
            url = broker.url(),
        ),
    )
    .expect("retrain config");
    let triggered = std::time::Instant::now();
    let out = smartgrid()
        .args(["retrain", "--config"])
        .arg(&config)
        .output()
        .expect("retrain");
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("retrain's JSON report");
    eprintln!("retrain: {report}");
    let version = report["published"]
        .as_str()
        .unwrap_or_else(|| panic!("published: {report}"))
        .to_string();

    // Announced: the device checks the model and starts its shadow.
    let shadow = statuses.expect("shadowing", &version);
    assert!(shadow["active"].is_string(), "{shadow}");

    // The next hours: shadow, promotion, and the retrained model on its own.
    publish_readings(dir, &broker, "second", "2024-06-02T00:00:00Z", HOURS[1]);
    let promoted = statuses.expect("promoted", &version);
    eprintln!(
        "from the retrain's start to the promotion: {:?} (the shadow's 20 min of event time replayed)",
        triggered.elapsed()
    );
    let mae = |which: &str| promoted["mae"][which].as_f64().expect("an MAE");
    assert!(mae("candidate") < mae("active") * 0.95, "{promoted}");
    settled(&triplets, first_triplets + 1);
    let counters = run.terminate();

    // Nothing lost on the way: every published reading decoded, every swap in place.
    assert_eq!(
        counter(&counters, "readings.readings"),
        Some(SENSORS * RATE * (HOURS[0] + HOURS[1]) * 3600),
        "{counters}"
    );
    assert_eq!(counter(&counters, "predictions.model_promoted"), Some(1));
    assert_eq!(counter(&counters, "predictions.model_refused"), Some(0));

    // Triplets per prediction fall by at least half.
    let predictions = by_version(&path(dir, "predictions.jsonl"));
    let sent = by_version(&triplets);
    let new_version = predictions
        .keys()
        .find(|v| **v != seed_version)
        .expect("predictions by the promoted model")
        .clone();
    let rate = |v: &str| sent.get(v).copied().unwrap_or(0) as f64 / predictions[v] as f64;
    eprintln!(
        "triplets per prediction: seed {:.3}, retrained {:.3}; live MAE {promoted}",
        rate(&seed_version),
        rate(&new_version)
    );
    assert!(
        predictions[&new_version] > 100,
        "the promoted model predicted: {predictions:?}"
    );
    assert!(
        rate(&new_version) * 2.0 <= rate(&seed_version),
        "triplets per prediction: seed {} → retrained {} ({predictions:?}, {sent:?})",
        rate(&seed_version),
        rate(&new_version)
    );
}
