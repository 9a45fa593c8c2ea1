//! Model rollout through an Azure IoT Hub device twin: `smartgrid run` with a `predict`
//! node whose `updates.iothub` connects over TLS to a mosquitto standing in for the hub.
//! The test plays the hub: it answers the device's twin GET, sends desired-property
//! patches carrying announcements (models signed with `smartgrid model sign`, served by
//! a static HTTP server on loopback) and reads the decisions the device reports as
//! reported-property PATCHes. Predictions are checked against the stored windows as in
//! `tests/model_rollout.rs`: which windows are predicted (none lost across a swap) and,
//! from the value, which model made each one.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::rollout::{
    NAMES, RATE, SENSORS, constant_model, generate_keys, mae, phases_by_sensor, rollout_pipeline,
    signed_manifest,
};
use support::static_files::StaticFiles;
use support::tls::tls_broker;
use support::{Run, counter, smartgrid};

const DEVICE: &str = "meter-7";
const CONNECTION_STRING: &str = "HostName=smartgrid-test.azure-devices.net;DeviceId=meter-7;\
     SharedAccessKey=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The hub's side of the twin: answers the device's GET with `twin` and then sends
/// `patches` (desired `$version`, body); collects the reported-property PATCHes.
struct Hub {
    watcher: Child,
    reported: Receiver<Value>,
}

impl Hub {
    fn start(world: &World, twin: Value, patches: Vec<(u64, Value)>) -> Hub {
        let port = world.broker.port().to_string();
        let ca = world.path("ca.pem");
        let connected_before = world.broker.log_tail().matches("as hub").count();
        let mut watcher = Command::new(testkit::find_binary("mosquitto_sub").expect("found"))
            .args(["-h", "127.0.0.1", "-p", &port, "-q", "1", "-v", "-i", "hub"])
            .arg("--cafile")
            .arg(&ca)
            .args(["-t", "$iothub/twin/GET/#"])
            .args(["-t", "$iothub/twin/PATCH/properties/reported/#"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        let stdout = watcher.stdout.take().expect("piped");
        let (tx, reported) = std::sync::mpsc::channel();
        let publish = move |topic: &str, body: &str| {
            let status = Command::new(testkit::find_binary("mosquitto_pub").expect("found"))
                .args(["-h", "127.0.0.1", "-p", &port, "-q", "1"])
                .arg("--cafile")
                .arg(&ca)
                .args(["-t", topic, "-m", body])
                .status()
                .expect("mosquitto_pub");
            assert!(status.success(), "mosquitto_pub {topic}");
        };
        std::thread::spawn(move || {
            let mut patches = Some(patches);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // `-v`: the topic, a space, the payload
                let (topic, payload) = line.split_once(' ').unwrap_or((&line, ""));
                let Some((_, rid)) = topic.split_once("$rid=") else {
                    continue;
                };
                if topic.starts_with("$iothub/twin/GET/") {
                    publish(
                        &format!("$iothub/twin/res/200/?$rid={rid}"),
                        &twin.to_string(),
                    );
                    for (version, body) in patches.take().unwrap_or_default() {
                        publish(
                            &format!("$iothub/twin/PATCH/properties/desired/?$version={version}"),
                            &body.to_string(),
                        );
                    }
                } else {
                    publish(&format!("$iothub/twin/res/204/?$rid={rid}&$version=1"), "");
                    let value: Value = serde_json::from_str(payload).expect("reported JSON");
                    let _ = tx.send(value);
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while world.broker.log_tail().matches("as hub").count() == connected_before {
            assert!(Instant::now() < deadline, "mosquitto_sub did not connect");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        Hub { watcher, reported }
    }

    /// The next reported `model` decision, which must be `decision` about `version`.
    fn expect(&self, decision: &str, version: &str) -> Value {
        let patch = self
            .reported
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|_| panic!("a reported {decision} within 90 s"));
        let status = &patch["model"];
        assert_eq!(status["decision"], decision, "{patch}");
        assert_eq!(status["version"], version, "{patch}");
        assert_eq!(status["node"], "predictions", "{patch}");
        assert!(
            status["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{patch}"
        );
        assert!(status["reason"].as_str().is_some(), "{patch}");
        status.clone()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.watcher.kill();
        let _ = self.watcher.wait();
    }
}

struct World {
    dir: tempfile::TempDir,
    broker: testkit::Mosquitto,
    http: StaticFiles,
}

impl World {
    fn new() -> World {
        testkit::require_binary("mosquitto");
        testkit::require_binary("mosquitto_sub");
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = tls_broker(dir.path(), "");
        generate_keys(&dir.path().join("keys"));
        std::fs::create_dir_all(dir.path().join("served")).expect("served dir");
        let http = StaticFiles::serve(dir.path().join("served"));
        World { dir, broker, http }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` as `served/NAME`, signs it as `version`; the announcement
    /// `{url, manifest}`.
    fn announcement(&self, name: &str, text: &str, version: &str) -> Value {
        let key = self.path("keys/model-signing.key");
        let manifest = signed_manifest(&self.path("served"), name, text, version, &key);
        json!({"url": self.http.url(name), "manifest": manifest})
    }

    /// The pipeline: the active model is persistence + 300 (signed as `initial`);
    /// `updates.iothub` connects to the broker as device `meter-7`. `extra` is added
    /// to the nodes.
    fn pipeline(&self, extra: &str) -> PathBuf {
        let source = format!(
            "      iothub:\n        connection_string: ${{IOTHUB_CONNECTION_STRING}}\n        \
             host: 127.0.0.1\n        port: {port}\n        tls: {{ca_file: {dir}/ca.pem}}",
            port = self.broker.port(),
            dir = self.dir.path().display()
        );
        rollout_pipeline(self.dir.path(), "twin-test", "24h", &source, extra)
    }

    fn run(&self, pipeline: &Path) -> Run {
        Run::start_with_env(
            pipeline,
            &[],
            &[("IOTHUB_CONNECTION_STRING", CONNECTION_STRING)],
        )
    }
}

#[test]
fn a_better_model_in_a_desired_patch_is_shadowed_promoted_and_reported() {
    let world = World::new();
    let good = world.announcement("good.txt", &constant_model(0.0, &NAMES), "good-1");
    let pipeline = world.pipeline("");
    // the twin has no model yet; a patch without `model` is ignored, the next one
    // carries the better model
    let hub = Hub::start(
        &world,
        json!({"desired": {"$version": 1}, "reported": {"$version": 1}}),
        vec![
            (2, json!({"telemetry_interval": 60, "$version": 2})),
            (3, json!({"model": good, "$version": 3})),
        ],
    );
    let run = world.run(&pipeline);

    let shadow = hub.expect("shadowing", "good-1");
    assert_eq!(shadow["active"], "initial");
    let promoted = hub.expect("promoted", "good-1");
    assert_eq!(promoted["active"], "good-1");
    assert!(
        mae(&promoted, "candidate") < mae(&promoted, "active") * 0.95,
        "{promoted}"
    );
    let kept = hub.expect("kept", "good-1");
    assert_eq!(kept["active"], "good-1");
    let counters = run.counters();
    assert_eq!(counter(&counters, "predictions.model_promoted"), Some(1));
    assert_eq!(counter(&counters, "predictions.model_refused"), Some(0));
    assert_eq!(
        counter(&counters, "readings.readings"),
        Some(SENSORS * RATE * 24 * 3600),
        "every simulated reading decoded"
    );
    assert_eq!(world.http.served(), 1, "fetched once");
    for (sensor, phases) in phases_by_sensor(world.dir.path()) {
        assert_eq!(
            phases,
            vec![300, 0],
            "{sensor}: initial, then the promoted model"
        );
    }
    let sha = good["manifest"]["model_sha256"].as_str().expect("sha256");
    let active = std::fs::read_to_string(world.path("kept-models/active")).expect("active");
    assert_eq!(active.trim(), &sha[..16]);
}

#[test]
fn a_tampered_model_is_refused_and_reported_and_a_stale_patch_ignored() {
    let world = World::new();
    let good = world.announcement("good.txt", &constant_model(0.0, &NAMES), "good-1");
    let tampered = world.announcement("tampered.txt", &constant_model(0.0, &NAMES), "t-1");
    let text = std::fs::read_to_string(world.path("served/tampered.txt")).expect("model");
    std::fs::write(
        world.path("served/tampered.txt"),
        text.replacen("leaf_value=0 0", "leaf_value=1 0", 1),
    )
    .expect("tamper");
    let pipeline = world.pipeline("");
    // the twin is at desired $version 5: a patch of version 4 (with the good model)
    // arrives late and is stale; version 6 carries the tampered model
    let hub = Hub::start(
        &world,
        json!({"desired": {"$version": 5}, "reported": {}}),
        vec![
            (4, json!({"model": good, "$version": 4})),
            (6, json!({"model": tampered, "$version": 6})),
        ],
    );
    let run = world.run(&pipeline);

    let refused = hub.expect("refused", "t-1");
    assert_eq!(refused["active"], "initial");
    assert!(
        refused["reason"]
            .as_str()
            .expect("reason")
            .contains("sha256"),
        "{refused}"
    );
    let counters = run.counters();
    assert_eq!(counter(&counters, "predictions.model_refused"), Some(1));
    assert_eq!(counter(&counters, "predictions.model_promoted"), Some(0));
    assert_eq!(
        world.http.served(),
        1,
        "only the tampered model was fetched"
    );
    assert!(
        hub.reported.try_recv().is_err(),
        "nothing else reported (the stale patch was ignored)"
    );
    for (sensor, phases) in phases_by_sensor(world.dir.path()) {
        assert_eq!(phases, vec![300], "{sensor}: only the active model");
    }
}

/// IoT Hub keeps one connection per device: a sink and `updates.iothub` connecting as
/// the same device are refused by `validate`, as is `updates:` with both sources.
#[test]
fn one_device_connection_per_pipeline_and_one_announcement_source() {
    let world = World::new();
    let sink = format!(
        "  cloud:\n    type: iothub\n    input: means\n    connection_string: ${{IOTHUB_CONNECTION_STRING}}\n    host: 127.0.0.1\n    port: {}\n    tls: {{ca_file: {}}}\n",
        world.broker.port(),
        world.path("ca.pem").display()
    );
    let pipeline = world.pipeline(&sink);
    let out = smartgrid()
        .arg("validate")
        .arg(&pipeline)
        .env("IOTHUB_CONNECTION_STRING", CONNECTION_STRING)
        .output()
        .expect("validate");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("`{DEVICE}`")) && text.contains("already used by node"),
        "{text}"
    );
    assert!(!text.contains("MDEyMzQ1"), "the key is never shown: {text}");

    let both = std::fs::read_to_string(&pipeline)
        .expect("pipeline")
        .replace(&sink, "")
        .replace(
            "      public_key:",
            "      mqtt: {url: \"mqtt://127.0.0.1:1\", topic: m}\n      public_key:",
        );
    std::fs::write(&pipeline, both).expect("write");
    let out = smartgrid()
        .arg("validate")
        .arg(&pipeline)
        .env("IOTHUB_CONNECTION_STRING", CONNECTION_STRING)
        .output()
        .expect("validate");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("`mqtt` or `iothub`, not both"), "{text}");
}

/// A device that connects after the model was set gets it from the twin GET, with no
/// patch: the announcement is the desired property `model` of the whole twin.
#[test]
fn a_device_that_connects_later_gets_the_current_model_from_the_twin() {
    let world = World::new();
    let good = world.announcement("good.txt", &constant_model(0.0, &NAMES), "good-1");
    let pipeline = world.pipeline("");
    let hub = Hub::start(
        &world,
        json!({"desired": {"model": good, "$version": 7}, "reported": {"$version": 3}}),
        Vec::new(),
    );
    let run = world.run(&pipeline);

    assert_eq!(hub.expect("shadowing", "good-1")["active"], "initial");
    let promoted = hub.expect("promoted", "good-1");
    assert!(
        mae(&promoted, "candidate") < mae(&promoted, "active") * 0.95,
        "{promoted}"
    );
    hub.expect("kept", "good-1");
    let counters = run.counters();
    assert_eq!(counter(&counters, "predictions.model_promoted"), Some(1));
    assert_eq!(world.http.served(), 1, "fetched once");
    for (sensor, phases) in phases_by_sensor(world.dir.path()) {
        assert_eq!(
            phases,
            vec![300, 0],
            "{sensor}: initial, then the twin's model"
        );
    }
}
