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
mod sums;

pub use operator::{CountedWindow, WindowMean, WindowMeanExt};

use std::any::Any;
use std::sync::Arc;

use serde::Deserialize;
use smartgrid_runtime::spec::{Duration, Spanned};
use smartgrid_runtime::{
    AnyStream, Arity, Diagnostic, Fused, NodeOperator, OperatorFactory, PlanContext, PortType,
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

impl WindowMeanNode {
    /// The window with the counters of node `name`.
    fn counted(&self, ctx: &RenderContext<'_>, name: &str) -> CountedWindow {
        let metrics = &ctx.process.metrics;
        CountedWindow {
            window: self.window.clone(),
            late: metrics.counter(format!("{name}.late")),
            emitted: metrics.counter(format!("{name}.windows")),
        }
    }
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
        let window = self.counted(ctx, ctx.node);
        let means = input.window_mean(window.window, window.late, window.emitted, ctx.node);
        Ok(Some(AnyStream::Readings(means)))
    }

    /// Window sizes over one input share an operator: one sensor lookup per reading
    /// for all of them, and no copy of the stream per window.
    fn fusable(&self) -> Option<&dyn Any> {
        Some(self)
    }

    fn render_fused<'s>(
        &self,
        ctx: &RenderContext<'s>,
        others: &[Fused<'_>],
        inputs: Vec<AnyStream<'s>>,
    ) -> Result<Vec<Option<AnyStream<'s>>>, RenderError> {
        let input = AnyStream::single_readings(inputs)?;
        let mut windows = vec![self.counted(ctx, ctx.node)];
        for other in others {
            let node = other.node.downcast_ref::<WindowMeanNode>().ok_or_else(|| {
                RenderError::Other(format!("`{}` is not a window_mean", other.name))
            })?;
            windows.push(node.counted(ctx, other.name));
        }
        let names: Vec<&str> = std::iter::once(ctx.node)
            .chain(others.iter().map(|o| o.name))
            .collect();
        Ok(input
            .window_means(windows, &names.join("+"))
            .into_iter()
            .map(|means| Some(AnyStream::Readings(means)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use smartgrid_runtime::spec::{Env, parse_str};

    #[test]
    fn windows_over_one_input_are_rendered_together() {
        let text = r"
pipeline: fusion
nodes:
  meters: { type: simulate, sensors: 2, realtime: false, duration: 1m }
  readings: { type: decode, input: meters, format: clemap }
  other: { type: decode, input: meters, format: clemap }
  means_10s: { type: window_mean, input: readings, size: 10s }
  means_1m: { type: window_mean, input: readings, size: 1m, fields: [p_l1] }
  means_other: { type: window_mean, input: other, size: 10s }
  again: { type: window_mean, input: means_10s, size: 1m }
";
        let spec = parse_str(
            text,
            "p.yaml",
            std::path::PathBuf::new(),
            Env::Fixed(Default::default()),
        )
        .expect("parses");
        let plan = smartgrid_runtime::plan::plan(&spec, &crate::builtin_registry()).expect("plans");
        let index = |name: &str| {
            plan.nodes
                .iter()
                .position(|n| n.name == name)
                .expect("a node")
        };
        let groups = plan.fusion_groups();
        let named = |i: usize| -> Vec<&str> {
            groups[i]
                .iter()
                .map(|&j| plan.nodes[j].name.as_str())
                .collect()
        };
        // The first window over `readings` renders both; nothing else shares.
        let (first, second) = (
            index("means_10s").min(index("means_1m")),
            index("means_10s").max(index("means_1m")),
        );
        assert_eq!(named(first), [plan.nodes[second].name.as_str()]);
        for alone in ["means_other", "again", "readings", "other", "meters"] {
            assert!(named(index(alone)).is_empty(), "{alone}");
        }
        assert!(named(second).is_empty());
    }
}
