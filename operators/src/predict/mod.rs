//! `predict`: a gradient-boosted-tree model's forecast for each sensor's next window.
//!
//! ```yaml
//! predictions:
//!   type: predict
//!   input: means_10s
//!   model: models/default.txt   # LightGBM text or XGBoost JSON, detected by content
//!   horizon: 10s                # the predicted window starts this long after the input's
//!   step: 10s                   # spacing of the input windows (default: horizon)
//!   features:
//!     fields: [p_l1, p_l2, p_l3]
//!     sums: [{name: p_total, of: [p_l1, p_l2, p_l3]}]
//!     lags: {fields: [p_l1, p_l2, p_l3], count: 5}   # p_l1-1 … p_l3-5
//!     time: [hour_of_day]
//!   relative_to: [p_l1, p_l2, p_l3]  # the model predicts the change from this window's
//!                               # total; the output adds it back (optional)
//!   missing_lags: skip          # skip (default): no prediction until the history is full;
//!                               # nan: predict with missing values
//!   reload: 5s                  # watch the model file and swap a new one in (default: off)
//!   updates: {…}                # receive, check, shadow, promote and roll back signed
//!                               # models (see `rollout` and docs/model-rollout.md)
//! ```
//! Output: `predicted`, `target_time` (ms since the epoch), `model_version` (32 bits of the
//! model's content hash) and every feature, at the input window's start time.

mod features;
mod operator;
pub mod rollout;
mod slot;

pub use features::{FeaturePlan, FeaturesConfig, History, LagsConfig, SumConfig, TimeFeature};
pub use operator::{LiveErrors, PredictCounters, PredictExt, Predictor};
pub use slot::{LoadedModel, Mismatch, ModelSlot, SwapError, watch as watch_model_file};

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use smartgrid_models::Model;
use smartgrid_runtime::record::MAX_FIELDS;
use smartgrid_runtime::spec::{Duration, OneOrMany, Spanned};
use smartgrid_runtime::{
    AnyStream, Inputs, Limit, Node, PlanContext, PortType, RenderContext, Routing, Schema,
    StartContext, StartError,
};

/// The fields every prediction starts with, before its features.
pub const PREDICTION_FIELDS: [&str; 3] = ["predicted", "target_time", "model_version"];

/// Settings of a `predict` node.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictConfig {
    /// The model file (LightGBM text or XGBoost JSON), relative to the pipeline file.
    pub model: Spanned<PathBuf>,
    /// How far ahead of the input window the predicted window starts.
    pub horizon: Spanned<Duration>,
    /// Spacing of the input windows (their size); lags step back by it. Default: `horizon`.
    #[serde(default)]
    pub step: Option<Spanned<Duration>>,
    /// The feature vector.
    pub features: FeaturesConfig,
    /// The model predicts the change from these input fields of the current window
    /// (added up); the prediction is that sum plus the model's output. Trees
    /// approximate the identity only in steps, so a model of the next 10-second window's
    /// power learns the change far better than the level (train it with
    /// `smartgrid model train --relative-to p_l1,p_l2,p_l3`).
    #[serde(default)]
    pub relative_to: Option<OneOrMany>,
    /// `skip` (default): no prediction until a sensor has all its lags (counted as
    /// `<node>.short_history`); `nan`: predict with the missing lags as missing values.
    #[serde(default)]
    pub missing_lags: MissingLags,
    /// Check the model file this often and swap a changed model in without stopping.
    #[serde(default)]
    pub reload: Option<Duration>,
    /// Receive new signed models announced over MQTT, run each in shadow beside the
    /// active model, promote it if its live error is lower, roll it back if it gets
    /// worse (see docs/model-rollout.md).
    #[serde(default)]
    pub updates: Option<rollout::UpdatesConfig>,
}

/// What to do while a sensor's history is shorter than its lags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissingLags {
    /// Wait: no prediction.
    #[default]
    Skip,
    /// Predict with NaN for each missing lag.
    Nan,
}

fn plan_predict(
    config: PredictConfig,
    input: &Schema,
    ctx: &mut PlanContext<'_>,
) -> Option<PredictNode> {
    let horizon_ms = config.horizon.value.as_millis_u64();
    let step = config.step.as_ref().unwrap_or(&config.horizon);
    let step_ms = step.value.as_millis_u64();
    let mut relative_to = Vec::new();
    for name in config.relative_to.iter().flat_map(|r| &r.0) {
        match input.index_of(&name.value) {
            Some(i) => relative_to.push(i),
            None => ctx
                .error(
                    name.at,
                    format!("no upstream node produces a field `{}`", name.value),
                )
                .with_hint(format!("the input has: {input}")),
        }
    }
    let features = FeaturePlan::new(&config.features, input)
        .map_err(|problems| {
            for p in problems {
                let at = p.at.unwrap_or_else(|| ctx.node.key_at("features"));
                ctx.error(at, p.message).with_hint(p.hint);
            }
        })
        .ok();
    let path = ctx.resolve(&config.model.value);
    let model = Model::from_file(&path)
        .map_err(|e| {
            ctx.error(config.model.at, format!("cannot load the model: {e}")).with_hint(
                "give a LightGBM text model or an XGBoost JSON model (see `smartgrid model inspect`)",
            );
        })
        .ok();
    let updates = match config.updates {
        Some(updates) => Some(rollout::plan(updates, input, &relative_to, ctx)?),
        None => None,
    };
    let (features, model) = (features?, model?);
    let output: Vec<&str> = PREDICTION_FIELDS
        .iter()
        .copied()
        .chain(features.names().iter().map(String::as_str))
        .collect();
    if output.len() > MAX_FIELDS {
        let message = format!(
            "{} features make a row wider than {MAX_FIELDS} values",
            features.names().len()
        );
        ctx.error_at_key("features", message).with_hint(format!(
            "use at most {} features",
            MAX_FIELDS - PREDICTION_FIELDS.len()
        ));
    }
    let loaded = LoadedModel::new(model, features.names())
        .map_err(|e| {
            ctx.error(config.model.at, e.to_string()).with_hint(
                "make `features:` build the names the model was trained with, or retrain it",
            );
        })
        .ok()?;
    let names = features.names().to_vec();
    Some(PredictNode {
        output: Schema::new(output),
        predictor: Predictor {
            features: Arc::new(features),
            horizon_ms: i64::try_from(horizon_ms).unwrap_or(i64::MAX),
            step_ms: i64::try_from(step_ms).unwrap_or(i64::MAX),
            predict_with_missing_lags: config.missing_lags == MissingLags::Nan,
            relative_to,
        },
        slot: Arc::new(ModelSlot::new(loaded, names)),
        model_path: path,
        reload: config.reload.map(|d| d.0),
        updates,
    })
}

/// A planned `predict` node.
pub struct PredictNode {
    output: Schema,
    predictor: Predictor,
    slot: Arc<ModelSlot>,
    model_path: PathBuf,
    reload: Option<std::time::Duration>,
    updates: Option<rollout::Updates>,
}

impl PredictNode {
    /// The node's model slot: swap a model in while the pipeline runs.
    pub fn slot(&self) -> Arc<ModelSlot> {
        Arc::clone(&self.slot)
    }
}

impl Node for PredictNode {
    const KIND: &'static str = "predict";
    const SUMMARY: &'static str =
        "tree-model forecast of the next window per sensor, from fields, sums, lags and time";
    const INPUTS: Inputs = Inputs::One(Routing::BySensor);
    const LIMITS: &'static [(&'static str, Limit)] = &[
        ("horizon", Limit::millis_to_seconds(1, 31622400)),
        ("step", Limit::millis_to_seconds(1, 31622400)),
        ("reload", Limit::millis_to_seconds(100, 86400)),
        ("updates.shadow", Limit::millis_to_seconds(1, 31622400)),
        ("updates.watch", Limit::millis_to_seconds(0, 31622400)),
        ("updates.min_comparisons", Limit::count(1, 1_000_000_000)),
        ("updates.keep", Limit::count(1, 1000)),
    ];

    type Config = PredictConfig;

    /// The rollout controller's thread, with `updates:`.
    type State = Option<rollout::Running>;

    fn plan(config: PredictConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let input = ctx.readings_input()?;
        plan_predict(config, &input, ctx)
    }

    fn output(&self) -> Option<PortType> {
        Some(PortType::Readings(self.output.clone()))
    }

    fn resources(&self) -> Vec<smartgrid_runtime::Claim> {
        self.updates
            .as_ref()
            .map(rollout::Updates::resources)
            .unwrap_or_default()
    }

    fn broker_links(&self) -> Vec<smartgrid_runtime::BrokerLink> {
        self.updates
            .as_ref()
            .map(rollout::Updates::broker_links)
            .unwrap_or_default()
    }

    fn start(&self, ctx: &StartContext<'_>) -> Result<Self::State, StartError> {
        tracing::info!(
            "predicting with {} (version {:08x})",
            self.model_path.display(),
            self.slot.current().version()
        );
        self.slot.report_to(ctx.gauge("model_version"));
        if let Some(every) = self.reload {
            slot::watch(
                Arc::clone(&self.slot),
                self.model_path.clone(),
                every,
                self.model_path.display().to_string(),
                ctx.shutdown.clone(),
            )
            .map_err(|source| StartError::Io {
                context: "cannot start the model watcher".into(),
                source,
            })?;
        }
        match &self.updates {
            Some(updates) => {
                let version = smartgrid_models::signing::manifest::Manifest::read(
                    &smartgrid_models::signing::manifest::manifest_path(&self.model_path),
                )
                .map(|m| m.version)
                .unwrap_or_else(|_| format!("{:08x}", self.slot.current().version()));
                updates.start(&self.slot, version, ctx)
            }
            None => Ok(None),
        }
    }

    fn finish(&self, state: Self::State, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        if let Some(running) = state
            && !running.stop()
        {
            return Err(StartError::other("the model rollout thread panicked"));
        }
        Ok(())
    }

    fn render<'s>(
        &self,
        _state: &Self::State,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        let input = ctx.single_readings(inputs);
        let counters = PredictCounters {
            predictions: ctx.counter("predictions"),
            short_history: ctx.counter("short_history"),
            corrections: ctx.counter("corrections"),
        };
        let live = self.updates.as_ref().map(|u| LiveErrors {
            evaluation: Arc::clone(&u.evaluation),
            actual: u.actual.clone(),
        });
        Some(AnyStream::Readings(input.predict_evaluated(
            self.predictor.clone(),
            Arc::clone(&self.slot),
            counters,
            ctx.node,
            Some(ctx.state()),
            live,
        )))
    }
}
