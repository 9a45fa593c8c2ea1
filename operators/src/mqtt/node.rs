//! The `mqtt` source node: settings checked at plan time, one subscriber per run (in
//! the process of worker 0, started before the workers), drained into the dataflow
//! without blocking.

use std::sync::Arc;

use smartgrid_runtime::source::{Poll, poll_source};
use smartgrid_runtime::{
    AnyStream, Claim, Inputs, Message, Node, PlanContext, PortType, RenderContext, Resource,
    StartContext, StartError,
};

use super::{MqttConfig, Subscriber, TryRecvError, embedded_broker, spawn_subscriber};

/// Messages handed to the dataflow per activation, so one source cannot starve a worker.
const BATCH: usize = 1024;

/// A planned `mqtt` source.
pub struct MqttSource {
    config: MqttConfig,
    client_id: String,
    client_id_at: smartgrid_runtime::Location,
}

impl Node for MqttSource {
    const KIND: &'static str = "mqtt";
    const SUMMARY: &'static str = "source: subscribe to MQTT topics (QoS 0/1, persistent session, TLS, reconnect with backoff)";
    const INPUTS: Inputs = Inputs::None;

    type Config = MqttConfig;

    /// The subscriber, in the process that runs worker 0.
    type State = Option<Arc<Subscriber>>;

    fn plan(mut config: MqttConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        if let Err(issues) = config.validate() {
            for (key, message, hint) in issues {
                ctx.error_at_key(key, message).with_hint(hint);
            }
            return None;
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
        Some(MqttSource {
            config,
            client_id,
            client_id_at: ctx.node.key_at("client_id"),
        })
    }

    fn output(&self) -> Option<PortType> {
        Some(PortType::Messages)
    }

    fn resources(&self) -> Vec<Claim> {
        vec![Claim {
            resource: Resource::MqttClientId {
                broker: self.config.url.clone(),
                client_id: self.client_id.clone(),
            },
            at: self.client_id_at,
        }]
    }

    fn start(&self, ctx: &StartContext<'_>) -> Result<Self::State, StartError> {
        // One connection per run: worker 0 (in the first process) subscribes, and the
        // decoded readings are spread over every worker by sensor.
        if ctx.process_index != 0 {
            return Ok(None);
        }
        if self.config.url == "embedded" {
            embedded_broker()
                .map_err(|e| StartError::other(format!("cannot start the embedded broker: {e}")))?;
        }
        let subscriber =
            spawn_subscriber(&self.config, self.client_id.clone(), ctx.shutdown.flag())
                .map_err(StartError::other)?;
        Ok(Some(Arc::new(subscriber)))
    }

    fn render<'s>(
        &self,
        state: &Self::State,
        ctx: &RenderContext<'s>,
        _inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        let subscriber = state.as_ref().filter(|_| ctx.worker == 0).map(Arc::clone);
        let Some(subscriber) = subscriber else {
            let empty = poll_source(ctx.scope, ctx.node, |_: &mut Vec<Message>| Poll::Done);
            return Some(AnyStream::Messages(empty));
        };
        let received = ctx.counter("messages");
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
        Some(AnyStream::Messages(stream))
    }
}
