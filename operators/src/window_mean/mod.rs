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

use serde::Deserialize;
use smartgrid_runtime::spec::{Duration, Spanned};
use smartgrid_runtime::{
    AnyStream, Inputs, Limit, Member, Node, PlanContext, PortType, RenderContext, Routing, Schema,
    StartContext, StartError,
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

/// A planned `window_mean` node.
pub struct WindowMeanNode {
    output: Schema,
    window: WindowMean,
}

impl WindowMeanNode {
    /// The window with the counters of node `ctx.node`.
    fn counted(&self, ctx: &RenderContext<'_>) -> CountedWindow {
        CountedWindow {
            window: self.window.clone(),
            late: ctx.counter("late"),
            emitted: ctx.counter("windows"),
        }
    }
}

impl Node for WindowMeanNode {
    const KIND: &'static str = "window_mean";
    const SUMMARY: &'static str =
        "tumbling event-time window per sensor: mean of each field and the reading count";
    const INPUTS: Inputs = Inputs::One(Routing::BySensor);
    const LIMITS: &'static [(&'static str, Limit)] = &[
        ("size", Limit::millis_to_seconds(1, 31622400)),
        ("lateness", Limit::seconds(0, 31622400)),
    ];

    type Config = WindowMeanConfig;

    type State = ();

    fn plan(config: WindowMeanConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let input = ctx.readings_input()?;
        let size_ms = config.size.value.as_millis_u64();
        let mut fields = Vec::new();
        match &config.fields {
            None => fields.extend(0..input.len()),
            Some(names) => {
                for name in names {
                    match input.index_of(&name.value) {
                        Some(i) => fields.push(i),
                        None => {
                            let message =
                                format!("no upstream node produces a field `{}`", name.value);
                            ctx.error(name.at, message)
                                .with_hint(format!("the input has: {input}"));
                        }
                    }
                }
            }
        }
        let names: Vec<&str> = fields
            .iter()
            .map(|&i| input.name(i))
            .chain(["count"])
            .collect();
        Some(WindowMeanNode {
            output: Schema::new(names),
            window: WindowMean {
                size_ms,
                lateness_ms: config.lateness.map_or(0, |l| l.as_millis_u64()),
                fields: fields.into(),
            },
        })
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
        let input = ctx.single_readings(inputs);
        let window = self.counted(ctx);
        let means = input.window_mean(window.window, window.late, window.emitted, ctx.node);
        Some(AnyStream::Readings(means))
    }

    /// Window sizes over one input share an operator: one sensor lookup per reading
    /// for all of them, and no copy of the stream per window.
    fn shares_operator(&self) -> bool {
        true
    }

    fn render_together<'s>(
        group: &[Member<'_, Self>],
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Vec<Option<AnyStream<'s>>> {
        let input = ctx.single_readings(inputs);
        let windows = group
            .iter()
            .map(|m| m.node.counted(&ctx.for_node(m.name)))
            .collect();
        let names: Vec<&str> = group.iter().map(|m| m.name).collect();
        input
            .window_means(windows, &names.join("+"))
            .into_iter()
            .map(|means| Some(AnyStream::Readings(means)))
            .collect()
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
