//! `ewma`: an exponentially weighted moving average per sensor — a whole operator kind
//! written outside smartgrid, registered the same way the built-in kinds are.
//!
//! ```yaml
//! smooth:
//!   type: ewma
//!   input: readings
//!   alpha: 0.2            # weight of the newest reading, 0 < alpha <= 1
//!   fields: [p_l1]        # optional; default: every field
//! ```
//! Emits one reading per input reading, with each selected field replaced by its
//! average so far: `avg = alpha * x + (1 - alpha) * avg` (the first reading starts it).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use smartgrid_runtime::operator::Readings;
use smartgrid_runtime::spec::Spanned;
use smartgrid_runtime::timely::dataflow::channels::pact::Pipeline;
use smartgrid_runtime::timely::dataflow::operators::generic::Operator;
use smartgrid_runtime::{
    AnyStream, Inputs, Node, PlanContext, PortType, RenderContext, Routing, Row, Schema, SensorId,
    StartContext, StartError,
};

/// Settings of an `ewma` node.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EwmaConfig {
    /// Weight of the newest reading, in (0, 1].
    pub alpha: Spanned<f64>,
    /// Fields to smooth; default: all.
    #[serde(default)]
    pub fields: Option<Vec<Spanned<String>>>,
}

/// A planned `ewma` node: register it with `registry.register::<Ewma>()`.
pub struct Ewma {
    alpha: f64,
    smooth: Arc<[bool]>,
    schema: Schema,
}

impl Node for Ewma {
    const KIND: &'static str = "ewma";
    const SUMMARY: &'static str =
        "exponentially weighted moving average per sensor (example custom operator)";
    /// One average per sensor: the runtime routes each sensor's readings to one worker.
    const INPUTS: Inputs = Inputs::One(Routing::BySensor);

    type Config = EwmaConfig;
    /// Nothing to acquire before the run.
    type State = ();

    fn plan(config: EwmaConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let schema = ctx.readings_input()?;
        let alpha = *config.alpha;
        if !(alpha > 0.0 && alpha <= 1.0) {
            ctx.error(config.alpha.at, format!("alpha {alpha} is outside (0, 1]"))
                .with_hint("try 0.1");
        }
        let mut smooth = vec![config.fields.is_none(); schema.len()];
        for name in config.fields.iter().flatten() {
            match schema.index_of(name) {
                Some(i) => smooth[i] = true,
                None => {
                    let message = format!("no upstream node produces a field `{}`", name.value);
                    ctx.error(name.at, message)
                        .with_hint(format!("the input has: {schema}"));
                }
            }
        }
        Some(Ewma {
            alpha,
            smooth: smooth.into(),
            schema,
        })
    }

    fn output(&self) -> Option<PortType> {
        Some(PortType::Readings(self.schema.clone()))
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
        Some(AnyStream::Readings(input.ewma(
            self.alpha,
            Arc::clone(&self.smooth),
            ctx.node,
        )))
    }
}

/// Adds `ewma` to streams of readings.
pub trait EwmaExt<'s> {
    /// Smooth the fields marked in `smooth` per sensor, in arrival order. With several
    /// workers the stream must be partitioned by sensor
    /// ([`route_by_sensor`](smartgrid_runtime::operator::route_by_sensor)); a pipeline
    /// does that because the kind reads its input [`Routing::BySensor`].
    fn ewma(self, alpha: f64, smooth: Arc<[bool]>, name: &str) -> Readings<'s>;
}

impl<'s> EwmaExt<'s> for Readings<'s> {
    fn ewma(self, alpha: f64, smooth: Arc<[bool]>, name: &str) -> Readings<'s> {
        self.unary(Pipeline, name, move |_capability, _info| {
            let mut state: HashMap<SensorId, Row> = HashMap::new();
            move |input, output| {
                input.for_each(|time, data| {
                    let mut session = output.session(&time);
                    for mut reading in data.drain(..) {
                        let avg = state
                            .entry(reading.sensor)
                            .or_insert_with(|| reading.values.clone());
                        for ((v, a), on) in reading
                            .values
                            .iter_mut()
                            .zip(avg.iter_mut())
                            .zip(smooth.iter())
                        {
                            if *on {
                                *a = alpha * *v + (1.0 - alpha) * *a;
                                *v = *a;
                            }
                        }
                        session.give(reading);
                    }
                });
            }
        })
    }
}
