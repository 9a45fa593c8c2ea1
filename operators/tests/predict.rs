//! `predict` hot swap: a new model is swapped in while windows stream through; every
//! prediction is made by exactly one model version, none is dropped across the swap, and
//! the model file watcher swaps a changed file in.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smartgrid_models::Model;
use smartgrid_operators::predict::{
    FeaturePlan, FeaturesConfig, LagsConfig, LoadedModel, ModelSlot, PredictCounters, PredictExt,
    Predictor,
};
use smartgrid_runtime::spec::Spanned;
use smartgrid_runtime::{Reading, Row, Schema, SensorId};
use timely::dataflow::InputHandle;
use timely::dataflow::operators::{Input, Inspect, Probe};

fn seed_model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/model_xgboost.json")
}

/// The seed model with another base score: same features, other predictions, other
/// content (so another version).
fn shifted_seed_model(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(seed_model_path()).expect("seed model");
    let mut json: serde_json::Value = serde_json::from_str(&text).expect("json");
    json["learner"]["learner_model_param"]["base_score"] = "1.5E3".into();
    let path = dir.join("shifted.json");
    std::fs::write(&path, json.to_string()).expect("write");
    path
}

fn seed_features() -> FeaturePlan {
    let s = |n: &str| Spanned::new(n.to_string(), Default::default());
    let config = FeaturesConfig {
        fields: vec![s("p_l1"), s("p_l2"), s("p_l3")],
        lags: Some(LagsConfig {
            fields: vec![s("p_l1"), s("p_l2"), s("p_l3")],
            count: Spanned::new(5, Default::default()),
        }),
        ..Default::default()
    };
    FeaturePlan::new(&config, &Schema::new(["p_l1", "p_l2", "p_l3", "count"])).expect("valid")
}

fn window(sensor: SensorId, k: i64) -> Reading {
    // Loads that vary by sensor and window so predictions differ.
    let base = 400.0 + (k % 17) as f64 * 35.0 + f64::from(sensor.as_str().len() as u8) * 10.0;
    Reading {
        sensor,
        time_ms: k * 10_000,
        values: Row::from_iter([base, base * 0.6, base * 1.3, 120.0]),
    }
}

#[test]
fn a_swap_mid_stream_drops_nothing_and_each_prediction_names_its_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let features = seed_features();
    let names = features.names().to_vec();
    let old = Model::from_file(&seed_model_path()).expect("seed model");
    let new = Model::from_file(&shifted_seed_model(dir.path())).expect("shifted model");
    let old_version = LoadedModel::new(old.clone(), &names)
        .expect("match")
        .version();
    let new_version = LoadedModel::new(new.clone(), &names)
        .expect("match")
        .version();
    assert_ne!(old_version, new_version);
    let slot = Arc::new(ModelSlot::new(
        LoadedModel::new(old.clone(), &names).expect("match"),
        names,
    ));
    let predictor = Predictor {
        features: Arc::new(features),
        horizon_ms: 10_000,
        step_ms: 10_000,
        predict_with_missing_lags: false,
        relative_to: vec![],
    };
    let sensors: Vec<SensorId> = ["a", "bb", "ccc"]
        .iter()
        .map(|s| SensorId::new(s).expect("short"))
        .collect();
    let windows = 40;
    let swap_after = 20;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen2, slot2, sensors2, new2) = (
        Arc::clone(&seen),
        Arc::clone(&slot),
        sensors.clone(),
        new.clone(),
    );
    timely::execute_directly(move |worker| {
        let mut input = InputHandle::new();
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .predict(
                    predictor,
                    Arc::clone(&slot2),
                    PredictCounters::default(),
                    "predictions",
                )
                .inspect(move |r: &Reading| seen2.lock().expect("lock").push(r.clone()))
                .probe()
                .0
        });
        for k in 0..windows {
            if k == swap_after {
                slot2.swap(new2.clone()).expect("same features");
            }
            let time = (k * 10_000 + 9_999) as u64;
            input.advance_to(time);
            for &s in &sensors2 {
                input.send(window(s, k));
            }
            input.advance_to(time + 1);
            while probe.less_than(input.time()) {
                worker.step();
            }
        }
    });
    let seen = seen.lock().expect("lock");
    // Windows 5.. of each sensor have five lags: all predicted, none lost at the swap.
    assert_eq!(seen.len(), sensors.len() * (windows as usize - 5));
    for r in seen.iter() {
        let version = r.values[2] as u32;
        let model = if version == old_version {
            &old
        } else {
            assert_eq!(version, new_version, "an unknown version");
            &new
        };
        let k = r.time_ms / 10_000;
        assert_eq!(
            version == new_version,
            k >= swap_after,
            "window {k} predicted by {version:08x}"
        );
        // Recompute the features: the window and its five predecessors.
        let mut features = window(r.sensor, k).values[..3].to_vec();
        for lag in 1..=5 {
            features.extend_from_slice(&window(r.sensor, k - lag).values[..3]);
        }
        assert_eq!(&r.values[3..], features.as_slice());
        assert_eq!(r.values[0], model.predict(&features), "window {k}");
    }
}

#[test]
fn a_changed_model_file_is_swapped_in_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.json");
    std::fs::copy(seed_model_path(), &path).expect("copy");
    let features = seed_features();
    let names = features.names().to_vec();
    let model = Model::from_file(&path).expect("model");
    let slot = Arc::new(ModelSlot::new(
        LoadedModel::new(model, &names).expect("match"),
        names,
    ));
    let first = slot.current().version();
    let stop = smartgrid_runtime::shutdown::Shutdown::new();
    smartgrid_operators::predict::watch_model_file(
        Arc::clone(&slot),
        path.clone(),
        Duration::from_millis(100),
        "test".into(),
        stop.clone(),
    )
    .expect("watcher");
    let wait_for = |pred: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pred() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // A broken file keeps the running model.
    std::fs::write(&path, b"{ not a model").expect("write");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(slot.generation(), 0);
    assert_eq!(slot.current().version(), first);
    // A good one is swapped in.
    std::fs::copy(shifted_seed_model(dir.path()), &path).expect("copy");
    wait_for(&|| slot.generation() == 1);
    assert_ne!(slot.current().version(), first);
    stop.trigger();
}
