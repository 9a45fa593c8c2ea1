//! Prediction and drift, end to end through `smartgrid run`: simulated readings →
//! 10 s means → `predict` with the seed's XGBoost model → `compare_with_lag`. Every
//! prediction, triplet and residual is checked against an oracle computed here: features
//! and lags rebuilt from the stored windows, the model called directly, the join done
//! by hand with actuals recomputed from the raw readings.

mod support;

use support::records::{Key, key, lines, num};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use smartgrid_models::Model;

const PIPELINE: &str = r#"
pipeline: prediction-test
nodes:
  meters:
    type: simulate
    sensors: 4
    seed: 7
    realtime: false
    start: 2024-06-01T17:00:00Z
    duration: 20m
  readings:
    type: decode
    input: meters
    format: clemap
  means_10s:
    type: window_mean
    input: readings
    size: 10s
  predictions:
    type: predict
    input: means_10s
    model: ${SEED_MODEL}
    horizon: 10s
    features:
      fields: [p_l1, p_l2, p_l3]
      lags: {fields: [p_l1, p_l2, p_l3], count: 5}
  drift:
    type: compare_with_lag
    inputs: [predictions, means_10s]
    actual: [p_l1, p_l2, p_l3]
    threshold: {absolute: 150, relative: 0.1}
    sample_good: 0.1
  residuals:
    type: compare_with_lag
    inputs: [predictions, means_10s]
    actual: [p_l1, p_l2, p_l3]
    emit: residuals
  raw:
    type: file
    input: readings
    path: raw.jsonl
    format: json
  out_means:
    type: file
    input: means_10s
    path: means.jsonl
    format: json
  out_predictions:
    type: file
    input: predictions
    path: predictions.jsonl
    format: json
  out_drift:
    type: file
    input: drift
    path: drift.jsonl
    format: json
  out_residuals:
    type: file
    input: residuals
    path: residuals.jsonl
    format: json
"#;

const LAGS: i64 = 5;
const STEP: i64 = 10_000;

fn seed_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/model_xgboost.json")
}

struct Run {
    dir: tempfile::TempDir,
    stderr: String,
}

fn run(workers: usize) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), PIPELINE).expect("write pipeline");
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .args(["run", "p.yaml", "--workers", &workers.to_string()])
        .current_dir(dir.path())
        .env("SEED_MODEL", seed_model())
        .env("SMARTGRID_LOG", "info")
        .output()
        .expect("run smartgrid");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "smartgrid failed:\n{stderr}");
    Run { dir, stderr }
}

fn counter(stderr: &str, name: &str) -> u64 {
    let needle = format!("{name}=");
    let at = stderr
        .rfind(&needle)
        .unwrap_or_else(|| panic!("no {name} in:\n{stderr}"));
    stderr[at + needle.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count")
}

#[test]
fn predictions_triplets_and_residuals_match_an_oracle() {
    let run = run(2);
    let d = run.dir.path();
    let model = Model::from_file(&seed_model()).expect("seed model");

    // Window values as stored; the actuals are recomputed from the raw readings.
    let means: BTreeMap<Key, [f64; 3]> = lines(&d.join("means.jsonl"))
        .iter()
        .map(|v| (key(v), [num(v, "p_l1"), num(v, "p_l2"), num(v, "p_l3")]))
        .collect();
    let mut raw_sums: BTreeMap<Key, (f64, f64)> = BTreeMap::new();
    for v in lines(&d.join("raw.jsonl")) {
        let (sensor, t) = key(&v);
        let e = raw_sums
            .entry((sensor, t.div_euclid(STEP) * STEP))
            .or_default();
        e.0 += num(&v, "p_l1") + num(&v, "p_l2") + num(&v, "p_l3");
        e.1 += 1.0;
    }
    let actual_of = |k: &Key| raw_sums.get(k).map(|(sum, n)| sum / n);

    // The oracle's predictions: every window with five earlier windows of its sensor.
    let mut expected: BTreeMap<Key, (f64, Vec<f64>)> = BTreeMap::new();
    for ((sensor, t), now) in &means {
        let lags: Option<Vec<[f64; 3]>> = (1..=LAGS)
            .map(|k| means.get(&(sensor.clone(), t - k * STEP)).copied())
            .collect();
        let Some(lags) = lags else { continue };
        let features: Vec<f64> = now.iter().chain(lags.iter().flatten()).copied().collect();
        expected.insert((sensor.clone(), *t), (model.predict(&features), features));
    }
    assert!(
        expected.len() > 400,
        "only {} predictions expected",
        expected.len()
    );

    let predictions = lines(&d.join("predictions.jsonl"));
    assert_eq!(
        predictions.len(),
        expected.len(),
        "one prediction per window with full history"
    );
    let names = ["p_l1", "p_l2", "p_l3"];
    let feature_names: Vec<String> = names
        .iter()
        .map(|n| n.to_string())
        .chain((1..=LAGS).flat_map(|k| names.iter().map(move |n| format!("{n}-{k}"))))
        .collect();
    assert_eq!(
        feature_names,
        model
            .feature_names()
            .expect("the seed model names its features")
    );
    let versions: BTreeSet<u64> = predictions
        .iter()
        .map(|p| num(p, "model_version") as u64)
        .collect();
    assert_eq!(versions.len(), 1, "one model for the whole run");
    for p in &predictions {
        let (want, features) = &expected[&key(p)];
        assert_eq!(num(p, "predicted"), *want, "{p}");
        assert_eq!(num(p, "target_time") as i64, key(p).1 + STEP);
        let got: Vec<f64> = feature_names.iter().map(|n| num(p, n)).collect();
        assert_eq!(&got, features);
    }

    // The join: a prediction meets the actual window at its target time, if there is one.
    let threshold = |predicted: f64, actual: f64| {
        let e = (actual - predicted).abs();
        e > 150.0 && e > 0.1 * actual.abs()
    };
    let mut joined = BTreeMap::new();
    let mut never_came = 0;
    for ((sensor, t), (predicted, _)) in &expected {
        let target = (sensor.clone(), t + STEP);
        match actual_of(&target) {
            Some(actual) => {
                joined.insert(target, (*predicted, actual, *t));
            }
            None => never_came += 1,
        }
    }
    assert_eq!(counter(&run.stderr, "drift.expired") as usize, never_came);
    assert_eq!(
        counter(&run.stderr, "drift.compared") as usize,
        joined.len()
    );

    let residuals = lines(&d.join("residuals.jsonl"));
    assert_eq!(
        residuals.len(),
        joined.len(),
        "a residual per compared prediction"
    );
    for r in &residuals {
        let (predicted, actual, _) = joined[&key(r)];
        assert_eq!(num(r, "predicted"), predicted);
        assert!(
            (num(r, "actual") - actual).abs() <= 1e-9 * actual.abs().max(1.0),
            "{r}: {actual}"
        );
        assert!((num(r, "error") - (num(r, "actual") - predicted)).abs() < 1e-9);
    }

    let triplets = lines(&d.join("drift.jsonl"));
    let over: BTreeSet<Key> = joined
        .iter()
        .filter(|(_, (p, a, _))| threshold(*p, *a))
        .map(|((sensor, _), (_, _, t))| (sensor.clone(), *t))
        .collect();
    let good = joined.len() - over.len();
    assert!(
        !over.is_empty() && good > 100,
        "{} over, {good} good: the test needs both",
        over.len()
    );
    let mut flagged = BTreeSet::new();
    let mut sampled = 0;
    for t in &triplets {
        let k = key(t);
        let target = (k.0.clone(), num(t, "target_time") as i64);
        let (predicted, actual, _) = joined[&target];
        assert_eq!(num(t, "predicted"), predicted);
        assert!((num(t, "actual") - actual).abs() <= 1e-9 * actual.abs().max(1.0));
        let (_, features) = &expected[&k];
        let got: Vec<f64> = feature_names.iter().map(|n| num(t, n)).collect();
        assert_eq!(&got, features, "a triplet carries the prediction's inputs");
        if num(t, "flagged") == 1.0 {
            assert!(threshold(predicted, actual), "{t}");
            flagged.insert(k);
        } else {
            assert!(!threshold(predicted, actual), "{t}");
            sampled += 1;
        }
    }
    assert_eq!(
        flagged, over,
        "every prediction over the threshold, and only those"
    );
    // 10 % of the good ones, uniformly: well within four standard deviations.
    let mean = good as f64 * 0.1;
    let sd = (good as f64 * 0.1 * 0.9).sqrt();
    assert!(
        (sampled as f64 - mean).abs() < 4.0 * sd,
        "{sampled} sampled of {good} good"
    );
}

#[test]
fn one_and_two_workers_give_the_same_triplets() {
    let sorted = |run: &Run| {
        let mut t: Vec<String> = std::fs::read_to_string(run.dir.path().join("drift.jsonl"))
            .expect("triplets")
            .lines()
            .map(str::to_string)
            .collect();
        t.sort();
        t
    };
    let (one, two) = (run(1), run(2));
    let one = sorted(&one);
    assert!(!one.is_empty());
    assert_eq!(one, sorted(&two));
}
