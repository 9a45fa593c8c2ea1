//! The shipped default model against the persistence forecast ("the next window is this
//! window") on simulated data it was not trained on: another seed (other households)
//! and another date. It must have the lower mean absolute error; if it does not, the
//! features or the simulator are wrong.
//!
//! The figures in docs/models.md come from a whole held-out day:
//! `ACCURACY_SENSORS=20 ACCURACY_DURATION=24h cargo test --release --test accuracy -- --nocapture`.

use std::path::Path;
use std::process::Command;

const PIPELINE: &str = r#"
pipeline: accuracy
nodes:
  meters:
    type: simulate
    sensors: ${SENSORS}
    seed: 777
    realtime: false
    start: 2024-09-17T${START_HOUR}:00:00Z
    duration: ${DURATION}
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
    model: ${MODEL}
    horizon: 10s
    relative_to: [p_l1, p_l2, p_l3]   # the model predicts the change
    features:
      fields: [p_l1, p_l2, p_l3]
      lags: {fields: [p_l1, p_l2, p_l3], count: 5}
  compared:
    type: compare_with_lag
    inputs: [predictions, means_10s]
    actual: [p_l1, p_l2, p_l3]
  out:
    type: file
    input: compared
    path: compared.csv
    format: csv
"#;

#[test]
fn the_default_model_beats_persistence_on_held_out_data() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("p.yaml"), PIPELINE).expect("write");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default/model.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .env("MODEL", &model)
        .env("SENSORS", env("ACCURACY_SENSORS", "4"))
        .env("DURATION", env("ACCURACY_DURATION", "4h"))
        // From the afternoon into the evening peak: the hours where loads switch most.
        .env("START_HOUR", env("ACCURACY_START_HOUR", "16"))
        .output()
        .expect("run smartgrid");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let text = std::fs::read_to_string(dir.path().join("compared.csv")).expect("rows");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    let (predicted, actual) = (col("predicted"), col("actual"));
    let phases = [col("p_l1"), col("p_l2"), col("p_l3")];
    let (mut model_error, mut persistence_error, mut n) = (0.0, 0.0, 0usize);
    for line in lines {
        let cells: Vec<f64> = line
            .split(',')
            .skip(1) // the sensor id
            .map(|c| c.parse().unwrap_or(f64::NAN))
            .collect();
        let cell = |i: usize| cells[i - 1];
        let now: f64 = phases.iter().map(|&i| cell(i)).sum();
        model_error += (cell(actual) - cell(predicted)).abs();
        persistence_error += (cell(actual) - now).abs();
        n += 1;
    }
    assert!(n > 1000, "only {n} predictions compared");
    let (model_mae, persistence_mae) = (model_error / n as f64, persistence_error / n as f64);
    println!(
        "{n} predictions: default model MAE {model_mae:.1} W, persistence MAE {persistence_mae:.1} W \
         ({:.1} % better)",
        100.0 * (1.0 - model_mae / persistence_mae)
    );
    assert!(
        model_mae < persistence_mae,
        "the default model ({model_mae:.1} W) must beat persistence ({persistence_mae:.1} W)"
    );
}
