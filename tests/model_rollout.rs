//! The device side of the learning loop, end to end: `smartgrid run` with a `predict`
//! node that has `updates:`, a real mosquitto for the announcements and the decisions,
//! a static HTTP server on loopback for the model bodies, and models signed with
//! `smartgrid keys generate` / `smartgrid model sign`.
//!
//! The models are LightGBM text files written here: constant outputs added to the
//! window's total (`relative_to`), so each is "persistence plus c". Persistence (c = 0)
//! is clearly better on simulated households than the active model (c = 300), c = 1500
//! clearly worse. Every prediction is checked against an oracle computed from the
//! stored windows: which windows are predicted (every window whose previous window
//! exists: no reading lost across a swap) and, from the value, which model made it.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::records::num;
use support::rollout::{
    NAMES, constant_model, generate_keys, mae, offsets_by_sensor, phases, readings_for,
    rollout_pipeline, signed_manifest,
};
use support::static_files::StaticFiles;
use support::statuses::Statuses;
use support::{Run, counter};

/// A test's world: a broker, a directory with keys, the served models, the pipeline.
struct World {
    dir: tempfile::TempDir,
    broker: testkit::Mosquitto,
    http: StaticFiles,
}

const TOPIC: &str = "models/household";
const STATUS: &str = "models/household/status";

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        for keys in ["keys", "other-keys"] {
            generate_keys(&dir.path().join(keys));
        }
        std::fs::create_dir_all(dir.path().join("served")).expect("served dir");
        let http = StaticFiles::serve(dir.path().join("served"));
        World {
            dir,
            broker: testkit::Mosquitto::start(),
            http,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` as `served/NAME`, signs it with `keys` as `version`; returns the
    /// manifest.
    fn signed(&self, name: &str, text: &str, version: &str, keys: &str) -> serde_json::Value {
        let key = self.path(keys).join("model-signing.key");
        signed_manifest(&self.path("served"), name, text, version, &key)
    }

    /// Publishes `{url, manifest}` retained on the announcement topic.
    fn announce(&self, name: &str, manifest: &serde_json::Value) {
        let announcement = serde_json::json!({"url": self.http.url(name), "manifest": manifest});
        let status = self
            .broker
            .publisher(TOPIC)
            .arg("-r")
            .arg("-m")
            .arg(announcement.to_string())
            .status()
            .expect("mosquitto_pub");
        assert!(status.success());
    }

    /// The pipeline, with the active model `active.txt` (persistence + 300, signed as
    /// `initial`) and `updates:` with these margins.
    fn pipeline(&self, duration: &str, promote_margin: f64, rollback_margin: f64) -> PathBuf {
        let source = format!(
            "      mqtt: {{url: \"{url}\", topic: {TOPIC}}}\n      \
             promote_margin: {promote_margin}\n      rollback_margin: {rollback_margin}\n      \
             status_topic: {STATUS}",
            url = self.broker.url()
        );
        rollout_pipeline(self.dir.path(), "rollout-test", duration, &source, "")
    }

    /// Nothing was published on the status topic since the last status read: a probe
    /// published now is the next message.
    fn assert_no_status_since(&self, statuses: &Statuses) {
        let status = self
            .broker
            .publisher(STATUS)
            .args(["-m", "{\"probe\":\"last\"}"])
            .status()
            .expect("mosquitto_pub");
        assert!(status.success());
        let line = statuses
            .rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the probe");
        assert!(line.contains("last"), "a status was published: {line}");
    }

    /// A `mosquitto_sub` on the status topic, subscribed when this returns.
    fn statuses(&self) -> Statuses {
        Statuses::subscribe(&self.broker, STATUS)
    }
}

#[test]
fn a_better_model_is_shadowed_then_promoted_without_losing_a_reading() {
    let world = World::new();
    let good = world.signed("good.txt", &constant_model(0.0, &NAMES), "good-1", "keys");
    let pipeline = world.pipeline("12h", 0.05, 0.1);
    let statuses = world.statuses();
    world.announce("good.txt", &good);
    // two workers: each tallies its own sensors' errors into one evaluation
    let run = Run::start(&pipeline, &["--workers", "2"]);

    let shadow = statuses.expect("shadowing", "good-1");
    assert_eq!(shadow["active"], "initial");
    let promoted = statuses.expect("promoted", "good-1");
    assert!(
        mae(&promoted, "candidate") < mae(&promoted, "active") * 0.95,
        "{promoted}"
    );
    assert!(num(&promoted, "comparisons") >= 20.0, "{promoted}");
    let kept = statuses.expect("kept", "good-1");
    assert_eq!(kept["active"], "good-1");
    let counters = run.counters();
    assert_eq!(counter(&counters, "predictions.model_promoted"), Some(1));
    assert_eq!(counter(&counters, "predictions.model_refused"), Some(0));
    assert_eq!(
        counter(&counters, "readings.readings"),
        Some(readings_for(12)),
        "every simulated reading decoded"
    );
    assert_eq!(world.http.served(), 1, "fetched once");

    for (sensor, offsets) in offsets_by_sensor(world.dir.path()) {
        assert_eq!(
            phases(&offsets),
            vec![300, 0],
            "{sensor}: the active model, then the promoted one, without going back"
        );
    }
    // the accepted model is kept on disk, with its manifest
    let kept_dir = world.path("kept-models");
    let stored: Vec<_> = std::fs::read_dir(&kept_dir)
        .expect("model dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        stored.iter().any(|n| n.ends_with(".model"))
            && stored.iter().any(|n| n.ends_with(".model.manifest.json")),
        "{stored:?}"
    );
    // and named the active one, by its sha256 (the manifest's, checked by the device)
    let sha = good["model_sha256"].as_str().expect("sha256");
    let active = std::fs::read_to_string(kept_dir.join("active")).expect("active file");
    assert_eq!(active.trim(), &sha[..16]);
    assert!(
        stored.contains(&format!("{}.model", &sha[..16])),
        "{stored:?}"
    );
}

#[test]
fn tampered_foreign_and_mismatched_models_are_refused_and_the_active_model_stays() {
    let world = World::new();
    // a byte changed after signing: the sha256 no longer matches
    let tampered = world.signed("tampered.txt", &constant_model(0.0, &NAMES), "t-1", "keys");
    let text = std::fs::read_to_string(world.path("served/tampered.txt")).expect("model");
    std::fs::write(
        world.path("served/tampered.txt"),
        text.replacen("leaf_value=0 0", "leaf_value=1 0", 1),
    )
    .expect("tamper");
    let foreign = world.signed(
        "foreign.txt",
        &constant_model(0.0, &NAMES),
        "f-1",
        "other-keys",
    );
    let mut wrong_names = NAMES.to_vec();
    wrong_names[5] = "hour_of_day";
    let mismatched = world.signed(
        "mismatched.txt",
        &constant_model(0.0, &wrong_names),
        "m-1",
        "keys",
    );
    let pipeline = world.pipeline("12h", 0.05, 0.1);
    let statuses = world.statuses();
    world.announce("tampered.txt", &tampered);
    let run = Run::start(&pipeline, &[]);

    let refused = statuses.expect("refused", "t-1");
    assert!(
        refused["reason"]
            .as_str()
            .expect("reason")
            .contains("sha256"),
        "{refused}"
    );
    world.announce("foreign.txt", &foreign);
    let refused = statuses.expect("refused", "f-1");
    assert!(
        refused["reason"]
            .as_str()
            .expect("reason")
            .contains("does not verify"),
        "{refused}"
    );
    world.announce("mismatched.txt", &mismatched);
    let refused = statuses.expect("refused", "m-1");
    assert!(
        refused["reason"]
            .as_str()
            .expect("reason")
            .contains("hour_of_day"),
        "{refused}"
    );
    assert_eq!(refused["active"], "initial");
    run.wait_for("refusing model m-1, keeping initial");

    let counters = run.counters();
    assert_eq!(counter(&counters, "predictions.model_refused"), Some(3));
    assert_eq!(counter(&counters, "predictions.model_promoted"), Some(0));
    for (sensor, offsets) in offsets_by_sensor(world.dir.path()) {
        assert_eq!(
            phases(&offsets),
            vec![300],
            "{sensor}: only the active model"
        );
    }
    assert!(
        !world.path("kept-models").exists()
            || std::fs::read_dir(world.path("kept-models"))
                .expect("dir")
                .next()
                .is_none(),
        "nothing refused is kept"
    );
}

#[test]
fn a_worse_model_is_rejected_after_its_shadow() {
    let world = World::new();
    let worse = world.signed(
        "worse.txt",
        &constant_model(1500.0, &NAMES),
        "worse-1",
        "keys",
    );
    let pipeline = world.pipeline("12h", 0.05, 0.1);
    let statuses = world.statuses();
    world.announce("worse.txt", &worse);
    let run = Run::start(&pipeline, &[]);

    statuses.expect("shadowing", "worse-1");
    let rejected = statuses.expect("rejected", "worse-1");
    assert!(
        mae(&rejected, "candidate") > mae(&rejected, "active"),
        "{rejected}"
    );
    let counters = run.counters();
    assert_eq!(counter(&counters, "predictions.model_rejected"), Some(1));
    assert_eq!(counter(&counters, "predictions.model_promoted"), Some(0));
    for (sensor, offsets) in offsets_by_sensor(world.dir.path()) {
        assert_eq!(
            phases(&offsets),
            vec![300],
            "{sensor}: shadow predictions never go downstream"
        );
    }
}

/// Rollback, triggered honestly: the promotion rule is set lenient (`promote_margin:
/// -1`, a candidate up to twice as bad as the active model is promoted) and the
/// rollback rule strict (`rollback_margin: 0`). A model somewhat worse than the active
/// one (persistence + 500 against + 300) is then promoted after its shadow, and the
/// watch, which keeps running the previous model beside it on later windows, finds it
/// worse and puts the previous model back by itself.
#[test]
fn a_promoted_model_that_does_worse_is_rolled_back() {
    let world = World::new();
    let slightly_worse = world.signed("sw.txt", &constant_model(500.0, &NAMES), "sw-1", "keys");
    let pipeline = world.pipeline("12h", -1.0, 0.0);
    let statuses = world.statuses();
    world.announce("sw.txt", &slightly_worse);
    let run = Run::start(&pipeline, &[]);

    statuses.expect("shadowing", "sw-1");
    let promoted = statuses.expect("promoted", "sw-1");
    assert!(
        mae(&promoted, "candidate") > mae(&promoted, "active"),
        "worse, yet within the lenient margin: {promoted}"
    );
    let rolled_back = statuses.expect("rolled_back", "sw-1");
    assert_eq!(rolled_back["active"], "initial");
    assert!(
        mae(&rolled_back, "active") > mae(&rolled_back, "previous"),
        "{rolled_back}"
    );
    let counters = run.counters();
    assert_eq!(counter(&counters, "predictions.model_promoted"), Some(1));
    assert_eq!(counter(&counters, "predictions.model_rolled_back"), Some(1));
    assert_eq!(
        counter(&counters, "readings.readings"),
        Some(readings_for(12))
    );
    let mut switched = 0;
    for (sensor, offsets) in offsets_by_sensor(world.dir.path()) {
        let seen = phases(&offsets);
        assert!(
            seen == vec![300, 500, 300] || seen == vec![300],
            "{sensor}: {seen:?}"
        );
        switched += usize::from(seen.len() == 3);
    }
    assert!(
        switched > 0,
        "some sensor was predicted by the promoted model"
    );
    assert!(
        !world.path("kept-models/active").exists(),
        "after the rollback a restart starts from `model:` again"
    );
}

/// A promoted model is kept on disk and named the active one: a restarted run (another
/// directory, the same kept models) resumes with it from its first prediction, checks
/// it again, and does not shadow the still-retained announcement of it again.
#[test]
fn a_restart_resumes_with_the_promoted_model() {
    let world = World::new();
    let good = world.signed("good.txt", &constant_model(0.0, &NAMES), "good-1", "keys");
    let pipeline = world.pipeline("6h", 0.05, 0.1);
    let statuses = world.statuses();
    world.announce("good.txt", &good);
    let run = Run::start(&pipeline, &[]);
    statuses.expect("shadowing", "good-1");
    statuses.expect("promoted", "good-1");
    statuses.expect("kept", "good-1");
    let counters = run.counters();
    assert_eq!(counter(&counters, "predictions.model_promoted"), Some(1));

    let second = world.path("second");
    std::fs::create_dir_all(&second).expect("second dir");
    let pipeline = second.join("pipeline.yaml");
    std::fs::copy(world.path("pipeline.yaml"), &pipeline).expect("copy pipeline");
    let run = Run::start(&pipeline, &[]);
    run.wait_for("resuming with model good-1");
    let counters = run.counters();
    assert_eq!(counter(&counters, "predictions.model_promoted"), Some(0));
    assert_eq!(counter(&counters, "predictions.model_refused"), Some(0));
    world.assert_no_status_since(&statuses);
    for (sensor, offsets) in offsets_by_sensor(&second) {
        assert_eq!(
            phases(&offsets),
            vec![0],
            "{sensor}: the promoted model from the start"
        );
    }
}
