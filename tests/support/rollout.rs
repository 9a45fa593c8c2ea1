//! What the model rollout tests share: the simulated fleet, models written as LightGBM
//! text ("the window's total plus c"), and the oracle that tells from each prediction
//! which model made it and whether any window was lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::records::{Key, key, lines, num};
use super::{smartgrid, write_pipeline};

/// The simulated households.
pub const SENSORS: u64 = 4;
/// Readings per second per household.
pub const RATE: u64 = 2;
/// The window, and the prediction horizon, in ms.
pub const STEP: i64 = 10_000;
/// The predict node's feature names.
pub const NAMES: [&str; 6] = ["p_l1", "p_l2", "p_l3", "p_l1-1", "p_l2-1", "p_l3-1"];

/// A LightGBM model of one tree whose two leaves are both `c`, over `names`.
pub fn constant_model(c: f64, names: &[&str]) -> String {
    let infos = vec!["[0:1000]"; names.len()].join(" ");
    format!(
        "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
         max_feature_idx={}\nobjective=regression\nfeature_names={}\nfeature_infos={infos}\n\
         tree_sizes=1\n\nTree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nsplit_gain=1\n\
         threshold=500\ndecision_type=2\nleft_child=-1\nright_child=-2\nleaf_value={c} {c}\n\
         leaf_weight=1 1\nleaf_count=1 1\ninternal_value=0\ninternal_weight=0\n\
         internal_count=2\nis_linear=0\nshrinkage=1\n\n\nend of trees\n",
        names.len() - 1,
        names.join(" ")
    )
}

/// `smartgrid keys generate --out DIR`.
pub fn generate_keys(dir: &Path) {
    let out = smartgrid()
        .args(["keys", "generate", "--out"])
        .arg(dir)
        .output()
        .expect("keys generate");
    assert!(out.status.success(), "{out:?}");
}

/// `smartgrid model sign` of `model` with `key` as `version` (its manifest goes beside it).
pub fn sign(model: &Path, key: &Path, version: &str) {
    let out = smartgrid()
        .args(["model", "sign", "--key"])
        .arg(key)
        .arg(model)
        .args(["--version", version])
        .output()
        .expect("model sign");
    assert!(out.status.success(), "{out:?}");
}

/// Writes `text` as `served/NAME` and signs it with `key` as `version`; returns its
/// manifest.
pub fn signed_manifest(
    served: &Path,
    name: &str,
    text: &str,
    version: &str,
    key: &Path,
) -> serde_json::Value {
    let model = served.join(name);
    std::fs::write(&model, text).expect("write model");
    sign(&model, key, version);
    let manifest = std::fs::read(served.join(format!("{name}.manifest.json"))).expect("manifest");
    serde_json::from_slice(&manifest).expect("manifest json")
}

/// Writes the rollout tests' pipeline `name` into `dir` and returns its path: `SENSORS`
/// simulated households for `duration`, 10 s windows, `predict` with the active model
/// `dir/active.txt` (persistence + 300, written and signed as `initial` with the key
/// in `dir/keys/`) and `updates:` whose announcements come from `source` (YAML lines at
/// the indentation of `updates:`'s keys), means and predictions to `means.jsonl` and
/// `predictions.jsonl`, then the nodes in `extra`.
pub fn rollout_pipeline(
    dir: &Path,
    name: &str,
    duration: &str,
    source: &str,
    extra: &str,
) -> PathBuf {
    std::fs::write(dir.join("active.txt"), constant_model(300.0, &NAMES)).expect("model");
    sign(
        &dir.join("active.txt"),
        &dir.join("keys/model-signing.key"),
        "initial",
    );
    let shown = dir.display();
    write_pipeline(
        dir,
        &format!(
            r#"
pipeline: {name}
nodes:
  meters:
    type: simulate
    sensors: {SENSORS}
    rate: {RATE}
    seed: 11
    realtime: false
    start: 2024-06-01T00:00:00Z
    duration: {duration}
  readings:
    type: decode
    input: meters
    format: clemap
  means:
    type: window_mean
    input: readings
    size: 10s
  predictions:
    type: predict
    input: means
    model: {shown}/active.txt
    horizon: 10s
    relative_to: [p_l1, p_l2, p_l3]
    features:
      fields: [p_l1, p_l2, p_l3]
      lags: {{fields: [p_l1, p_l2, p_l3], count: 1}}
    updates:
{source}
      public_key: {shown}/keys/model-signing.pub
      dir: {shown}/kept-models
      shadow: 2m
      watch: 2m
      min_comparisons: 20
  out_means:
    type: file
    input: means
    path: means.jsonl
    format: json
  out_predictions:
    type: file
    input: predictions
    path: predictions.jsonl
    format: json
{extra}"#
        ),
    )
}

/// Checks the predictions against the stored windows and returns, per sensor in time
/// order, the constant (prediction − window total) of the model that made each one.
/// Asserts: exactly the windows with a previous window are predicted (none lost, none
/// twice), each prediction's features are its windows', and each model version always
/// adds the same constant.
pub fn offsets_by_sensor(dir: &Path) -> BTreeMap<String, Vec<i64>> {
    let means: BTreeMap<Key, [f64; 3]> = lines(&dir.join("means.jsonl"))
        .iter()
        .map(|v| (key(v), [num(v, "p_l1"), num(v, "p_l2"), num(v, "p_l3")]))
        .collect();
    let expected: BTreeSet<Key> = means
        .keys()
        .filter(|(sensor, t)| means.contains_key(&(sensor.clone(), t - STEP)))
        .cloned()
        .collect();
    let predictions = lines(&dir.join("predictions.jsonl"));
    let got: BTreeSet<Key> = predictions.iter().map(key).collect();
    assert_eq!(got.len(), predictions.len(), "one prediction per window");
    assert_eq!(
        got, expected,
        "every window with a previous window is predicted, across every swap"
    );
    let mut offset_of_version: BTreeMap<u64, i64> = BTreeMap::new();
    let mut by_sensor: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for p in &predictions {
        let (sensor, t) = key(p);
        let now = means[&(sensor.clone(), t)];
        let before = means[&(sensor.clone(), t - STEP)];
        let features = [now[0], now[1], now[2], before[0], before[1], before[2]];
        for (name, want) in NAMES.iter().zip(features) {
            assert_eq!(num(p, name), want, "{name} of {p}");
        }
        let total: f64 = now.iter().sum();
        let offset = num(p, "predicted") - total;
        let rounded = offset.round();
        assert!((offset - rounded).abs() < 1e-6, "{p}: offset {offset}");
        let version = num(p, "model_version") as u64;
        let known = *offset_of_version.entry(version).or_insert(rounded as i64);
        assert_eq!(known, rounded as i64, "one model version, one model: {p}");
        by_sensor
            .entry(sensor)
            .or_default()
            .push((t, rounded as i64));
    }
    by_sensor
        .into_iter()
        .map(|(sensor, mut v)| {
            v.sort();
            (sensor, v.into_iter().map(|(_, o)| o).collect())
        })
        .collect()
}

/// `offsets` with consecutive repeats removed: the sequence of models a sensor saw.
pub fn phases(offsets: &[i64]) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::new();
    for &o in offsets {
        if out.last() != Some(&o) {
            out.push(o);
        }
    }
    out
}

/// The simulator's reading count for `hours` of simulated time.
pub fn readings_for(hours: u64) -> u64 {
    SENSORS * RATE * hours * 3600
}

/// The MAE of the statuses' `mae` object under `name`.
pub fn mae(status: &serde_json::Value, name: &str) -> f64 {
    status["mae"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("mae.{name} in {status}"))
}

/// Per sensor, the sequence of models (their constants) its predictions came from.
pub fn phases_by_sensor(dir: &Path) -> BTreeMap<String, Vec<i64>> {
    offsets_by_sensor(dir)
        .into_iter()
        .map(|(sensor, offsets)| {
            let seen = phases(&offsets);
            (sensor, seen)
        })
        .collect()
}
