//! `smartgrid model predict|inspect` on the seed XGBoost model: the predictions for the
//! reference rows (columns shuffled, an extra text column) are the xgboost library's
//! (`testdata/xgb_reference.csv`, column `prediction`), in row order.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn seed(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata")).join(file)
}

fn smartgrid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .args(args)
        .env("SMARTGRID_LOG", "off")
        .output()
        .expect("run smartgrid")
}

fn path_arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The reference CSV as cells: header, rows.
fn reference() -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(seed("xgb_reference.csv")).expect("the seed reference");
    let mut lines = text.lines();
    let split = |l: &str| l.split(',').map(str::to_owned).collect::<Vec<_>>();
    let header = split(lines.next().expect("a header"));
    (header, lines.map(split).collect())
}

/// Write the reference with its columns in another order (a rotation and a reversal),
/// the prediction column among them and a text column added.
fn shuffled_csv(dir: &Path, drop: Option<&str>) -> PathBuf {
    let (header, rows) = reference();
    let mut order: Vec<usize> = (0..header.len()).rev().collect();
    order.rotate_left(7);
    order.retain(|&c| Some(header[c].as_str()) != drop);
    let mut out = String::from("note,");
    out += &order
        .iter()
        .map(|&c| header[c].as_str())
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for (r, row) in rows.iter().enumerate() {
        out += &format!("row {r},");
        out += &order
            .iter()
            .map(|&c| row[c].as_str())
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
    }
    let path = dir.join("features.csv");
    std::fs::write(&path, out).expect("write the CSV");
    path
}

#[test]
fn predict_gives_xgboost_predictions_in_row_order() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let csv = shuffled_csv(dir.path(), None);
    let model = seed("model_xgboost.json");
    let out = smartgrid(&[
        "model",
        "predict",
        "--model",
        path_arg(&model),
        "--csv",
        path_arg(&csv),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (header, rows) = reference();
    let target = header
        .iter()
        .position(|h| h == "prediction")
        .expect("a prediction column");
    let got: Vec<f64> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| l.parse().expect("each line is a number"))
        .collect();
    assert_eq!(got.len(), rows.len());
    for (i, (got, row)) in got.iter().zip(&rows).enumerate() {
        let want: f64 = row[target].parse().expect("a number");
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "row {}: got {got}, xgboost gave {want}",
            i + 1
        );
    }
}

#[test]
fn predict_names_missing_columns() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let csv = shuffled_csv(dir.path(), Some("p_l2-3"));
    let model = seed("model_xgboost.json");
    let out = smartgrid(&[
        "model",
        "predict",
        "--model",
        path_arg(&model),
        "--csv",
        path_arg(&csv),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[\"p_l2-3\"]"), "{stderr}");
    assert!(
        stderr.contains("needed: [\"p_l1\"") && stderr.contains("CSV columns: [\"note\""),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_model_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let garbage = dir.path().join("garbage.bin");
    std::fs::write(&garbage, b"\x00\x01 not a model").expect("write");
    let csv = shuffled_csv(dir.path(), None);
    let out = smartgrid(&[
        "model",
        "predict",
        "--model",
        path_arg(&garbage),
        "--csv",
        path_arg(&csv),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("garbage.bin") && stderr.contains("not a model"),
        "{stderr}"
    );

    let out = smartgrid(&[
        "model",
        "inspect",
        path_arg(&dir.path().join("absent.json")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.json"));
}

#[test]
fn inspect_describes_the_seed_model() {
    let model = seed("model_xgboost.json");
    let out = smartgrid(&["model", "inspect", path_arg(&model)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let size = std::fs::metadata(&model).expect("the seed model").len();
    for expected in [
        "XGBoost JSON".to_owned(),
        "reg:squarederror".to_owned(),
        "trees:       250".to_owned(),
        "features:    18".to_owned(),
        "p_l1, p_l2, p_l3, p_l1-1".to_owned(),
        format!("size:        {size} bytes"),
    ] {
        assert!(text.contains(&expected), "{expected:?} not in\n{text}");
    }
}

/// `model --help` lists `train` in every build (without the feature it only says how to
/// get it).
#[test]
fn model_help_lists_train() {
    let out = smartgrid(&["model", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("train ")),
        "{text}"
    );
}

/// Without the `train` feature, `model train` (with any arguments, or `--help`) says
/// which feature, the cargo command and what the build needs, and writes nothing.
/// `cargo test` with `--features smartgrid/train` compiles this out; scripts/test.sh
/// runs this file once without the feature.
#[cfg(not(feature = "train"))]
#[test]
fn train_without_the_feature_says_how_to_get_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let model = dir.path().join("model.txt");
    let with_args = [
        "model",
        "train",
        "--data",
        "rows.csv",
        "--target",
        "power",
        "--out",
        path_arg(&model),
    ];
    for args in [
        &with_args[..],
        &["model", "train", "--help"],
        &["model", "train"],
    ] {
        let out = smartgrid(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let text = String::from_utf8(out.stderr).expect("UTF-8");
        for needed in [
            "the `train` feature",
            "cargo build --release --locked --features train",
            "CMake >= 3.28",
            "C++ compiler",
            "libclang",
        ] {
            assert!(text.contains(needed), "{args:?}: {needed:?} not in\n{text}");
        }
    }
    assert!(!model.exists());
}
