//! The `simulate` node, and the publish loop shared with `smartgrid simulate`.
//!
//! Two modes:
//! - direct (default): each worker simulates its share of the sensors and feeds the
//!   payloads straight into the dataflow;
//! - `publish: { url, topic }`: one thread publishes every sensor's payloads to a
//!   broker (the embedded one in the default pipeline), and the node has no output —
//!   an `mqtt` node reads them back, exercising the whole path a real monitor takes.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use serde::Deserialize;
use smartgrid_runtime::shutdown::Shutdown;
use smartgrid_runtime::source::{Poll, poll_source};
use smartgrid_runtime::{
    AnyStream, Arity, Diagnostic, Message, NodeOperator, OperatorFactory, PlanContext, PortType,
    ProcessContext, RenderContext, RenderError,
};

use super::{Simulator, SimulatorConfig};
use crate::mqtt::{MqttError, Publisher, PublisherOptions, Qos};

/// Payloads handed to the dataflow per activation.
const BATCH: usize = 1024;

/// Where a publishing simulator sends its payloads.
#[derive(Clone, Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishGroup {
    #[serde(default)]
    publish: Option<PublishConfig>,
}

/// The `simulate` factory.
pub struct SimulateFactory;

impl OperatorFactory for SimulateFactory {
    fn kind(&self) -> &'static str {
        "simulate"
    }

    fn summary(&self) -> &'static str {
        "source: realistic simulated Clemap three-phase monitors (type-16 payloads), deterministic per seed"
    }

    fn arity(&self) -> Arity {
        Arity::Source
    }

    fn plan(&self, ctx: &PlanContext<'_>) -> Result<Arc<dyn NodeOperator>, Vec<Diagnostic>> {
        let simulator = ctx
            .node
            .select(|k| k != "publish")
            .settings::<SimulatorConfig>();
        let publish = ctx
            .node
            .select(|k| k == "publish")
            .settings::<PublishGroup>();
        let (config, publish) = match (simulator, publish) {
            (Ok(c), Ok(p)) => (c, p.publish),
            (Err(mut a), Err(b)) => {
                a.extend(b);
                return Err(a);
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        if let Err(e) = config.validate() {
            return Err(vec![
                ctx.node
                    .error(ctx.node.at, e.to_string())
                    .hint("see the simulate settings in the README"),
            ]);
        }
        if let Some(p) = &publish
            && p.qos > 1
        {
            return Err(vec![
                ctx.node
                    .error(
                        ctx.node.key_at("publish"),
                        format!("QoS {} is not supported", p.qos),
                    )
                    .hint("use 0 or 1"),
            ]);
        }
        Ok(Arc::new(SimulateNode {
            config,
            publish,
            start_ms: OnceLock::new(),
            publisher: Mutex::new(None),
        }))
    }
}

struct SimulateNode {
    config: SimulatorConfig,
    publish: Option<PublishConfig>,
    /// "Now", fixed once per process so every worker's sensors share one clock.
    start_ms: OnceLock<i64>,
    publisher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl NodeOperator for SimulateNode {
    fn output(&self) -> Option<PortType> {
        self.publish.is_none().then_some(PortType::Messages)
    }

    /// Each worker simulates the sensors keyed operators route to it.
    fn partitioned(&self) -> bool {
        self.publish.is_none()
    }

    fn start(&self, ctx: &ProcessContext) -> Result<(), RenderError> {
        let now = *self.start_ms.get_or_init(now_ms);
        let Some(publish) = self.publish.clone() else {
            return Ok(());
        };
        let config = self.config.clone();
        let shutdown = ctx.shutdown.clone();
        let client_id = format!("smartgrid-{}-simulator", ctx.pipeline);
        let simulator = Simulator::with_now(&config, 0..config.sensors, now)
            .map_err(|e| RenderError::Other(e.to_string()))?;
        let publisher = Publisher::connect(&publish.url, client_id, PublisherOptions::default())
            .map_err(|e| RenderError::Other(format!("cannot publish to {}: {e}", publish.url)))?;
        let handle = std::thread::Builder::new()
            .name("simulator".into())
            .spawn(move || {
                match publish_loop(
                    simulator,
                    &publisher,
                    &publish.topic,
                    qos(publish.qos),
                    &shutdown,
                ) {
                    Ok(n) => tracing::info!("simulator published {n} readings"),
                    Err(e) => tracing::error!("simulator stopped: {e}"),
                }
                if let Err(e) = publisher.flush_and_close(Duration::from_secs(5)) {
                    tracing::warn!("simulator: {e}");
                }
            })
            .map_err(|source| RenderError::Io {
                context: "cannot start the simulator thread".into(),
                source,
            })?;
        *self
            .publisher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle);
        Ok(())
    }

    fn render<'s>(
        &self,
        ctx: &RenderContext<'s>,
        _inputs: Vec<AnyStream<'s>>,
    ) -> Result<Option<AnyStream<'s>>, RenderError> {
        if self.publish.is_some() {
            return Ok(None);
        }
        let now = *self.start_ms.get_or_init(now_ms);
        let mut simulator = Simulator::with_now(
            &self.config,
            self.config.worker_sensors(ctx.worker, ctx.peers),
            now,
        )
        .map_err(|e| RenderError::Other(e.to_string()))?;
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
        Ok(Some(AnyStream::Messages(stream)))
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
