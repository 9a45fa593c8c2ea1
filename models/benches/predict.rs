//! Single-row prediction on the seed model (250 trees, 18 features): ours on the XGBoost
//! JSON, ours on the same trees converted to LightGBM text, and (feature `train`)
//! LightGBM's own single-row fast path (`LGBM_BoosterPredictForMatSingleRowFast`) on
//! that converted model.
//!
//! `cargo bench -p smartgrid-models --bench predict [--features train]`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use smartgrid_models::Model;
use smartgrid_models::csv::CsvFeatures;

fn seed(file: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata")).join(file)
}

fn rows(model: &Model) -> Vec<Vec<f64>> {
    let mut csv = CsvFeatures::open(&seed("xgb_reference.csv")).expect("the seed reference CSV");
    let columns = csv.columns_for_model(model).expect("the model's columns");
    csv.read_all(&columns).expect("numeric rows")
}

fn predict(c: &mut Criterion) {
    let bytes = std::fs::read(seed("model_xgboost.json")).expect("the seed model");
    let xgb = Model::parse(&bytes).expect("the seed model loads");
    let lgb_text = smartgrid_models::xgboost_to_lightgbm(&bytes).expect("converts");
    let lgb = Model::parse(lgb_text.as_bytes()).expect("the converted model loads");
    let rows = rows(&xgb);

    let mut group = c.benchmark_group("single_row");
    // cycle through the reference rows so branch predictors cannot learn one path
    let mut i = 0;
    group.bench_function("ours_xgboost_json", |b| {
        b.iter(|| {
            i = (i + 1) % rows.len();
            xgb.predict(black_box(&rows[i]))
        })
    });
    group.bench_function("ours_lightgbm_text", |b| {
        b.iter(|| {
            i = (i + 1) % rows.len();
            lgb.predict(black_box(&rows[i]))
        })
    });
    #[cfg(feature = "train")]
    {
        let mut booster =
            lightgbm3::Booster::from_string(&lgb_text).expect("LightGBM loads the converted model");
        let params = serde_json::json!({"num_threads": 1});
        booster
            .single_row_fast_init::<f64>(Some(&params))
            .expect("fast init");
        group.bench_function("lightgbm_single_row_fast", |b| {
            b.iter(|| {
                i = (i + 1) % rows.len();
                booster
                    .predict_single_row_fast(black_box(&rows[i]))
                    .expect("predicts")[0]
            })
        });
    }
    group.finish();
}

criterion_group!(benches, predict);
criterion_main!(benches);
