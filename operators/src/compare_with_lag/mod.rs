//! `compare_with_lag`: joins each prediction with the actual window at its target time
//! and sends the ones that missed on as triplets (inputs, predicted, actual).
//!
//! ```yaml
//! drift:
//!   type: compare_with_lag
//!   inputs: [predictions, means_10s]   # a predict node first, the actual windows second
//!   actual: [p_l1, p_l2, p_l3]         # a field of the second input, or fields to add up
//!   threshold:
//!     absolute: 300                    # |actual − predicted| over 300 W …
//!     relative: 0.2                    # … and over 20 % of |actual|
//!     when: all                        # all (default): over every threshold given; any
//!   sample_good: 0.01                  # also send 1 % of the good predictions (flagged = 0)
//!   timeout: 1m                        # drop a prediction whose actual has not come by then
//!   emit: triplets                     # triplets (default) | residuals
//! ```
//! Triplets: `predicted, actual, error, target_time, model_version, flagged` and the
//! prediction's features, at the prediction's event time. Residuals (every compared
//! prediction, for dashboards): `predicted, actual, error, relative_error, target_time,
//! model_version`, at the target time. `error` is `actual − predicted`.

mod operator;

pub use operator::{CompareCounters, CompareWithLagExt, Comparison, Emit, Threshold};

use serde::Deserialize;
use smartgrid_runtime::spec::{Duration, OneOrMany, Spanned};
use smartgrid_runtime::{
    AnyStream, Inputs, Limit, Node, PlanContext, PortType, RenderContext, Routing, Schema,
    StartContext, StartError,
};

use crate::predict::PREDICTION_FIELDS;

/// Settings of a `compare_with_lag` node.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompareConfig {
    /// The actual value: one field of the second input, or a list of fields added up.
    pub actual: OneOrMany,
    /// When a prediction is wrong. Without any threshold every prediction is a triplet.
    #[serde(default)]
    pub threshold: ThresholdConfig,
    /// Share (0 to 1) of good predictions sent as triplets too, so the cloud does not
    /// learn only from failures. Chosen by a hash of sensor and time: deterministic.
    #[serde(default)]
    pub sample_good: Spanned<f64>,
    /// How long past its target time (event time) a prediction waits for its actual;
    /// at least the window's size plus its lateness. Default `1m`.
    #[serde(default)]
    pub timeout: Option<Spanned<Duration>>,
    /// `triplets` (default) or `residuals`.
    #[serde(default)]
    pub emit: EmitConfig,
}

/// Thresholds of a `compare_with_lag` node.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Absolute error, in the actual's unit (W).
    #[serde(default)]
    pub absolute: Option<Spanned<f64>>,
    /// Error relative to `|actual|` (0.2 = 20 %).
    #[serde(default)]
    pub relative: Option<Spanned<f64>>,
    /// `all` (default): over when every threshold given is exceeded; `any`: when one is.
    #[serde(default)]
    pub when: When,
}

/// How two thresholds combine.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Every threshold exceeded.
    #[default]
    All,
    /// At least one.
    Any,
}

/// What the node emits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmitConfig {
    /// Triplets over the threshold (and the sampled good ones).
    #[default]
    Triplets,
    /// Every compared prediction's residual.
    Residuals,
}

fn plan_compare(config: CompareConfig, ctx: &mut PlanContext<'_>) -> Option<CompareNode> {
    let inputs_at = ctx.node.inputs.first().map_or(ctx.node.at, |i| i.at);
    let (predictions, actuals) = match ctx.inputs {
        [PortType::Readings(p), PortType::Readings(a)] => (Some(p), Some(a)),
        [_, _] => {
            ctx.error(inputs_at, "both inputs must carry readings")
                .with_hint("put a `decode` and a `window_mean` node before this one");
            (None, None)
        }
        _ => {
            let message = format!(
                "a `compare_with_lag` node takes two inputs, found {}",
                ctx.inputs.len()
            );
            ctx.error(inputs_at, message)
                .with_hint("write `inputs: [<predict node>, <window node>]`");
            (None, None)
        }
    };
    let mut prediction = [0; 3];
    let mut features = Vec::new();
    if let Some(schema) = predictions {
        for (slot, field) in prediction.iter_mut().zip(PREDICTION_FIELDS) {
            let Some(i) = schema.index_of(field) else {
                let message = format!(
                    "the first input has no `{field}` field: it is not a prediction stream"
                );
                ctx.error(inputs_at, message).with_hint(format!(
                    "the first input must be a `predict` node; it has: {schema}"
                ));
                break;
            };
            *slot = i;
        }
        features = (0..schema.len())
            .filter(|i| !prediction.contains(i))
            .collect();
    }
    let mut actual = Vec::new();
    if let Some(schema) = actuals {
        for name in &config.actual.0 {
            match schema.index_of(&name.value) {
                Some(i) => actual.push(i),
                None => ctx
                    .error(
                        name.at,
                        format!("no upstream node produces a field `{}`", name.value),
                    )
                    .with_hint(format!("the second input has: {schema}")),
            }
        }
    }
    if config.actual.0.is_empty() {
        ctx.error_at_key("actual", "no actual field").with_hint(
            "name the field (or fields to add up) the model predicts, such as [p_l1, p_l2, p_l3]",
        );
    }
    for (threshold, what) in [
        (&config.threshold.absolute, "absolute"),
        (&config.threshold.relative, "relative"),
    ] {
        if let Some(v) = threshold
            && !(v.value >= 0.0 && v.value.is_finite())
        {
            ctx.error(v.at, format!("the {what} threshold must be a number ≥ 0"))
                .with_hint("absolute: 300 (W), relative: 0.2 (20 %)");
        }
    }
    if !(0.0..=1.0).contains(&config.sample_good.value) {
        ctx.error(
            config.sample_good.at,
            "`sample_good` is a share between 0 and 1",
        )
        .with_hint("0.01 sends 1 % of the good predictions");
    }
    let timeout_ms = config
        .timeout
        .as_ref()
        .map_or(60_000, |t| t.value.as_millis_u64());
    let (Some(predictions), Some(_)) = (predictions, actuals) else {
        return None;
    };
    let emit = match config.emit {
        EmitConfig::Triplets => Emit::Triplets,
        EmitConfig::Residuals => Emit::Residuals,
    };
    let output = match emit {
        Emit::Triplets => Schema::new(
            TRIPLET_FIELDS
                .into_iter()
                .chain(features.iter().map(|&i| predictions.name(i))),
        ),
        Emit::Residuals => Schema::new(RESIDUAL_FIELDS),
    };
    Some(CompareNode {
        output,
        comparison: Comparison {
            prediction,
            features,
            actual,
            threshold: Threshold {
                absolute: config.threshold.absolute.map(|a| a.value),
                relative: config.threshold.relative.map(|r| r.value),
                all: config.threshold.when == When::All,
            },
            sample_good: config.sample_good.value,
            timeout_ms: i64::try_from(timeout_ms).unwrap_or(i64::MAX),
            emit,
        },
    })
}

/// A triplet's fields, before the prediction's features.
const TRIPLET_FIELDS: [&str; 6] = [
    "predicted",
    "actual",
    "error",
    "target_time",
    "model_version",
    "flagged",
];

/// A residual's fields.
const RESIDUAL_FIELDS: [&str; 6] = [
    "predicted",
    "actual",
    "error",
    "relative_error",
    "target_time",
    "model_version",
];

/// A planned `compare_with_lag` node.
pub struct CompareNode {
    output: Schema,
    comparison: Comparison,
}

impl Node for CompareNode {
    const KIND: &'static str = "compare_with_lag";
    const SUMMARY: &'static str =
        "joins predictions with the actual window at their target time; triplets when off";
    const INPUTS: Inputs = Inputs::Many(Routing::BySensor);
    const LIMITS: &'static [(&'static str, Limit)] = &[("timeout", Limit::seconds(0, 31622400))];

    type Config = CompareConfig;

    type State = ();

    fn plan(config: CompareConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        plan_compare(config, ctx)
    }

    fn output(&self) -> Option<PortType> {
        Some(PortType::Readings(self.output.clone()))
    }

    fn start(&self, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        Ok(())
    }

    fn render<'s>(
        &self,
        _state: &(),
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        let [
            AnyStream::Readings(predictions),
            AnyStream::Readings(actuals),
        ] = <[AnyStream<'s>; 2]>::try_from(inputs).unwrap_or_else(|_| {
            unreachable!("the plan checked that `{}` reads two streams", ctx.node)
        })
        else {
            unreachable!("the plan checked that `{}` reads readings", ctx.node)
        };
        let counters = CompareCounters {
            compared: ctx.counter("compared"),
            over: ctx.counter("over_threshold"),
            expired: ctx.counter("expired"),
        };
        Some(AnyStream::Readings(
            predictions.compare_with_lag_checkpointed(
                actuals,
                self.comparison.clone(),
                counters,
                ctx.node,
                Some(ctx.state()),
            ),
        ))
    }
}
