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
use smartgrid_runtime::{
    AnyStream, Arity, Diagnostic, NodeOperator, OperatorFactory, PlanContext, PortType, Reading,
    RenderContext, RenderError, Row, Schema, SensorId,
};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

/// Settings of an `ewma` node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EwmaConfig {
    /// Weight of the newest reading, in (0, 1].
    pub alpha: Spanned<f64>,
    /// Fields to smooth; default: all.
    #[serde(default)]
    pub fields: Option<Vec<Spanned<String>>>,
}

/// The `ewma` factory: register it with `registry.register(EwmaFactory)`.
pub struct EwmaFactory;

impl OperatorFactory for EwmaFactory {
    fn kind(&self) -> &'static str {
        "ewma"
    }

    fn summary(&self) -> &'static str {
        "exponentially weighted moving average per sensor (example custom operator)"
    }

    fn arity(&self) -> Arity {
        Arity::One
    }

    fn plan(&self, ctx: &PlanContext<'_>) -> Result<Arc<dyn NodeOperator>, Vec<Diagnostic>> {
        let schema = ctx.readings_input()?;
        let config: EwmaConfig = ctx.node.settings()?;
        let mut errors = Vec::new();
        let alpha = *config.alpha;
        if !(alpha > 0.0 && alpha <= 1.0) {
            errors.push(
                ctx.node
                    .error(config.alpha.at, format!("alpha {alpha} is outside (0, 1]"))
                    .hint("try 0.1"),
            );
        }
        let mut smooth = vec![config.fields.is_none(); schema.len()];
        for name in config.fields.iter().flatten() {
            match schema.index_of(name) {
                Some(i) => smooth[i] = true,
                None => errors.push(
                    ctx.node
                        .error(
                            name.at,
                            format!("no upstream node produces a field `{}`", name.value),
                        )
                        .hint(format!("the input has: {schema}")),
                ),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Arc::new(Ewma {
            alpha,
            smooth: smooth.into(),
            schema,
        }))
    }
}

struct Ewma {
    alpha: f64,
    smooth: Arc<[bool]>,
    schema: Schema,
}

impl NodeOperator for Ewma {
    fn output(&self) -> Option<PortType> {
        Some(PortType::Readings(self.schema.clone()))
    }

    fn render<'s>(
        &self,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Result<Option<AnyStream<'s>>, RenderError> {
        let input = AnyStream::single_readings(inputs)?;
        Ok(Some(AnyStream::Readings(input.ewma(
            self.alpha,
            Arc::clone(&self.smooth),
            ctx.node,
        ))))
    }
}

/// Adds `ewma` to streams of readings.
pub trait EwmaExt<'s> {
    /// Smooth the fields marked in `smooth` per sensor, in arrival order.
    fn ewma(self, alpha: f64, smooth: Arc<[bool]>, name: &str) -> Readings<'s>;
}

impl<'s> EwmaExt<'s> for Readings<'s> {
    fn ewma(self, alpha: f64, smooth: Arc<[bool]>, name: &str) -> Readings<'s> {
        // Route by sensor so one worker holds each sensor's average.
        let pact = Exchange::new(|r: &Reading| r.sensor.route_hash());
        self.unary(pact, name, move |_capability, _info| {
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
