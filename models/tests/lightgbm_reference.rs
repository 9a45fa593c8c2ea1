//! LightGBM models trained by LightGBM itself on seeded synthetic data with missing
//! values, evaluated by LightGBM (through the `lightgbm3` crate) and by our evaluator:
//! the predictions agree within 1e-5 relative, for each of LightGBM's missing types
//! (NaN: the default; Zero: `zero_as_missing=true`; None: `use_missing=false`).
#![cfg(feature = "train")]
// Test helpers outside `#[test]` functions unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smartgrid_models::train::{TrainParams, lightgbm_predict, train_lightgbm};
use smartgrid_models::{Model, ModelFormat};

const FEATURES: usize = 6;

fn names() -> Vec<String> {
    (0..FEATURES).map(|i| format!("x{i}")).collect()
}

/// Rows with NaNs, exact zeros and values near zero; the target is a noisy function
/// of the features in which a missing value means something.
fn data(seed: u64, n: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f64> = (0..FEATURES)
            .map(|_| match rng.random_range(0..20) {
                0 | 1 => f64::NAN,
                2 => 0.0,
                3 => 1e-36 * rng.random_range(-1.0..1.0),
                _ => rng.random_range(-2.0..2.0),
            })
            .collect();
        let v = |i: usize| if row[i].is_nan() { -1.5 } else { row[i] };
        let y = 3.0 * v(0).sin() + v(1) * v(1) - 2.0 * v(2)
            + if v(3) > 0.5 { 1.5 } else { 0.0 }
            + 0.5 * v(4) * v(5)
            + if row[5] == 0.0 { 2.0 } else { 0.0 }
            + rng.random_range(-0.1..0.1);
        rows.push(row);
        labels.push(y);
    }
    (rows, labels)
}

fn params(extra: &[&str]) -> TrainParams {
    TrainParams {
        trees: 200,
        learning_rate: 0.1,
        num_leaves: 15,
        seed: 3,
        extra: extra
            .iter()
            .map(|s| s.to_string())
            .chain(["min_data_in_leaf=5".to_owned()])
            .collect(),
    }
}

/// The missing types (decision_type bits 2-3) of the model's numeric splits.
fn missing_types(text: &str) -> Vec<i64> {
    let mut types: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("decision_type="))
        .flat_map(|l| {
            l.split_whitespace()
                .map(|d| (d.parse::<i64>().unwrap() >> 2) & 3)
        })
        .collect();
    types.sort_unstable();
    types.dedup();
    types
}

fn compare(text: &str, rows: &[Vec<f64>]) {
    let ours = Model::parse(text.as_bytes()).unwrap();
    assert_eq!(ours.info().format, ModelFormat::LightGbmText);
    assert_eq!(ours.feature_names().unwrap(), names());
    let theirs = lightgbm_predict(text, rows).unwrap();
    assert_eq!(theirs.len(), rows.len());
    for (i, (row, want)) in rows.iter().zip(&theirs).enumerate() {
        let got = ours.predict(row);
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1e-9),
            "row {i} {row:?}: ours {got}, LightGBM {want}"
        );
    }
}

fn check_missing_type(extra: &[&str], expected_type: i64) {
    let (rows, labels) = data(1, 3000);
    let text = train_lightgbm(&rows, &labels, &names(), &params(extra), |_| {}).unwrap();
    let model = Model::parse(text.as_bytes()).unwrap();
    assert_eq!(model.info().trees, 200);
    assert!(
        missing_types(&text).contains(&expected_type),
        "no split of missing type {expected_type} in {:?}",
        missing_types(&text)
    );
    let (test_rows, _) = data(2, 2000);
    compare(&text, &test_rows);
}

#[test]
fn missing_type_nan() {
    check_missing_type(&[], 2);
}

#[test]
fn missing_type_zero() {
    check_missing_type(&["zero_as_missing=true"], 1);
}

#[test]
fn missing_type_none() {
    check_missing_type(&["use_missing=false"], 0);
}

/// A model trained through the `lightgbm3` crate's own training call, and LightGBM's
/// predictions from that very booster.
#[test]
fn lightgbm3_booster_matches() {
    let (rows, labels) = data(5, 3000);
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    let labels: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    let dataset = lightgbm3::Dataset::from_slice(&flat, &labels, FEATURES as i32, true).unwrap();
    let booster = lightgbm3::Booster::train(
        dataset,
        &serde_json::json!({
            "num_iterations": 250, "objective": "regression", "num_leaves": 20,
            "learning_rate": 0.05, "min_data_in_leaf": 5, "seed": 11, "verbosity": -1,
            "num_threads": 1, "deterministic": true,
        }),
    )
    .unwrap();
    let text = booster.save_string().unwrap();
    let ours = Model::parse(text.as_bytes()).unwrap();
    assert_eq!(ours.info().trees, 250);
    let (test_rows, _) = data(6, 2000);
    let flat_test: Vec<f64> = test_rows.iter().flatten().copied().collect();
    let theirs = booster.predict(&flat_test, FEATURES as i32, true).unwrap();
    for (row, want) in test_rows.iter().zip(&theirs) {
        let got = ours.predict(row);
        assert!(
            (got - want).abs() <= 1e-5 * want.abs().max(1e-9),
            "{row:?}: ours {got}, LightGBM {want}"
        );
    }
}

#[test]
fn converted_seed_model_matches_lightgbm() {
    // the XGBoost seed model converted to LightGBM text: LightGBM's own predictor
    // reads it and agrees with ours (and both with xgboost, see xgboost_reference.rs)
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/model_xgboost.json"
    ))
    .unwrap();
    let text = smartgrid_models::xgboost_to_lightgbm(&bytes).unwrap();
    let xgb = Model::parse(&bytes).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let rows: Vec<Vec<f64>> = (0..500)
        .map(|_| {
            (0..18)
                .map(|_| {
                    if rng.random_range(0..10) == 0 {
                        f64::NAN
                    } else {
                        rng.random_range(0.0..2500.0)
                    }
                })
                .collect()
        })
        .collect();
    let lightgbm = lightgbm_predict(&text, &rows).unwrap();
    for (row, want) in rows.iter().zip(&lightgbm) {
        let got = xgb.predict(row);
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "{row:?}: xgboost rule {got}, LightGBM {want}"
        );
    }
}

#[test]
fn training_input_errors() {
    let names = names();
    let e = train_lightgbm(
        &[vec![0.0; FEATURES]],
        &[f64::NAN],
        &names,
        &params(&[]),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("target"), "{e}");
    let e = train_lightgbm(&[vec![0.0; 2]], &[1.0], &names, &params(&[]), |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 1"), "{e}");
    let e = train_lightgbm(
        &[vec![0.0; FEATURES]],
        &[1.0],
        &names,
        &params(&["bogus"]),
        |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("bogus"), "{e}");
}
