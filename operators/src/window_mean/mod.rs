//! `window_mean`: tumbling, epoch-aligned event-time windows per sensor; emits the mean
//! of every selected field plus the reading count, once, when the input frontier passes
//! the window's end (plus its allowed lateness).
//!
//! ```yaml
//! means_10s:
//!   type: window_mean
//!   input: readings
//!   size: 10s          # window length; windows start at multiples of it since the epoch
//!   lateness: 0s       # how long past its end a window waits for stragglers
//!   fields: [p_l1, p_l2, p_l3]   # optional; default: every field of the input
//! ```
//! Output: the selected fields (means) and `count`, timestamped at the window's start.

mod operator;

pub use operator::{WindowMean, WindowMeanExt};

use std::sync::Arc;

use serde::Deserialize;
use smartgrid_runtime::spec::{Duration, Spanned};
use smartgrid_runtime::{
    AnyStream, Arity, Diagnostic, NodeOperator, OperatorFactory, PlanContext, PortType,
    RenderContext, RenderError, Schema,
};

/// Settings of a `window_mean` node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowMeanConfig {
    /// Window length (`10s`, `1m`, …). Windows are aligned to the Unix epoch.
    pub size: Spanned<Duration>,
    /// How long after its end a window still accepts late readings. Default `0s`.
    #[serde(default)]
    pub lateness: Option<Duration>,
    /// Which input fields to average; default: all of them.
    #[serde(default)]
    pub fields: Option<Vec<Spanned<String>>>,
}

/// The `window_mean` factory.
pub struct WindowMeanFactory;

impl OperatorFactory for WindowMeanFactory {
    fn kind(&self) -> &'static str {
        "window_mean"
    }

    fn summary(&self) -> &'static str {
        "tumbling event-time window per sensor: mean of each field and the reading count"
    }

    fn arity(&self) -> Arity {
        Arity::One
    }

    fn plan(&self, ctx: &PlanContext<'_>) -> Result<Arc<dyn NodeOperator>, Vec<Diagnostic>> {
        let input = ctx.readings_input();
        let config: WindowMeanConfig = ctx.node.settings()?;
        let input = input?;
        let mut errors = Vec::new();
        let size_ms = config.size.value.as_millis_u64();
        if size_ms == 0 {
            errors.push(
                ctx.node
                    .error(config.size.at, "a window cannot be empty")
                    .hint("use a size such as 10s or 1m"),
            );
        }
        let fields: Vec<usize> = match &config.fields {
            None => (0..input.len()).collect(),
            Some(names) => names
                .iter()
                .filter_map(|name| match input.index_of(&name.value) {
                    Some(i) => Some(i),
                    None => {
                        errors.push(
                            ctx.node
                                .error(
                                    name.at,
                                    format!("no upstream node produces a field `{}`", name.value),
                                )
                                .hint(format!("the input has: {input}")),
                        );
                        None
                    }
                })
                .collect(),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let names: Vec<&str> = fields
            .iter()
            .map(|&i| input.name(i))
            .chain(["count"])
            .collect();
        Ok(Arc::new(WindowMeanNode {
            output: Schema::new(names),
            window: WindowMean {
                size_ms,
                lateness_ms: config.lateness.map_or(0, |l| l.as_millis_u64()),
                fields: fields.into(),
                input_partitioned: ctx.partitioned.first().copied().unwrap_or(false),
            },
        }))
    }
}

struct WindowMeanNode {
    output: Schema,
    window: WindowMean,
}

impl NodeOperator for WindowMeanNode {
    fn output(&self) -> Option<PortType> {
        Some(PortType::Readings(self.output.clone()))
    }

    fn partitioned(&self) -> bool {
        true
    }

    fn render<'s>(
        &self,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Result<Option<AnyStream<'s>>, RenderError> {
        let input = AnyStream::single_readings(inputs)?;
        let late = ctx.process.metrics.counter(format!("{}.late", ctx.node));
        let windows = ctx.process.metrics.counter(format!("{}.windows", ctx.node));
        use operator::WindowMeanExt;
        Ok(Some(AnyStream::Readings(input.window_mean(
            self.window.clone(),
            late,
            windows,
            ctx.node,
        ))))
    }
}
