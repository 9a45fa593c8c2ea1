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
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::{
    AnyStream, Arity, Diagnostic, NodeOperator, OperatorFactory, PlanContext, PortType,
    RenderContext, RenderError,
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

/// The `iothub` factory.
pub struct IotHubSinkFactory;

impl OperatorFactory for IotHubSinkFactory {
    fn kind(&self) -> &'static str {
        "iothub"
    }

    fn summary(&self) -> &'static str {
        "sink: send readings to Azure IoT Hub as JSON batches (QoS 1, durable outbox, SAS or X.509)"
    }

    fn arity(&self) -> Arity {
        Arity::One
    }

    fn plan(&self, ctx: &PlanContext<'_>) -> Result<Arc<dyn NodeOperator>, Vec<Diagnostic>> {
        let config: IotHubConfig = ctx.node.settings()?;
        let schema = ctx.readings_input();
        let connection = config.validate().map_err(|issues| {
            issues
                .into_iter()
                .map(|(key, message, hint)| {
                    ctx.node.error(ctx.node.key_at(key), message).hint(hint)
                })
                .collect::<Vec<_>>()
        });
        let (schema, connection) = match (schema, connection) {
            (Ok(s), Ok(c)) => (s, c),
            (s, c) => {
                return Err(s.err().into_iter().chain(c.err()).flatten().collect());
            }
        };
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
        Ok(Arc::new(IotHubSink {
            options,
            encoder: RecordEncoder::new(&schema),
            spool: config.spool.as_deref().map(|p| ctx.resolve(p)),
            config,
        }))
    }
}

struct IotHubSink {
    config: IotHubConfig,
    options: DeviceClientOptions,
    encoder: RecordEncoder,
    spool: Option<PathBuf>,
}

impl IotHubSink {
    fn open_outbox(&self) -> Result<Outbox, RenderError> {
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
        .map_err(|e| RenderError::Other(e.to_string()))?;
        if !spool.is_empty() {
            tracing::info!(
                messages = spool.len(),
                "the IoT Hub outbox holds messages of an earlier run; they go first"
            );
        }
        Ok(Outbox::new(Box::new(spool)))
    }
}

impl NodeOperator for IotHubSink {
    fn output(&self) -> Option<PortType> {
        None
    }

    fn render<'s>(
        &self,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Result<Option<AnyStream<'s>>, RenderError> {
        let input = AnyStream::single_readings(inputs)?;
        // Worker 0 (of the whole cluster: one process) owns the connection and the
        // outbox, so two processes never contend for the spool folder.
        let mut uplink = if ctx.worker == 0 {
            Some(Uplink::spawn(self, ctx, self.open_outbox()?)?)
        } else {
            None
        };
        let encoder = self.encoder.clone();
        let records = ctx.process.metrics.counter(format!("{}.records", ctx.node));
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
                link.finish();
            }
        });
        Ok(None)
    }
}

/// Worker 0's end of the uplink thread.
struct Uplink {
    tx: Option<Sender<Vec<String>>>,
    /// Records the channel had no room for yet (sent with the next activation).
    overflow: Vec<String>,
    thread: Option<JoinHandle<()>>,
    node: String,
}

impl Uplink {
    fn spawn(
        sink: &IotHubSink,
        ctx: &RenderContext<'_>,
        outbox: Outbox,
    ) -> Result<Self, RenderError> {
        let client = DeviceClient::connect(sink.options.clone(), outbox)
            .map_err(|e| RenderError::Other(e.to_string()))?;
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CHUNKS);
        let metrics = &ctx.process.metrics;
        let worker = UplinkThread {
            client,
            rx,
            batcher: Batcher::new(sink.config.max_message_bytes, sink.config.flush_interval.0),
            properties: sink.config.properties.clone().into_iter().collect(),
            node: ctx.node.to_string(),
            messages: metrics.counter(format!("{}.messages", ctx.node)),
            dropped: metrics.counter(format!("{}.dropped", ctx.node)),
            shutdown_timeout: sink.config.shutdown_timeout.0,
            durable: sink.spool.is_some(),
        };
        let thread = thread::Builder::new()
            .name(format!("iothub-uplink-{}", ctx.node))
            .spawn(move || worker.run())
            .map_err(|source| RenderError::Io {
                context: "cannot start the IoT Hub uplink thread".into(),
                source,
            })?;
        Ok(Uplink {
            tx: Some(tx),
            overflow: Vec::new(),
            thread: Some(thread),
            node: ctx.node.to_string(),
        })
    }

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

    /// The input ended: hand over the rest, let the thread send and flush, wait for it.
    fn finish(mut self) {
        if let Some(tx) = self.tx.take()
            && !self.overflow.is_empty()
        {
            let _ = tx.send(std::mem::take(&mut self.overflow));
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(node = %self.node, "the IoT Hub uplink thread panicked");
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
