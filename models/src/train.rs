//! Training regression models with LightGBM (feature `train`), one boosting round at a
//! time so that callers can show progress. The result is LightGBM's text model, which
//! this crate's evaluator loads.
//!
//! The `lightgbm3` crate trains only in one call, so the rounds go through LightGBM's C
//! API (`lightgbm3-sys`) directly: this is the crate's only unsafe code.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr;

use lightgbm3_sys as sys;

use crate::ModelError;

/// Training parameters (LightGBM's names in the doc comments).
#[derive(Debug, Clone)]
pub struct TrainParams {
    /// Boosting rounds, one tree each (`num_iterations`).
    pub trees: usize,
    /// `learning_rate`.
    pub learning_rate: f64,
    /// Maximum leaves per tree (`num_leaves`).
    pub num_leaves: usize,
    /// `seed` (training is deterministic for a given seed).
    pub seed: u64,
    /// More LightGBM parameters as `key=value`, e.g. `zero_as_missing=true`,
    /// `use_missing=false`, `min_data_in_leaf=5`.
    pub extra: Vec<String>,
}

impl Default for TrainParams {
    fn default() -> TrainParams {
        TrainParams {
            trees: 200,
            learning_rate: 0.05,
            num_leaves: 31,
            seed: 42,
            extra: Vec::new(),
        }
    }
}

impl TrainParams {
    /// LightGBM's parameter string.
    fn to_lightgbm(&self) -> Result<String, ModelError> {
        if self.trees == 0 || self.num_leaves < 2 {
            return Err(ModelError::Train(
                "trees must be at least 1 and num_leaves at least 2".into(),
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(ModelError::Train(format!(
                "learning rate {} is not a positive number",
                self.learning_rate
            )));
        }
        let mut params = vec![
            "objective=regression".to_owned(),
            format!("learning_rate={}", self.learning_rate),
            format!("num_leaves={}", self.num_leaves),
            format!("seed={}", self.seed),
            "deterministic=true".to_owned(),
            "force_row_wise=true".to_owned(),
            "num_threads=1".to_owned(),
            "verbosity=-1".to_owned(),
        ];
        for extra in &self.extra {
            let Some((key, _)) = extra
                .split_once('=')
                .filter(|_| !extra.contains(char::is_whitespace))
            else {
                return Err(ModelError::Train(format!(
                    "parameter {extra:?} is not of the form key=value"
                )));
            };
            // LightGBM keeps the first value of a repeated key: a parameter given here
            // replaces the default instead of following it (and being ignored).
            params.retain(|p| p.split_once('=').is_none_or(|(k, _)| k != key));
            params.push(extra.clone());
        }
        Ok(params.join(" "))
    }
}

/// Train a regression model on `rows` (one feature vector each, NaN = missing) and
/// `labels`, calling `progress(done)` after each boosting round. Returns the LightGBM
/// text model.
pub fn train_lightgbm(
    rows: &[Vec<f64>],
    labels: &[f64],
    feature_names: &[String],
    params: &TrainParams,
    progress: impl FnMut(usize),
) -> Result<String, ModelError> {
    train_lightgbm_weighted(rows, labels, None, feature_names, params, progress)
}

/// [`train_lightgbm`] with a weight per row (LightGBM's `weight` field): a row of
/// weight 5 counts as five identical rows in the loss. `smartgrid retrain` uses it to
/// undo the sampling of good predictions. Weights must be finite and positive.
pub fn train_lightgbm_weighted(
    rows: &[Vec<f64>],
    labels: &[f64],
    weights: Option<&[f64]>,
    feature_names: &[String],
    params: &TrainParams,
    mut progress: impl FnMut(usize),
) -> Result<String, ModelError> {
    let parameters = params.to_lightgbm()?;
    let num_features = feature_names.len();
    if rows.is_empty() || num_features == 0 {
        return Err(ModelError::Train("no training rows or no features".into()));
    }
    if rows.len() != labels.len() {
        return Err(ModelError::Train(format!(
            "{} rows but {} labels",
            rows.len(),
            labels.len()
        )));
    }
    if let Some(name) = feature_names.iter().find(|n| {
        n.is_empty() || n.contains(|c: char| c.is_whitespace() || "\"',:[]{}".contains(c))
    }) {
        return Err(ModelError::Train(format!(
            "feature name {name:?}: LightGBM needs names without spaces or JSON punctuation"
        )));
    }
    if let Some(i) = labels.iter().position(|l| !l.is_finite()) {
        return Err(ModelError::Train(format!(
            "row {}: the target is missing or not finite",
            i + 1
        )));
    }
    let mut flat = Vec::with_capacity(rows.len() * num_features);
    for (i, row) in rows.iter().enumerate() {
        if row.len() != num_features {
            return Err(ModelError::Train(format!(
                "row {} has {} features, expected {num_features}",
                i + 1,
                row.len()
            )));
        }
        flat.extend_from_slice(row);
    }
    let weights: Option<Vec<f32>> = match weights {
        None => None,
        Some(w) if w.len() != rows.len() => {
            return Err(ModelError::Train(format!(
                "{} rows but {} weights",
                rows.len(),
                w.len()
            )));
        }
        Some(w) => {
            if let Some(i) = w.iter().position(|w| !(w.is_finite() && *w > 0.0)) {
                return Err(ModelError::Train(format!(
                    "row {}: the weight is not a finite positive number",
                    i + 1
                )));
            }
            Some(w.iter().map(|&w| w as f32).collect())
        }
    };
    let labels: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    let nrow = i32::try_from(rows.len()).map_err(|_| ModelError::Train("too many rows".into()))?;
    let ncol =
        i32::try_from(num_features).map_err(|_| ModelError::Train("too many features".into()))?;
    let parameters = c_string(&parameters)?;
    let names = feature_names
        .iter()
        .map(|n| c_string(n))
        .collect::<Result<Vec<_>, _>>()?;
    let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let label_field = c_string("label")?;

    let dataset = Dataset::from_mat(&flat, nrow, ncol, &parameters)?;
    // SAFETY: the handle is live; the label buffer holds `nrow` f32 values and
    // LightGBM copies it; the name pointers point into `names`, alive for the call.
    check(unsafe {
        sys::LGBM_DatasetSetField(
            dataset.0,
            label_field.as_ptr(),
            labels.as_ptr().cast::<c_void>(),
            nrow,
            sys::C_API_DTYPE_FLOAT32 as c_int,
        )
    })?;
    if let Some(weights) = &weights {
        let weight_field = c_string("weight")?;
        // SAFETY: as for the labels: `nrow` f32 values, copied by LightGBM.
        check(unsafe {
            sys::LGBM_DatasetSetField(
                dataset.0,
                weight_field.as_ptr(),
                weights.as_ptr().cast::<c_void>(),
                nrow,
                sys::C_API_DTYPE_FLOAT32 as c_int,
            )
        })?;
    }
    check(unsafe {
        sys::LGBM_DatasetSetFeatureNames(dataset.0, name_ptrs.as_ptr().cast_mut(), ncol)
    })?;
    let booster = Booster::new(&dataset, &parameters)?;
    for round in 0..params.trees {
        let mut finished: c_int = 0;
        // SAFETY: the booster handle is live and `finished` is a valid out-pointer.
        check(unsafe { sys::LGBM_BoosterUpdateOneIter(booster.0, &mut finished) })?;
        progress(round + 1);
        if finished != 0 {
            // no split improves the fit any more
            break;
        }
    }
    booster.save_to_string()
}

/// LightGBM's own predictions for `rows` with a text model (through `lightgbm3`), to
/// check the evaluator against.
pub fn lightgbm_predict(model_text: &str, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
    let booster = lightgbm3::Booster::from_string(model_text)
        .map_err(|e| ModelError::Train(format!("LightGBM cannot load the model: {e}")))?;
    let num_features = booster.num_features();
    let width = usize::try_from(num_features).unwrap_or(0);
    let mut flat = Vec::with_capacity(rows.len() * width);
    for row in rows {
        flat.extend((0..width).map(|i| row.get(i).copied().unwrap_or(f64::NAN)));
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    booster
        .predict_with_params(&flat, num_features, true, "num_threads=1")
        .map_err(|e| ModelError::Train(format!("LightGBM prediction failed: {e}")))
}

fn c_string(s: &str) -> Result<CString, ModelError> {
    CString::new(s).map_err(|_| ModelError::Train(format!("{s:?} contains a NUL byte")))
}

fn check(code: c_int) -> Result<(), ModelError> {
    if code == 0 {
        return Ok(());
    }
    // SAFETY: LightGBM returns a pointer to a NUL-terminated, thread-local message.
    let message = unsafe {
        let p = sys::LGBM_GetLastError();
        if p.is_null() {
            "unknown error".to_owned()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(ModelError::Train(format!("LightGBM: {message}")))
}

/// An owned LightGBM dataset handle.
struct Dataset(sys::DatasetHandle);

impl Dataset {
    fn from_mat(
        flat: &[f64],
        nrow: i32,
        ncol: i32,
        parameters: &CStr,
    ) -> Result<Dataset, ModelError> {
        let mut handle: sys::DatasetHandle = ptr::null_mut();
        // SAFETY: `flat` holds nrow*ncol f64 values in row-major order (checked by the
        // caller); LightGBM bins them during the call and keeps no pointer to them.
        check(unsafe {
            sys::LGBM_DatasetCreateFromMat(
                flat.as_ptr().cast::<c_void>(),
                sys::C_API_DTYPE_FLOAT64 as c_int,
                nrow,
                ncol,
                1,
                parameters.as_ptr(),
                ptr::null_mut(),
                &mut handle,
            )
        })?;
        Ok(Dataset(handle))
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_DatasetCreateFromMat and is freed once.
        unsafe {
            sys::LGBM_DatasetFree(self.0);
        }
    }
}

/// An owned LightGBM booster handle (dropped before its dataset).
struct Booster<'a>(sys::BoosterHandle, std::marker::PhantomData<&'a Dataset>);

impl<'a> Booster<'a> {
    fn new(dataset: &'a Dataset, parameters: &CStr) -> Result<Booster<'a>, ModelError> {
        let mut handle: sys::BoosterHandle = ptr::null_mut();
        // SAFETY: the dataset handle is live for the booster's lifetime ('a).
        check(unsafe { sys::LGBM_BoosterCreate(dataset.0, parameters.as_ptr(), &mut handle) })?;
        Ok(Booster(handle, std::marker::PhantomData))
    }

    fn save_to_string(&self) -> Result<String, ModelError> {
        let mut len: i64 = 0;
        let mut buffer: Vec<u8> = vec![0; 1 << 20];
        for _ in 0..2 {
            // SAFETY: `buffer` has `buffer.len()` writable bytes; LightGBM writes at most
            // that many and reports the full length (with the NUL) in `len`.
            check(unsafe {
                sys::LGBM_BoosterSaveModelToString(
                    self.0,
                    0,
                    -1,
                    0,
                    buffer.len() as i64,
                    &mut len,
                    buffer.as_mut_ptr().cast::<c_char>(),
                )
            })?;
            let needed = usize::try_from(len).unwrap_or(0);
            if needed <= buffer.len() {
                buffer.truncate(needed.saturating_sub(1));
                return String::from_utf8(buffer).map_err(|_| {
                    ModelError::Train("LightGBM wrote a model that is not UTF-8".into())
                });
            }
            buffer = vec![0; needed];
        }
        Err(ModelError::Train(
            "LightGBM's model text kept growing".into(),
        ))
    }
}

impl Drop for Booster<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_BoosterCreate and is freed once.
        unsafe {
            sys::LGBM_BoosterFree(self.0);
        }
    }
}
