//! `window_mean`: tumbling, epoch-aligned event-time windows per sensor; emits the mean
//! of every selected field plus the reading count when the input frontier passes the
//! window's end plus its `lateness`, and emits a sensor's mean again when a late reading
//! changes it within the `correction` horizon.
//!
//! ```yaml
//! means_10s:
//!   type: window_mean
//!   input: readings
//!   size: 10s          # window length; windows start at multiples of it since the epoch
//!   lateness: 0s       # how long past its end a window waits before it is emitted
//!   correction: 1m     # how long past that an emitted window still takes late readings
//!   fields: [p_l1, p_l2, p_l3]   # optional; default: every field of the input
//!   dead_letter:       # optional: readings that came past the correction horizon
//!     file: data/late.jsonl
//! ```
//! Output: the selected fields (means) and `count`, timestamped at the window's start.
//!
//! What goes wrong at the edge, and what the node does about it:
//!
//! - **Redeliveries.** A reading is counted once per (sensor, event time): an MQTT QoS-1
//!   message the broker sends again after a reconnect, or any second reading of a sensor
//!   with the same timestamp, is dropped and counted in `<node>.duplicates`. The node
//!   remembers the times of every window it still keeps (open or correctable), so a
//!   redelivery is caught as long as its window could still change.
//! - **Late readings.** A reading for a window already emitted, arriving while the
//!   watermark is less than `correction` past the window's close, is added to it and the
//!   sensor's merged mean is emitted again, with the same timestamp (the window's start).
//!   A sink that overwrites a point by series and time, as InfluxDB does, ends with the
//!   right mean; a file sink gets one more line, the last for that window being the
//!   right one. Re-emitted means are counted in `<node>.corrections` (`<node>.windows`
//!   counts first emissions only).
//! - **Too late.** Past the horizon the reading is counted in `<node>.late`, logged, and
//!   written to the `dead_letter` destinations (see
//!   [`record_letters`](crate::delivery::record_letters)) with reason `late`, the reading
//!   (sensor, time, every field by name), its window, how late it was and the horizon.
//!
//! The horizon costs memory: an emitted window's sums (a few numbers per sensor) and the
//! event time of every reading counted in a kept window, 8 bytes each, in blocks that are
//! reused, not freed. Kept windows span the longest window plus its lateness plus the
//! horizon: at 12 Hz with 1 min windows and the default horizon, some 12 to 19 MB per
//! 1,000 sensors.
//! `correction: 0s` keeps no emitted window: every reading after its window's emission is
//! late, and only the open windows' times are kept for de-duplication.

#[cfg(test)]
mod cut_tests;
#[cfg(test)]
mod feed;
mod letters;
mod operator;
mod seen;
pub mod state;
mod state_bytes;
mod sums;
pub mod time_list;

pub use letters::LateLetters;
pub use operator::{CountedWindow, WindowMean, WindowMeanExt};

use serde::Deserialize;
use smartgrid_runtime::spec::{Duration, Spanned};
use smartgrid_runtime::{
    AnyStream, Claim, Inputs, Limit, Member, Node, PlanContext, PortType, RenderContext, Routing,
    Schema, StartContext, StartError,
};

use crate::delivery::record_letters::{LetterConfig, LetterTargets, StartedLetters};

/// Settings of a `window_mean` node.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowMeanConfig {
    /// Window length (`10s`, `1m`, …). Windows are aligned to the Unix epoch.
    pub size: Spanned<Duration>,
    /// How long after its end a window waits for stragglers before it is emitted.
    /// Default `0s`.
    #[serde(default)]
    pub lateness: Option<Duration>,
    /// The correction horizon: how long after it was due (end plus `lateness`) an
    /// emitted window still takes late readings, each change emitting the sensor's mean
    /// again with the window's timestamp. Later readings are refused and dead-lettered.
    /// Default `1m`; `0s` turns corrections off.
    #[serde(default)]
    pub correction: Option<Duration>,
    /// Which input fields to average; default: all of them.
    #[serde(default)]
    pub fields: Option<Vec<Spanned<String>>>,
    /// Where readings that came past the correction horizon go besides the counter and
    /// the log: `{ file: path }` (JSON lines) and/or `{ topic: t, url: u }`, as decode's.
    #[serde(default)]
    pub dead_letter: Option<LetterConfig>,
}

/// A planned `window_mean` node.
pub struct WindowMeanNode {
    input: Schema,
    output: Schema,
    window: WindowMean,
    dead_letter: Option<LetterTargets>,
}

impl WindowMeanNode {
    /// The window with the counters and dead letters of node `ctx.node`.
    fn counted(&self, state: &WindowMeanState, ctx: &RenderContext<'_>) -> CountedWindow {
        let letters = state
            .letters
            .as_ref()
            .map(|started| started.letters.clone())
            .unwrap_or_default();
        CountedWindow {
            window: self.window.clone(),
            late: ctx.counter("late"),
            emitted: ctx.counter("windows"),
            duplicates: ctx.counter("duplicates"),
            corrections: ctx.counter("corrections"),
            open_windows: ctx.gauge("open_windows"),
            letters: LateLetters::new(ctx.node, self.input.clone(), letters),
        }
    }
}

/// What a `window_mean` node holds while it runs: its dead-letter destinations.
pub struct WindowMeanState {
    letters: Option<StartedLetters>,
}

impl Node for WindowMeanNode {
    const KIND: &'static str = "window_mean";
    const SUMMARY: &'static str = "tumbling event-time window per sensor: mean of each field and the reading count; duplicates dropped, late readings corrected";
    const INPUTS: Inputs = Inputs::One(Routing::BySensor);
    const LIMITS: &'static [(&'static str, Limit)] = &[
        ("size", Limit::millis_to_seconds(1, 31622400)),
        ("lateness", Limit::seconds(0, 31622400)),
        // A day: the horizon keeps every reading's time, so it bounds the memory.
        ("correction", Limit::seconds(0, 86400)),
    ];

    type Config = WindowMeanConfig;

    type State = WindowMeanState;

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
        let dead_letter = LetterTargets::plan(config.dead_letter, ctx);
        if ctx.has_problems() {
            return None;
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
                correction_ms: config
                    .correction
                    .map_or(WindowMean::DEFAULT_CORRECTION_MS, |c| c.as_millis_u64()),
                fields: fields.into(),
            },
            input,
            dead_letter,
        })
    }

    fn output(&self) -> Option<PortType> {
        Some(PortType::Readings(self.output.clone()))
    }

    fn resources(&self) -> Vec<Claim> {
        self.dead_letter
            .as_ref()
            .map(LetterTargets::claims)
            .unwrap_or_default()
    }

    fn start(&self, ctx: &StartContext<'_>) -> Result<WindowMeanState, StartError> {
        let letters = match &self.dead_letter {
            Some(targets) => Some(targets.start(ctx)?),
            None => None,
        };
        Ok(WindowMeanState { letters })
    }

    fn render<'s>(
        &self,
        state: &WindowMeanState,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        let input = ctx.single_readings(inputs);
        let means = input
            .window_means_checkpointed(vec![self.counted(state, ctx)], ctx.node, Some(ctx.state()))
            .pop()
            .expect("one output per window");
        Some(AnyStream::Readings(means))
    }

    fn finish(&self, state: WindowMeanState, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        state.letters.map_or(Ok(()), StartedLetters::finish)
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
            .map(|m| m.node.counted(m.state, &ctx.for_node(m.name)))
            .collect();
        let names: Vec<&str> = group.iter().map(|m| m.name).collect();
        let name = names.join("+");
        // One participant for the operator, under the group's name.
        let state = ctx.process.checkpoints.node(&name, ctx.worker, ctx.peers);
        input
            .window_means_checkpointed(windows, &name, Some(state))
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
