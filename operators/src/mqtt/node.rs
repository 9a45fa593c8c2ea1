//! The `mqtt` source node: settings checked at plan time, one subscriber per process
//! (on worker 0), drained into the dataflow without blocking.

use std::sync::Arc;

use smartgrid_runtime::source::{Poll, poll_source};
use smartgrid_runtime::{
    AnyStream, Arity, Diagnostic, Message, NodeOperator, OperatorFactory, PlanContext, PortType,
    ProcessContext, RenderContext, RenderError,
};

use super::{MqttConfig, TryRecvError, embedded_broker, spawn_subscriber};

/// Messages handed to the dataflow per activation, so one source cannot starve a worker.
const BATCH: usize = 1024;

/// The `mqtt` factory.
pub struct MqttSourceFactory;

impl OperatorFactory for MqttSourceFactory {
    fn kind(&self) -> &'static str {
        "mqtt"
    }

    fn summary(&self) -> &'static str {
        "source: subscribe to MQTT topics (QoS 0/1, persistent session, TLS, reconnect with backoff)"
    }

    fn arity(&self) -> Arity {
        Arity::Source
    }

    fn plan(&self, ctx: &PlanContext<'_>) -> Result<Arc<dyn NodeOperator>, Vec<Diagnostic>> {
        let mut config: MqttConfig = ctx.node.settings()?;
        if let Err(issues) = config.validate() {
            return Err(issues
                .into_iter()
                .map(|(key, message, hint)| {
                    ctx.node.error(ctx.node.key_at(key), message).hint(hint)
                })
                .collect());
        }
        for path in [
            &mut config.ca_file,
            &mut config.client_cert,
            &mut config.client_key,
        ]
        .into_iter()
        .flatten()
        {
            *path = ctx.resolve(path);
        }
        let client_id = config.client_id(ctx.pipeline, &ctx.node.name);
        Ok(Arc::new(MqttSource { config, client_id }))
    }
}

struct MqttSource {
    config: MqttConfig,
    client_id: String,
}

impl NodeOperator for MqttSource {
    fn output(&self) -> Option<PortType> {
        Some(PortType::Messages)
    }

    fn start(&self, _ctx: &ProcessContext) -> Result<(), RenderError> {
        if self.config.url == "embedded" {
            embedded_broker().map_err(|e| {
                RenderError::Other(format!("cannot start the embedded broker: {e}"))
            })?;
        }
        Ok(())
    }

    fn render<'s>(
        &self,
        ctx: &RenderContext<'s>,
        _inputs: Vec<AnyStream<'s>>,
    ) -> Result<Option<AnyStream<'s>>, RenderError> {
        if ctx.worker != 0 {
            // One connection per process: worker 0 subscribes, the decoded readings are
            // then spread over every worker by sensor.
            let empty = poll_source(ctx.scope, ctx.node, |_: &mut Vec<Message>| Poll::Done);
            return Ok(Some(AnyStream::Messages(empty)));
        }
        let subscriber = spawn_subscriber(
            &self.config,
            self.client_id.clone(),
            ctx.process.shutdown.flag(),
        )
        .map_err(|e| RenderError::Other(e.to_string()))?;
        let received = ctx
            .process
            .metrics
            .counter(format!("{}.messages", ctx.node));
        let node = ctx.node.to_string();
        let mut announced = false;
        let stream = poll_source(ctx.scope, ctx.node, move |out: &mut Vec<Message>| {
            if !announced && subscriber.stats().subscribed {
                tracing::info!(node = %node, "subscribed");
                announced = true;
            }
            while out.len() < BATCH {
                match subscriber.try_recv() {
                    Ok(message) => out.push(message),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        received.add(out.len() as u64);
                        return if out.is_empty() {
                            Poll::Done
                        } else {
                            Poll::More
                        };
                    }
                }
            }
            received.add(out.len() as u64);
            if out.len() == BATCH {
                Poll::More
            } else {
                Poll::Idle
            }
        });
        Ok(Some(AnyStream::Messages(stream)))
    }
}
