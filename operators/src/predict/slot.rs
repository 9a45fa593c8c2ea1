//! The model a `predict` node uses, swappable while the pipeline runs.
//!
//! Workers read the slot once per activation and predict a whole batch with that one
//! model, so every prediction names exactly the version that made it, and a swap between
//! two batches drops nothing: the sensors' histories live in the operator, not the model.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use smartgrid_models::{Model, ModelError};

/// A model checked against the node's features, ready to predict.
#[derive(Debug)]
pub struct LoadedModel {
    model: Model,
    version: u32,
    /// For each of the model's inputs, the position in the node's feature vector.
    order: Option<Vec<usize>>,
}

/// The model's feature names do not match the node's.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    /// Names on both sides, as sets.
    #[error(
        "the model's features do not match the node's: model has [{}], node has [{}]",
        model.join(", "),
        node.join(", ")
    )]
    Names {
        /// The model's names.
        model: Vec<String>,
        /// The node's names.
        node: Vec<String>,
    },
    /// The model has no names and a different count.
    #[error("the model takes {model} features, the node builds {node}")]
    Count {
        /// The model's count.
        model: usize,
        /// The node's count.
        node: usize,
    },
}

impl LoadedModel {
    /// Check `model` against the node's feature names. A model that names its features
    /// is matched by name (in any order); one that does not takes them in node order.
    pub fn new(model: Model, names: &[String]) -> Result<LoadedModel, Mismatch> {
        let order = match model.feature_names() {
            Some(wanted) => {
                let positions: Option<Vec<usize>> = wanted
                    .iter()
                    .map(|w| names.iter().position(|n| n == w))
                    .collect();
                match positions {
                    Some(p) if wanted.len() == names.len() => {
                        let identity = p.iter().enumerate().all(|(i, &j)| i == j);
                        (!identity).then_some(p)
                    }
                    _ => {
                        return Err(Mismatch::Names {
                            model: wanted.to_vec(),
                            node: names.to_vec(),
                        });
                    }
                }
            }
            None if model.num_features() == names.len() => None,
            None => {
                return Err(Mismatch::Count {
                    model: model.num_features(),
                    node: names.len(),
                });
            }
        };
        let fp = model.fingerprint();
        Ok(LoadedModel {
            model,
            // Fits a row's f64 exactly; printed in hex in logs.
            version: (fp ^ (fp >> 32)) as u32,
            order,
        })
    }

    /// The version stamped on every prediction: 32 bits of the model's content hash.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Predict from the node's feature vector; `scratch` holds the reordered vector when
    /// the model orders its features differently.
    pub fn predict(&self, features: &[f64], scratch: &mut Vec<f64>) -> f64 {
        match &self.order {
            None => self.model.predict(features),
            Some(order) => {
                scratch.clear();
                scratch.extend(order.iter().map(|&i| features[i]));
                self.model.predict(scratch)
            }
        }
    }
}

/// Why a model could not be swapped in.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The file is not a model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// It is, for other features.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
}

/// The current model of one `predict` node, shared by its workers.
#[derive(Debug)]
pub struct ModelSlot {
    current: RwLock<Arc<LoadedModel>>,
    generation: AtomicU64,
    names: Vec<String>,
    /// Where `smartgrid run --http` sees the active version (see [`ModelSlot::report_to`]).
    gauge: std::sync::OnceLock<smartgrid_runtime::metrics::Gauge>,
}

impl ModelSlot {
    /// A slot holding `model`, for a node building features `names`.
    pub fn new(model: LoadedModel, names: Vec<String>) -> Self {
        ModelSlot {
            current: RwLock::new(Arc::new(model)),
            generation: AtomicU64::new(0),
            names,
            gauge: std::sync::OnceLock::new(),
        }
    }

    /// The model to predict the next batch with.
    pub fn current(&self) -> Arc<LoadedModel> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Show the active model's version in `gauge` from now on (the first gauge stays).
    pub fn report_to(&self, gauge: smartgrid_runtime::metrics::Gauge) {
        gauge.set(i64::from(self.current().version()));
        let _ = self.gauge.set(gauge);
    }

    /// How many swaps happened (cheap to compare before taking the lock).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Swap in `model` if its features match; the old one stays otherwise. Returns the
    /// new version.
    pub fn swap(&self, model: Model) -> Result<u32, SwapError> {
        let loaded = LoadedModel::new(model, &self.names)?;
        let version = loaded.version();
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(gauge) = self.gauge.get() {
            gauge.set(i64::from(version));
        }
        Ok(version)
    }
}

impl ModelSlot {
    /// Put `model` (already checked against this node's features) in place of the
    /// current one; returns the one it replaces, so it can be put back.
    pub fn install(&self, model: Arc<LoadedModel>) -> Arc<LoadedModel> {
        let version = model.version();
        let previous = std::mem::replace(
            &mut *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            model,
        );
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(gauge) = self.gauge.get() {
            gauge.set(i64::from(version));
        }
        previous
    }

    /// The feature names the node builds, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Watch `path` and swap in the model it holds whenever the file changes, until
/// `stop` is raised. A file that fails to load is logged and the running model kept.
pub fn watch(
    slot: Arc<ModelSlot>,
    path: PathBuf,
    every: Duration,
    node: String,
    stop: smartgrid_runtime::shutdown::Shutdown,
) -> std::io::Result<()> {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .ok()
    };
    let mut last: Option<(SystemTime, u64)> = stamp(&path);
    std::thread::Builder::new()
        .name(format!("{node}-model-watch"))
        .spawn(move || {
            let mut waited = Duration::ZERO;
            while !stop.is_triggered() {
                // Short naps so a shutdown is not kept waiting for a long period.
                let nap = every.min(Duration::from_millis(250));
                std::thread::sleep(nap);
                waited += nap;
                if waited < every {
                    continue;
                }
                waited = Duration::ZERO;
                let now = stamp(&path);
                if now.is_none() || now == last {
                    continue;
                }
                // Give a writer that is still copying the file a moment to finish;
                // a half-written model fails to parse and is retried on the next change.
                std::thread::sleep(Duration::from_millis(100));
                let now = stamp(&path);
                last = now;
                match Model::from_file(&path)
                    .map_err(SwapError::from)
                    .and_then(|m| slot.swap(m))
                {
                    Ok(version) => {
                        tracing::info!(
                            "{node}: model {} swapped in (version {version:08x})",
                            path.display()
                        )
                    }
                    Err(e) => tracing::error!(
                        "{node}: keeping the running model; {} cannot be used: {e}",
                        path.display()
                    ),
                }
            }
        })
        .map(drop)
}
