//! The seed XGBoost model against the predictions the xgboost library (3.2) made for the
//! reference rows (`testdata/xgb_reference.csv`, last column `prediction`).

use std::path::PathBuf;

use smartgrid_models::csv::CsvFeatures;
use smartgrid_models::{Model, ModelFormat};

fn seed(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata")).join(file)
}

/// The reference rows (features in the model's order) and xgboost's predictions.
fn reference(model: &Model) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut csv = CsvFeatures::open(&seed("xgb_reference.csv")).expect("the seed reference CSV");
    let columns = csv.columns_for_model(model).expect("the model's columns");
    let target = csv
        .columns_for(&["prediction".to_owned()])
        .expect("a prediction column");
    let mut all = columns.clone();
    all.extend(target);
    let rows = csv.read_all(&all).expect("numeric rows");
    let features = rows.iter().map(|r| r[..columns.len()].to_vec()).collect();
    let expected = rows.iter().map(|r| r[columns.len()]).collect();
    (features, expected)
}

fn assert_close(got: f64, want: f64, what: &str) {
    let tolerance = 1e-5 * want.abs().max(1e-12);
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: got {got}, xgboost gave {want} (relative error {:e})",
        (got - want).abs() / want.abs()
    );
}

#[test]
fn seed_model_matches_xgboost() {
    let model = Model::from_file(&seed("model_xgboost.json")).unwrap();
    let info = model.info();
    assert_eq!(info.format, ModelFormat::XGBoostJson);
    assert_eq!(info.trees, 250);
    assert_eq!(info.num_features, 18);
    assert_eq!(info.objective, "reg:squarederror");
    let (rows, expected) = reference(&model);
    assert_eq!(rows.len(), 300);
    let mut exact = 0;
    for (i, (row, want)) in rows.iter().zip(&expected).enumerate() {
        let got = model.predict(row);
        assert_close(got, *want, &format!("row {}", i + 1));
        exact += usize::from(got == *want);
    }
    // f32 summation in xgboost's order gives its very bits, not only its neighbourhood
    assert!(
        exact == rows.len(),
        "only {exact} of {} predictions bit-exact",
        rows.len()
    );
}

#[test]
fn converted_lightgbm_model_matches_xgboost() {
    let bytes = std::fs::read(seed("model_xgboost.json")).unwrap();
    let xgb = Model::parse(&bytes).unwrap();
    let text = smartgrid_models::xgboost_to_lightgbm(&bytes).unwrap();
    let lgb = Model::parse(text.as_bytes()).unwrap();
    assert_eq!(lgb.info().format, ModelFormat::LightGbmText);
    assert_eq!(lgb.info().trees, 250);
    assert_eq!(lgb.feature_names(), xgb.feature_names());
    let (rows, expected) = reference(&xgb);
    for (i, (row, want)) in rows.iter().zip(&expected).enumerate() {
        assert_close(lgb.predict(row), *want, &format!("row {}", i + 1));
    }
    // missing values take the same paths in both
    for row in &rows {
        for hole in [0, 5, 17] {
            let mut holed = row.clone();
            holed[hole] = f64::NAN;
            assert_close(lgb.predict(&holed), xgb.predict(&holed), "row with a NaN");
        }
    }
}
