//! The `simulate` node, and the publish loop shared with `smartgrid simulate`.
//!
//! Two modes:
//! - direct (default): each worker simulates its share of the sensors and feeds the
//!   payloads straight into the dataflow;
//! - `publish: { url, topic }`: one thread publishes every sensor's payloads to a
//!   broker (the embedded one in the default pipeline), and the node has no output —
//!   an `mqtt` node reads them back, exercising the whole path a real monitor takes.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::BytesMut;
use serde::Deserialize;
use smartgrid_runtime::clock::now_ms;
use smartgrid_runtime::shutdown::Shutdown;
use smartgrid_runtime::source::{Poll, poll_source};
use smartgrid_runtime::{
    AnyStream, BrokerLink, Claim, Inputs, Limit, Message, Node, PlanContext, PortType,
    RenderContext, Resource, SourcePartitioning, StartContext, StartError,
};

use super::{Simulator, SimulatorConfig};
use crate::io::mqtt::{Endpoint, MqttError, Publisher, PublisherOptions, Qos};

/// Payloads handed to the dataflow per activation.
const BATCH: usize = 1024;

/// How long the end of a run waits for the broker to acknowledge the last publishes.
const PUBLISH_DRAIN: Duration = Duration::from_secs(30);

/// Where a publishing simulator sends its payloads.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// Broker URL: `mqtt://host:port`, `mqtts://host:port` or `embedded`.
    pub url: String,
    /// Topic; `{sensor}` is replaced by the sensor id (24 hex characters).
    /// Default `data/realtime/feature/{sensor}`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// QoS of the publishes (0 or 1, default 1).
    #[serde(default = "default_qos")]
    pub qos: u8,
}

fn default_topic() -> String {
    "data/realtime/feature/{sensor}".to_string()
}
fn default_qos() -> u8 {
    1
}

/// The `publish:` key; the simulation's own keys are a [`SimulatorConfig`].
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishGroup {
    /// Publish the payloads to a broker (`{ url, topic, qos }`) instead of emitting
    /// them into the pipeline.
    #[serde(default)]
    publish: Option<PublishConfig>,
}

/// A planned `simulate` node.
pub struct SimulateNode {
    config: SimulatorConfig,
    publish: Option<PublishConfig>,
    /// The publisher's client id, one per node.
    client_id: String,
    publish_at: smartgrid_runtime::Location,
}

/// What a simulate node holds while it runs.
pub struct SimulateState {
    /// "Now", fixed once per process so every worker's sensors share one clock.
    now_ms: i64,
    /// The publishing thread (publish mode, in the first process only); it returns how
    /// many readings it published and the broker acknowledged.
    publisher: Option<JoinHandle<Result<u64, MqttError>>>,
}

impl Node for SimulateNode {
    const KIND: &'static str = "simulate";
    const SUMMARY: &'static str = "source: realistic simulated Clemap three-phase monitors (type-16 payloads), deterministic per seed";
    const INPUTS: Inputs = Inputs::None;
    const LIMITS: &'static [(&'static str, Limit)] = &[("duration", Limit::seconds(0, 315360000))];
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&["publish"]);

    type Config = PublishGroup;

    type State = SimulateState;

    fn config_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        use schemars::JsonSchema;
        // The simulation's own keys are read apart from `publish` (see `plan`).
        smartgrid_runtime::config_schema::union(
            PublishGroup::json_schema(generator),
            SimulatorConfig::json_schema(generator),
        )
    }

    fn plan(group: PublishGroup, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let config: SimulatorConfig = ctx.settings_except(&["publish"])?;
        if let Err(e) = config.validate() {
            ctx.error(ctx.node.at, e.to_string())
                .with_hint("see the `simulate` settings in docs/nodes.md");
        }
        if let Some(p) = &group.publish
            && p.qos > 1
        {
            ctx.error_at_key("publish", format!("QoS {} is not supported", p.qos))
                .with_hint("use 0 or 1");
        }
        Some(SimulateNode {
            config,
            publish: group.publish,
            client_id: format!("smartgrid-{}-{}", ctx.pipeline, ctx.node.name),
            publish_at: ctx.node.key_at("publish"),
        })
    }

    fn output(&self) -> Option<PortType> {
        self.publish.is_none().then_some(PortType::Messages)
    }

    /// Each worker simulates the sensors keyed operators route to it.
    fn source_partitioning(&self) -> SourcePartitioning {
        SourcePartitioning::BySensor
    }

    fn broker_links(&self) -> Vec<BrokerLink> {
        self.publish
            .iter()
            .map(|p| BrokerLink {
                // As the mqtt source shows it, so both meet at one broker in the graph.
                broker: Endpoint::parse(&p.url)
                    .map_or_else(|_| crate::io::redact_url(&p.url), |e| e.to_string()),
                topic: p.topic.clone(),
                publishes: true,
            })
            .collect()
    }

    fn resources(&self) -> Vec<Claim> {
        self.publish
            .iter()
            .map(|p| Claim {
                resource: Resource::MqttClientId {
                    broker: p.url.clone(),
                    client_id: self.client_id.clone(),
                },
                at: self.publish_at,
            })
            .collect()
    }

    fn start(&self, ctx: &StartContext<'_>) -> Result<SimulateState, StartError> {
        let now = now_ms();
        let mut state = SimulateState {
            now_ms: now,
            publisher: None,
        };
        // A cluster publishes each reading once: from the first process.
        let Some(publish) = self.publish.clone().filter(|_| ctx.process_index == 0) else {
            return Ok(state);
        };
        let shutdown = ctx.shutdown.clone();
        let simulator = Simulator::with_now(&self.config, 0..self.config.sensors, now)
            .map_err(StartError::other)?;
        let publisher = Publisher::connect(
            &publish.url,
            self.client_id.clone(),
            PublisherOptions::default(),
        )
        .map_err(|e| StartError::other(format!("cannot publish to {}: {e}", publish.url)))?;
        let handle = std::thread::Builder::new()
            .name("simulator".into())
            .spawn(move || {
                let published = publish_loop(
                    simulator,
                    &publisher,
                    &publish.topic,
                    qos(publish.qos),
                    &shutdown,
                );
                let flushed = publisher.flush_and_close(PUBLISH_DRAIN);
                let published = published?;
                flushed?;
                Ok(published)
            })
            .map_err(|source| StartError::Io {
                context: "cannot start the simulator thread".into(),
                source,
            })?;
        state.publisher = Some(handle);
        Ok(state)
    }

    fn render<'s>(
        &self,
        state: &SimulateState,
        ctx: &RenderContext<'s>,
        _inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        if self.publish.is_some() {
            return None;
        }
        let mut simulator = Simulator::with_now(
            &self.config,
            self.config.worker_sensors(ctx.worker, ctx.peers),
            state.now_ms,
        )
        .expect("the settings were validated by plan and a worker's sensors are in range");
        let shutdown = ctx.process.shutdown.clone();
        let topic: Arc<str> = Arc::from(format!("simulate/{}", ctx.node));
        let mut lengths: Vec<usize> = Vec::with_capacity(BATCH);
        let stream = poll_source(ctx.scope, ctx.node, move |out: &mut Vec<Message>| {
            if shutdown.is_triggered() {
                return Poll::Done;
            }
            let due = if simulator.realtime() {
                now_ms()
            } else {
                i64::MAX
            };
            if simulator.next_due().is_some_and(|t| t > due) {
                return Poll::Idle; // nothing due yet: no buffer to allocate
            }
            // One buffer per batch; each message is a slice of it.
            let mut buffer = BytesMut::with_capacity(BATCH * super::MAX_PAYLOAD_LEN);
            while lengths.len() < BATCH && simulator.next_due().is_some_and(|t| t <= due) {
                let Some(payload) = simulator.next_payload() else {
                    break;
                };
                buffer.extend_from_slice(payload.as_bytes());
                lengths.push(payload.as_bytes().len());
            }
            let buffer = buffer.freeze();
            let mut at = 0;
            for len in lengths.drain(..) {
                out.push(Message {
                    topic: Arc::clone(&topic),
                    payload: buffer.slice(at..at + len),
                });
                at += len;
            }
            if simulator.is_done() {
                if out.is_empty() {
                    Poll::Done
                } else {
                    Poll::More
                }
            } else if out.len() == BATCH {
                Poll::More
            } else {
                Poll::Idle
            }
        });
        Some(AnyStream::Messages(stream))
    }

    /// A publishing simulator's run ends when every reading was published and
    /// acknowledged (or the run was stopped), not when the dataflow (which has nothing
    /// of it) ends.
    fn finish(&self, state: SimulateState, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        let Some(handle) = state.publisher else {
            return Ok(());
        };
        match handle.join() {
            Ok(Ok(n)) => {
                tracing::info!("simulator published {n} readings");
                Ok(())
            }
            Ok(Err(e)) => Err(StartError::other(format!(
                "the simulator stopped publishing: {e}"
            ))),
            Err(_) => Err(StartError::other(
                "the simulator's publishing thread panicked",
            )),
        }
    }
}

fn qos(level: u8) -> Qos {
    if level == 0 {
        Qos::AtMostOnce
    } else {
        Qos::AtLeastOnce
    }
}

/// Publish every payload of `simulator` (paced to the wall clock if it is realtime)
/// until it is done or `shutdown` is raised. `{sensor}` in `topic` is replaced by the
/// sensor id. Returns how many payloads were queued.
pub fn publish_loop(
    mut simulator: Simulator,
    publisher: &Publisher,
    topic: &str,
    qos: Qos,
    shutdown: &Shutdown,
) -> Result<u64, MqttError> {
    let mut published = 0;
    let mut topics: std::collections::HashMap<[u8; 12], String> = std::collections::HashMap::new();
    while let Some(due) = simulator.next_due() {
        if shutdown.is_triggered() {
            break;
        }
        if simulator.realtime() {
            let wait = due - now_ms();
            if wait > 0 {
                // Short sleeps, so a stop request is seen promptly.
                std::thread::sleep(Duration::from_millis(
                    u64::try_from(wait.min(100)).unwrap_or(0),
                ));
                continue;
            }
        }
        let Some(payload) = simulator.next_payload() else {
            break;
        };
        let topic = topics
            .entry(payload.sensor_id)
            .or_insert_with(|| topic.replace("{sensor}", &hex::encode(payload.sensor_id)));
        publisher.publish(topic, payload.as_bytes().to_vec(), qos)?;
        published += 1;
    }
    Ok(published)
}

/// What `smartgrid simulate` publishes.
#[derive(Clone, Debug)]
pub struct PublishPlan {
    /// The simulation.
    pub simulator: SimulatorConfig,
    /// Topic template (`{sensor}` → sensor id).
    pub topic: String,
    /// QoS 0 or 1.
    pub qos: u8,
}

/// Why `smartgrid simulate` could not publish.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The simulation settings.
    #[error(transparent)]
    Simulate(#[from] super::SimulateError),
    /// The broker.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
}

/// Publish a whole simulation to `broker` and wait until the broker confirmed it.
pub fn publish_to_broker(
    broker: &str,
    plan: &PublishPlan,
    shutdown: &Shutdown,
) -> Result<u64, PublishError> {
    let simulator = Simulator::new(&plan.simulator, 0..plan.simulator.sensors)?;
    let publisher = Publisher::connect(
        broker,
        format!("smartgrid-simulate-{}", std::process::id()),
        PublisherOptions::default(),
    )?;
    let published = publish_loop(simulator, &publisher, &plan.topic, qos(plan.qos), shutdown)?;
    publisher.flush_and_close(Duration::from_secs(30))?;
    Ok(published)
}
