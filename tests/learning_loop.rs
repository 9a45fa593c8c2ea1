//! The learning loop end to end, on loopback, without a restart. A device pipeline
//! starts with the seed's XGBoost model (far worse than persistence on simulated
//! households) and sends its triplets through its `iothub` sink to a mosquitto over TLS
//! standing in for the hub; the test plays the hub's message routing and writes what
//! came into Azurite in the routing's blob layout. `smartgrid retrain` reads those
//! blobs, trains, and publishes a signed model to its registry; `smartgrid registry
//! push` mirrors the registry into an Azurite container and `smartgrid model promote`
//! announces the model retained on the device's broker, its URL a blob URL with a read
//! SAS. The running device fetches it from Azurite, checks it, shadows it, promotes it.
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
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::statuses::Statuses;
use support::tls::tls_broker;
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

const DEVICE: &str = "meter-7";
const CONNECTION_STRING: &str = "HostName=smartgrid-test.azure-devices.net;DeviceId=meter-7;\
     SharedAccessKey=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The hub's message routing, played by the test: a `mosquitto_sub` on the device's
/// events topic keeps every message body (a JSON array of triplets).
struct Routing {
    watcher: Child,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Routing {
    fn start(hub: &testkit::Mosquitto, ca: &Path) -> Routing {
        let mut watcher = Command::new(testkit::require_binary("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &hub.port().to_string(), "-q", "1"])
            .arg("--cafile")
            .arg(ca)
            .args([
                "-i",
                "routing",
                "-t",
                &format!("devices/{DEVICE}/messages/events/#"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        let stdout = watcher.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                kept.lock().expect("lock").push(line);
            }
        });
        wait_until("the routing's subscription", || {
            hub.log_tail().contains("as routing").then_some(())
        });
        Routing { watcher, bodies }
    }

    /// Triplets received so far.
    fn triplets(&self) -> usize {
        let bodies = self.bodies.lock().expect("lock");
        bodies
            .iter()
            .map(|b| {
                let body: serde_json::Value = serde_json::from_str(b).expect("a JSON body");
                body.as_array().map_or(1, Vec::len)
            })
            .sum()
    }

    /// Writes every message so far into `container` as IoT Hub routing does (JSON
    /// encoding): blobs `{hub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}` of one envelope
    /// a line, the body as JSON, 50 messages a blob.
    fn write_blobs(&self, azurite: &testkit::Azurite, container: &str) {
        let bodies = self.bodies.lock().expect("lock");
        for (n, chunk) in bodies.chunks(50).enumerate() {
            let mut blob = String::new();
            for body in chunk {
                let envelope = serde_json::json!({
                    "EnqueuedTimeUtc": "2024-06-02T00:00:00.0000000Z",
                    "Properties": {},
                    "SystemProperties": {
                        "connectionDeviceId": DEVICE,
                        "contentType": "application/json",
                        "contentEncoding": "utf-8",
                    },
                    "Body": serde_json::from_str::<serde_json::Value>(body).expect("JSON"),
                });
                blob.push_str(&envelope.to_string());
                blob.push('\n');
            }
            let name = format!(
                "smartgrid-hub/{}/2024/06/02/{:02}/{:02}",
                n % 4,
                n / 60,
                n % 60
            );
            azurite.put_blob(container, &name, blob.as_bytes());
        }
    }
}

impl Drop for Routing {
    fn drop(&mut self) {
        let _ = self.watcher.kill();
        let _ = self.watcher.wait();
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

    // The hub, its routing into blob storage, and the registry's container.
    let hub = tls_broker(dir, "max_queued_messages 100000\n");
    let routing = Routing::start(&hub, &path(dir, "ca.pem"));
    let azurite = testkit::Azurite::start();
    azurite.create_container("triplets");
    azurite.create_container("models");
    let registry = path(dir, "registry");

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
    type: iothub
    input: drift
    connection_string: ${{IOTHUB_CONNECTION_STRING}}
    host: 127.0.0.1
    port: {hub_port}
    tls: {{ca_file: {dir}/ca.pem}}
    flush_interval: 1s
    spool: {{dir: {dir}/outbox}}
  triplets:
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
            hub_port = hub.port(),
        ),
    );
    let statuses = Statuses::subscribe(&broker, STATUS);
    let run = Run::start_with_env(
        &device,
        &[],
        &[("IOTHUB_CONNECTION_STRING", CONNECTION_STRING)],
    );
    run.wait_for("subscribed node=meters");

    // The seed model's hours: its triplets are the training data.
    publish_readings(dir, &broker, "first", START, HOURS[0]);
    let triplets = path(dir, "triplets.jsonl");
    let first_triplets = settled(&triplets, 1_000);
    wait_until("every triplet through the hub", || {
        (routing.triplets() == first_triplets).then_some(())
    });
    routing.write_blobs(&azurite, "triplets");
    let seed_version = by_version(&triplets)
        .into_keys()
        .next()
        .expect("a model version");

    let config = path(dir, "retrain.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
sources:
  blob:
    account_url: {account_url}
    container: triplets
    prefix: smartgrid-hub/
    account: {account}
    key_env: TEST_AZURITE_KEY
sample_good: 0.05
relative_to: []
holdout: 0.2
margin: 0.05
training: {{trees: 200, seed: 42, params: [objective=regression_l1]}}
registry: {registry}
signing_key: {dir}/keys/model-signing.key
active_model: {{path: {seed}, relative_to: []}}
"#,
            account_url = azurite.account_url(),
            account = testkit::AZURITE_ACCOUNT,
            registry = registry.display(),
            dir = dir.display(),
            seed = seed.display(),
        ),
    )
    .expect("retrain config");
    let triggered = std::time::Instant::now();
    let out = smartgrid()
        .args(["retrain", "--config"])
        .arg(&config)
        .env("TEST_AZURITE_KEY", testkit::AZURITE_KEY)
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
    assert_eq!(
        report["triplets"].as_u64(),
        Some(first_triplets as u64),
        "every routed triplet read back from the blobs: {report}"
    );

    // Into the blob container, then announced with a blob URL and a read SAS.
    let key_env = [("TEST_AZURITE_KEY", testkit::AZURITE_KEY)];
    let out = smartgrid()
        .args(["registry", "push"])
        .arg(&registry)
        .args([
            "--account-url",
            &azurite.account_url(),
            "--container",
            "models",
        ])
        .args([
            "--account",
            testkit::AZURITE_ACCOUNT,
            "--key-env",
            "TEST_AZURITE_KEY",
        ])
        .envs(key_env)
        .output()
        .expect("registry push");
    assert!(out.status.success(), "{out:?}");
    let out = smartgrid()
        .args(["model", "promote", &version, "--registry"])
        .arg(&registry)
        .args([
            "--announce-broker",
            &broker.url(),
            "--announce-topic",
            TOPIC,
        ])
        .args([
            "--announce-base-url",
            &format!("{}/models", azurite.account_url()),
        ])
        .args(["--announce-url-query-env", "MODEL_SAS"])
        .env("MODEL_SAS", azurite.read_sas("models"))
        .output()
        .expect("model promote");
    assert!(out.status.success(), "{out:?}");
    let announced: serde_json::Value =
        serde_json::from_str(&broker.retained(TOPIC).expect("the announcement")).expect("JSON");
    let url = announced["url"].as_str().expect("a URL");
    assert!(
        url.starts_with(&format!(
            "{}/models/models/{version}/",
            azurite.account_url()
        )) && url.contains("&sig="),
        "a blob URL with a SAS: {url}"
    );

    // Announced: the device fetches the model from Azurite, checks it, starts its shadow.
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
