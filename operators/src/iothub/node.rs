//! The `iothub` sink node.
//!
//! ```text
//!  timely worker 0 ──JSON records──▶ bounded channel ──▶ uplink thread ──▶ DeviceClient
//!  (encodes, never blocks             (chunks per          (Batcher: size or
//!   while the channel has room)        activation)          flush_interval; logs C2D
//!                                                           messages and twin patches)
//! ```
//! When the input ends (end of data, SIGINT/SIGTERM drain the dataflow), the last
//! batch is sent and the worker waits up to `shutdown_timeout` for acknowledgements.

use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::{
    AnyStream, Claim, Diagnostic, Inputs, Node, PlanContext, PortType, RenderContext, Resource,
    Routing, Schema, StartContext, StartError,
};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use super::batch::{Batcher, RecordEncoder};
use super::client::{DeviceClient, DeviceClientOptions, X509Files};
use super::config::IotHubConfig;
use super::events::CloudEvent;
use super::outbox::{MemoryStore, Outbox};
use crate::spool::{Spool, SpoolOptions, WhenFull};

/// Chunks of records waiting for the uplink thread.
const CHANNEL_CHUNKS: usize = 1024;

fn plan_iothub(
    config: IotHubConfig,
    schema: &Schema,
    ctx: &PlanContext<'_>,
) -> Result<IotHubSink, Vec<Diagnostic>> {
    let connection = config.validate().map_err(|issues| {
        issues
            .into_iter()
            .map(|(key, message, hint)| ctx.node.error(ctx.node.key_at(key), message).hint(hint))
            .collect::<Vec<_>>()
    });
    let connection = connection?;
    let mut missing = Vec::new();
    let mut file = |key: &str, path: &Path| -> PathBuf {
        let resolved = ctx.resolve(path);
        if !resolved.is_file() {
            missing.push(
                ctx.node
                    .error(
                        ctx.node.key_at(key),
                        format!("no such file: {}", resolved.display()),
                    )
                    .hint(if key == "ca_file" {
                        "give the PEM file of the CA that signed the hub's or the IoT Edge \
                         gateway's certificate (relative paths start at the pipeline file's folder), \
                         or remove `ca_file` to use the system's trusted roots"
                    } else {
                        "give the device's PEM certificate and key (relative paths start at \
                         the pipeline file's folder)"
                    }),
            );
        }
        resolved
    };
    let ca_file = config.ca_file.as_deref().map(|p| file("ca_file", p));
    let x509 = config.x509.as_ref().map(|x| X509Files {
        cert: file("x509", &x.cert),
        key: file("x509", &x.key),
    });
    if !missing.is_empty() {
        return Err(missing);
    }
    let mut options = DeviceClientOptions::new(connection);
    options.x509 = x509;
    options.host = config.host.clone();
    options.port = config.port;
    options.ca_file = ca_file;
    options.token_ttl = config.token_ttl.0;
    options.keep_alive = config.keep_alive.0;
    options.reconnect_min = config.reconnect_min.0;
    options.reconnect_max = config.reconnect_max.0;
    Ok(IotHubSink {
        options,
        encoder: RecordEncoder::new(schema),
        spool: config.spool.as_deref().map(|p| ctx.resolve(p)),
        spool_at: ctx.node.key_at("spool"),
        config,
    })
}

/// A planned `iothub` sink.
pub struct IotHubSink {
    config: IotHubConfig,
    options: DeviceClientOptions,
    encoder: RecordEncoder,
    spool: Option<PathBuf>,
    spool_at: smartgrid_runtime::Location,
}

impl IotHubSink {
    fn open_outbox(&self) -> Result<Outbox, StartError> {
        let Some(dir) = &self.spool else {
            return Ok(Outbox::new(Box::new(MemoryStore::new(
                self.config.outbox_max_bytes,
            ))));
        };
        let spool = Spool::open(
            dir,
            SpoolOptions {
                max_bytes: self.config.outbox_max_bytes,
                // Dropping the oldest would renumber the outbox; refuse new ones.
                when_full: WhenFull::Backpressure,
                ..SpoolOptions::default()
            },
        )
        .map_err(StartError::other)?;
        if !spool.is_empty() {
            tracing::info!(
                messages = spool.len(),
                "the IoT Hub outbox holds messages of an earlier run; they go first"
            );
        }
        Ok(Outbox::new(Box::new(spool)))
    }
}

/// The uplink of a running `iothub` sink (in the process of worker 0, which owns the
/// connection and the outbox, so two processes never contend for the spool folder).
pub struct IotHubState {
    tx: Option<Sender<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Node for IotHubSink {
    const KIND: &'static str = "iothub";
    const SUMMARY: &'static str = "sink: send readings to Azure IoT Hub as JSON batches (QoS 1, durable outbox, SAS or X.509)";
    const INPUTS: Inputs = Inputs::One(Routing::Any);

    type Config = IotHubConfig;

    type State = IotHubState;

    fn plan(config: IotHubConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let schema = ctx.readings_input()?;
        let planned = plan_iothub(config, &schema, ctx);
        ctx.keep(planned)
    }

    fn output(&self) -> Option<PortType> {
        None
    }

    fn resources(&self) -> Vec<Claim> {
        self.spool
            .iter()
            .map(|dir| Claim {
                resource: Resource::Directory(dir.clone()),
                at: self.spool_at,
            })
            .collect()
    }

    fn start(&self, ctx: &StartContext<'_>) -> Result<IotHubState, StartError> {
        if ctx.process_index != 0 {
            return Ok(IotHubState {
                tx: None,
                thread: None,
            });
        }
        let outbox = self.open_outbox()?;
        let client =
            DeviceClient::connect(self.options.clone(), outbox).map_err(StartError::other)?;
        if let Err(e) = client.wait_connected(self.config.connect_timeout.0) {
            if self.spool.is_none() {
                return Err(StartError::other(format!(
                    "the IoT Hub is not reachable ({e}), and without a `spool` its messages \
                     would only be kept in memory: set `spool` to start anyway, or check the \
                     host and the network"
                )));
            }
            tracing::warn!(node = %ctx.node, "the IoT Hub is not reachable yet ({e}); messages wait in the spool");
        }
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CHUNKS);
        let node = ctx.node.to_string();
        let worker = UplinkThread {
            client,
            rx,
            batcher: Batcher::new(self.config.max_message_bytes, self.config.flush_interval.0),
            properties: self.config.properties.clone().into_iter().collect(),
            node: node.clone(),
            messages: ctx.counter("messages"),
            dropped: ctx.counter("dropped"),
            shutdown_timeout: self.config.shutdown_timeout.0,
            durable: self.spool.is_some(),
        };
        let thread = thread::Builder::new()
            .name(format!("iothub-uplink-{node}"))
            .spawn(move || worker.run())
            .map_err(|source| StartError::Io {
                context: "cannot start the IoT Hub uplink thread".into(),
                source,
            })?;
        Ok(IotHubState {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn render<'s>(
        &self,
        state: &IotHubState,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        let input = ctx.single_readings(inputs);
        let mut uplink = state
            .tx
            .clone()
            .filter(|_| ctx.worker == 0)
            .map(|tx| Uplink {
                tx: Some(tx),
                overflow: Vec::new(),
                node: ctx.node.to_string(),
            });
        let encoder = self.encoder.clone();
        let records = ctx.counter("records");
        input.sink(Exchange::new(|_| 0), ctx.node, move |(input, frontier)| {
            let mut chunk = Vec::new();
            input.for_each(|_time, data| {
                chunk.extend(data.iter().map(|reading| encoder.encode(reading)));
            });
            records.add(chunk.len() as u64);
            if let Some(link) = uplink.as_mut() {
                link.send(chunk);
            }
            if frontier.is_empty()
                && let Some(link) = uplink.take()
            {
                link.close();
            }
        });
        None
    }

    /// Wait until the uplink thread has sent what it holds (within `shutdown_timeout`).
    fn finish(&self, mut state: IotHubState, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        // The thread ends when every sender is gone: worker 0's closed at the end of its
        // input, this one now.
        drop(state.tx.take());
        match state.thread.take().map(JoinHandle::join) {
            Some(Err(_)) => Err(StartError::other("the IoT Hub uplink thread panicked")),
            _ => Ok(()),
        }
    }
}

/// Worker 0's end of the uplink thread.
struct Uplink {
    tx: Option<Sender<Vec<String>>>,
    /// Records the channel had no room for yet (sent with the next activation).
    overflow: Vec<String>,
    node: String,
}

impl Uplink {
    /// Hands records to the uplink thread without blocking.
    fn send(&mut self, mut chunk: Vec<String>) {
        if self.overflow.is_empty() {
            self.overflow = chunk;
        } else {
            self.overflow.append(&mut chunk);
        }
        if self.overflow.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else { return };
        match tx.try_send(std::mem::take(&mut self.overflow)) {
            Ok(()) => {}
            Err(TrySendError::Full(back)) => self.overflow = back,
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!(node = %self.node, "the IoT Hub uplink has stopped; records are lost");
                self.tx = None;
            }
        }
    }

    /// The input ended: hand over the rest; the thread sends and flushes it and is
    /// joined when the node finishes.
    fn close(mut self) {
        if let Some(tx) = self.tx.take()
            && !self.overflow.is_empty()
        {
            let _ = tx.send(std::mem::take(&mut self.overflow));
        }
    }
}

struct UplinkThread {
    client: DeviceClient,
    rx: Receiver<Vec<String>>,
    batcher: Batcher,
    properties: Vec<(String, String)>,
    node: String,
    messages: Counter,
    dropped: Counter,
    shutdown_timeout: Duration,
    durable: bool,
}

impl UplinkThread {
    fn run(mut self) {
        let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let reported = serde_json::json!({
            "smartgrid": {"version": env!("CARGO_PKG_VERSION"), "started": started}
        });
        if let Err(e) = self.client.report_properties(&reported) {
            tracing::warn!(node = %self.node, "cannot report properties: {e}");
        }
        let events = self.client.events().clone();
        let mut full_reported = false;
        loop {
            let wait = self.batcher.deadline().map_or(Duration::from_secs(1), |d| {
                d.saturating_duration_since(Instant::now())
            });
            crossbeam_channel::select! {
                recv(self.rx) -> chunk => match chunk {
                    Ok(chunk) => {
                        for record in chunk {
                            match self.batcher.push(&record, Instant::now()) {
                                Ok(Some(message)) => self.send(&message, &mut full_reported),
                                Ok(None) => {}
                                Err(e) => {
                                    self.dropped.inc();
                                    tracing::error!(node = %self.node, "{e}");
                                }
                            }
                        }
                    }
                    Err(_) => break,
                },
                recv(events) -> event => {
                    if let Ok(event) = event {
                        self.log_event(&event);
                    }
                }
                default(wait) => {}
            }
            if let Some(message) = self.batcher.take_due(Instant::now()) {
                self.send(&message, &mut full_reported);
            }
        }
        if let Some(message) = self.batcher.take() {
            self.send(&message, &mut full_reported);
        }
        while let Ok(event) = events.try_recv() {
            self.log_event(&event);
        }
        let pending = self.client.stats().outbox_pending;
        match self.client.close(self.shutdown_timeout) {
            Ok(()) => tracing::info!(node = %self.node, "IoT Hub: everything acknowledged"),
            Err(e) if self.durable => tracing::warn!(
                node = %self.node,
                "IoT Hub: {e}; unacknowledged messages stay in the spool for the next run"
            ),
            Err(e) => tracing::error!(
                node = %self.node,
                pending,
                "IoT Hub: {e}; messages not acknowledged are lost (set `spool` to keep them)"
            ),
        }
    }

    fn send(&self, message: &str, full_reported: &mut bool) {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match self.client.send_event(message.as_bytes(), &properties) {
            Ok(_) => {
                self.messages.inc();
                *full_reported = false;
            }
            Err(e) => {
                self.dropped.inc();
                if !*full_reported {
                    tracing::error!(node = %self.node, "IoT Hub message dropped: {e}");
                    *full_reported = true;
                }
            }
        }
    }

    fn log_event(&self, event: &CloudEvent) {
        match event {
            CloudEvent::Message(m) => tracing::info!(
                node = %self.node,
                properties = ?m.properties,
                bytes = m.payload.len(),
                "IoT Hub cloud-to-device message"
            ),
            CloudEvent::Desired(p) => tracing::info!(
                node = %self.node,
                version = ?p.version,
                patch = %p.patch,
                "IoT Hub desired properties changed"
            ),
            CloudEvent::TwinResponse(r) if r.status >= 400 => tracing::warn!(
                node = %self.node,
                status = r.status,
                rid = %r.rid,
                "IoT Hub refused a twin request"
            ),
            CloudEvent::TwinResponse(r) => {
                tracing::debug!(node = %self.node, status = r.status, rid = %r.rid, "twin response");
            }
        }
    }
}
