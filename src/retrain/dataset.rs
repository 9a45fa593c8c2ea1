//! Training rows from the store, the held-out split, and the weighted MAE that decides
//! whether a candidate is published.
//!
//! **Weights.** `compare_with_lag` sends every prediction over the threshold but only a
//! share `sample_good` of the good ones, so the store over-represents failures by
//! 1/sample_good. A good row gets weight 1/sample_good and a flagged row 1: the
//! weighted rows stand for every prediction the devices made, in their proportions.
//! The same weights go into the held-out MAE, so it estimates the error over all
//! predictions, not over the failures.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use smartgrid_models::Model;

use super::config::RetrainConfig;
use super::store::Store;

/// The store's triplets as rows, oldest first.
#[derive(Debug, Default)]
pub struct Dataset {
    pub feature_names: Vec<String>,
    pub sensors: Vec<String>,
    pub times: Vec<i64>,
    pub features: Vec<Vec<f64>>,
    pub actual: Vec<f64>,
    /// The current window's total (the persistence forecast).
    pub current: Vec<f64>,
    pub weights: Vec<f64>,
    /// Rows from here on are held out (the most recent).
    pub split: usize,
}

impl Dataset {
    pub fn new(store: &Store, config: &RetrainConfig) -> Dataset {
        let mut data = Dataset {
            feature_names: config.features.clone(),
            ..Dataset::default()
        };
        let good_weight = 1.0 / config.sample_good;
        for t in store.triplets() {
            data.sensors.push(t.sensor.clone());
            data.times.push(t.time_ms);
            data.features.push(t.features.clone());
            data.actual.push(t.actual);
            data.current.push(t.current);
            data.weights.push(if t.flagged { 1.0 } else { good_weight });
        }
        let n = data.actual.len();
        let held = ((n as f64) * config.holdout).ceil() as usize;
        data.split = n - held.min(n);
        data
    }

    /// The label of row `i` for a model relative to `base` (positions in the row).
    pub fn label(&self, i: usize, base: &[usize]) -> f64 {
        self.actual[i] - base.iter().map(|&c| self.features[i][c]).sum::<f64>()
    }

    /// Weighted MAE of `predict` over the held-out rows.
    pub fn held_out_mae(&self, mut predict: impl FnMut(usize) -> f64) -> f64 {
        let (mut sum, mut weight) = (0.0, 0.0);
        for i in self.split..self.actual.len() {
            sum += self.weights[i] * (self.actual[i] - predict(i)).abs();
            weight += self.weights[i];
        }
        if weight > 0.0 { sum / weight } else { f64::NAN }
    }

    /// Positions of `names` among the features; the error names the first absent one.
    pub fn positions(&self, names: &[String], what: &str) -> anyhow::Result<Vec<usize>> {
        names
            .iter()
            .map(|name| {
                self.feature_names
                    .iter()
                    .position(|f| f == name)
                    .with_context(|| {
                        format!(
                            "{what} needs the feature {name:?}, which is not among the configured \
                             features ({})",
                            self.feature_names.join(", ")
                        )
                    })
            })
            .collect()
    }

    /// Held-out MAE of `model`, which predicts the change from the sum of `relative_to`
    /// (or the level, for `[]`). Its features are taken by name.
    pub fn model_mae(
        &self,
        model: &Model,
        relative_to: &[String],
        what: &str,
    ) -> anyhow::Result<f64> {
        let columns = match model.feature_names() {
            Some(names) => self.positions(names, what)?,
            None => (0..model.info().num_features.min(self.feature_names.len())).collect(),
        };
        let base = self.positions(relative_to, what)?;
        let mut row = Vec::with_capacity(columns.len());
        Ok(self.held_out_mae(|i| {
            row.clear();
            row.extend(columns.iter().map(|&c| self.features[i][c]));
            model.predict(&row) + base.iter().map(|&c| self.features[i][c]).sum::<f64>()
        }))
    }

    /// Write every row as CSV: `sensor_id,time_ms,<features>,actual,weight,held_out`
    /// (what `--rows-out` shows; floats in shortest round-trip form).
    pub fn write_csv(&self, path: &Path) -> anyhow::Result<()> {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        let mut header = vec!["sensor_id".to_owned(), "time_ms".to_owned()];
        header.extend(self.feature_names.iter().cloned());
        header.extend(["actual", "weight", "held_out"].map(String::from));
        writeln!(out, "{}", header.join(","))?;
        for i in 0..self.actual.len() {
            let mut cells = vec![self.sensors[i].clone(), self.times[i].to_string()];
            cells.extend(self.features[i].iter().map(|v| {
                if v.is_nan() {
                    String::new()
                } else {
                    v.to_string()
                }
            }));
            cells.push(self.actual[i].to_string());
            cells.push(self.weights[i].to_string());
            cells.push(u8::from(i >= self.split).to_string());
            writeln!(out, "{}", cells.join(","))?;
        }
        out.flush()
            .with_context(|| format!("writing {}", path.display()))
    }
}
