//! Gradient-boosted tree models: a pure-Rust evaluator for XGBoost JSON and LightGBM
//! text models that gives the libraries' own predictions (same split rules, missing
//! values, base score and summation), fast enough for one row at a time on a Pi.
//!
//! ```no_run
//! # fn main() -> Result<(), smartgrid_models::ModelError> {
//! let model = smartgrid_models::Model::from_file("model.json".as_ref())?;
//! let prediction = model.predict(&[1.0, f64::NAN, 3.0]); // NaN = missing
//! # let _ = prediction; Ok(()) }
//! ```

mod complete;
mod convert;
pub mod csv;
mod forest;
mod lightgbm;
pub mod signing;
mod threshold;
#[cfg(feature = "train")]
pub mod train;
mod tree;
mod xgboost;
#[cfg(test)]
mod xorshift;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use convert::xgboost_to_lightgbm;
pub use tree::Accumulation;

/// A loaded model. Cheap to clone (shared), usable from many threads.
#[derive(Debug, Clone)]
pub struct Model {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    forest: forest::Forest,
    format: ModelFormat,
    feature_names: Option<Vec<String>>,
    objective: String,
    size_bytes: usize,
    fingerprint: u64,
}

/// The file formats the evaluator reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// XGBoost's JSON model (`save_model("….json")`).
    XGBoostJson,
    /// LightGBM's text model (`save_model("….txt")`).
    LightGbmText,
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelFormat::XGBoostJson => "XGBoost JSON",
            ModelFormat::LightGbmText => "LightGBM text",
        })
    }
}

/// What `Model::info` tells about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub format: ModelFormat,
    pub trees: usize,
    pub num_features: usize,
    pub feature_names: Option<Vec<String>>,
    /// The objective as the file names it (`reg:squarederror`, `regression`, …).
    pub objective: String,
    pub size_bytes: usize,
    /// What the trees are added to, in the margin space (XGBoost's base margin; 0 for
    /// LightGBM, whose initial score is folded into the first tree).
    pub base_score: f64,
    /// How the leaves are summed (f32 for XGBoost, f64 for LightGBM): predictions of an
    /// f32 model are f32 values and print as such.
    pub accumulation: Accumulation,
    /// [`Model::fingerprint`].
    pub fingerprint: u64,
}

/// Why a model (or a feature file) could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Any error about the content of a file, with the file's name.
    #[error("{path}: {error}")]
    InFile {
        path: PathBuf,
        error: Box<ModelError>,
    },
    #[error("not a model: neither XGBoost JSON nor LightGBM text (the file starts with {start:?})")]
    UnknownFormat { start: String },
    #[error("invalid {format} model: {message}")]
    Invalid {
        format: ModelFormat,
        message: String,
    },
    #[error("CSV {source_name}: {message}")]
    Csv {
        source_name: String,
        message: String,
    },
    #[error(
        "CSV {source_name} has no column {missing:?} (needed: {wanted:?}; CSV columns: {csv:?})"
    )]
    MissingColumns {
        source_name: String,
        missing: Vec<String>,
        wanted: Vec<String>,
        csv: Vec<String>,
    },
    #[error("training failed: {0}")]
    Train(String),
}

impl Model {
    /// Load a model file; the format is detected from the content.
    pub fn from_file(path: &Path) -> Result<Model, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        Model::parse(&bytes).map_err(|error| ModelError::InFile {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// Read a model from its bytes; the format is detected from the content.
    pub fn parse(bytes: &[u8]) -> Result<Model, ModelError> {
        let format = detect(bytes)?;
        let invalid = |message: String| ModelError::Invalid { format, message };
        let (forest, feature_names, objective) = match format {
            ModelFormat::XGBoostJson => {
                let model = xgboost::parse(bytes).map_err(invalid)?;
                let forest = model.compile().map_err(invalid)?;
                (forest, model.feature_names, model.objective)
            }
            ModelFormat::LightGbmText => {
                let model = lightgbm::parse(bytes).map_err(invalid)?;
                (model.forest, Some(model.feature_names), model.objective)
            }
        };
        Ok(Model {
            inner: Arc::new(Inner {
                forest,
                format,
                feature_names,
                objective,
                size_bytes: bytes.len(),
                fingerprint: fnv1a64(bytes),
            }),
        })
    }

    /// The model's feature names in feature order, if the file has them.
    pub fn feature_names(&self) -> Option<&[String]> {
        self.inner.feature_names.as_deref()
    }

    pub fn num_features(&self) -> usize {
        self.inner.forest.num_features()
    }

    /// Predict one row of features in the model's order. NaN is a missing value, and so
    /// is every feature past the slice's end; extra values are ignored. Never panics and
    /// does not allocate.
    pub fn predict(&self, features: &[f64]) -> f64 {
        self.inner.forest.predict(features)
    }

    /// FNV-1a 64 of the model's bytes: identifies a model version.
    pub fn fingerprint(&self) -> u64 {
        self.inner.fingerprint
    }

    pub fn format(&self) -> ModelFormat {
        self.inner.format
    }

    pub fn info(&self) -> ModelInfo {
        let inner = &self.inner;
        ModelInfo {
            format: inner.format,
            trees: inner.forest.num_trees(),
            num_features: inner.forest.num_features(),
            feature_names: inner.feature_names.clone(),
            objective: inner.objective.clone(),
            size_bytes: inner.size_bytes,
            base_score: inner.forest.base_score(),
            accumulation: inner.forest.accumulation(),
            fingerprint: inner.fingerprint,
        }
    }
}

/// The format, from the content: a JSON object with a `learner` is XGBoost, a text
/// starting with a `tree` line is LightGBM.
fn detect(bytes: &[u8]) -> Result<ModelFormat, ModelError> {
    let trimmed = bytes.trim_ascii_start();
    if trimmed.first() == Some(&b'{') {
        let head = &trimmed[..trimmed.len().min(1 << 16)];
        if head.windows(9).any(|w| w == b"\"learner\"") {
            return Ok(ModelFormat::XGBoostJson);
        }
    }
    if lightgbm::looks_like(trimmed) {
        return Ok(ModelFormat::LightGbmText);
    }
    let start: String = String::from_utf8_lossy(&trimmed[..trimmed.len().min(40)])
        .chars()
        .collect();
    Err(ModelError::UnknownFormat { start })
}

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests;
