//! `smartgrid model train` (feature `train`): trains LightGBM on a CSV with missing
//! cells, writes a text model that our evaluator loads, and whose predictions equal
//! LightGBM's own (through `lightgbm3`) on rows with missing values.
#![cfg(feature = "train")]

mod support;

use std::process::Command;

use support::cli::Noise;

use smartgrid_models::Model;
use smartgrid_models::train::lightgbm_predict;

/// Rows of (a, b, c) with about one cell in ten missing.
fn rows(seed: u64, n: usize) -> Vec<Vec<f64>> {
    let mut noise = Noise(seed);
    (0..n)
        .map(|_| {
            (0..3)
                .map(|_| {
                    if noise.next() < 0.1 {
                        f64::NAN
                    } else {
                        noise.next() * 10.0 - 5.0
                    }
                })
                .collect()
        })
        .collect()
}

fn cell(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else {
        v.to_string()
    }
}

#[test]
fn train_writes_a_model_that_matches_lightgbm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.csv");
    let mut noise = Noise(99);
    // the target between the features, to show that it is found by name
    let mut text = String::from("a,power,b,c\n");
    for row in rows(7, 1500) {
        let v = |i: usize| if row[i].is_nan() { 2.0 } else { row[i] };
        let power = 100.0 + 20.0 * v(0) - v(1) * v(1) + 5.0 * v(2).cos() + noise.next();
        text += &format!(
            "{},{power},{},{}\n",
            cell(row[0]),
            cell(row[1]),
            cell(row[2])
        );
    }
    std::fs::write(&data, text).unwrap();
    let out_path = dir.path().join("model.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .args(["model", "train", "--data"])
        .arg(&data)
        .args(["--target", "power", "--out"])
        .arg(&out_path)
        .args([
            "--trees",
            "220",
            "--learning-rate",
            "0.1",
            "--num-leaves",
            "12",
        ])
        .args(["--seed", "5", "--param", "min_data_in_leaf=5"])
        .env("SMARTGRID_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let model = Model::from_file(&out_path).unwrap();
    assert_eq!(model.info().trees, 220);
    assert_eq!(model.feature_names().unwrap(), ["a", "b", "c"]);
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(text.contains("learning_rate: 0.1") || text.contains("[learning_rate: 0.1]"));
    let test_rows = rows(8, 1000);
    let lightgbm = lightgbm_predict(&text, &test_rows).unwrap();
    for (row, want) in test_rows.iter().zip(&lightgbm) {
        let got = model.predict(row);
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "{row:?}: ours {got}, LightGBM {want}"
        );
    }
}

#[test]
fn train_reports_a_missing_target() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.csv");
    std::fs::write(&data, "a,b\n1,2\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .args(["model", "train", "--data"])
        .arg(&data)
        .args(["--target", "power", "--out"])
        .arg(dir.path().join("m.txt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("power") && stderr.contains("[\"a\", \"b\"]"),
        "{stderr}"
    );
}
