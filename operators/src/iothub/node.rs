//! The `iothub` sink node.
//!
//! ```text
//!  timely worker 0 ──JSON records──▶ delivery hand-off ──▶ uplink thread ──▶ DeviceClient
//!  (encodes; never blocks: a full       (chunks per          (Batcher: size or
//!   queue pauses the sources)            activation)          flush_interval; logs C2D
//!                                                             messages and twin patches)
//! ```
//! When the input ends (end of data, SIGINT/SIGTERM drain the dataflow), the last
//! batch is sent and the node's finish waits up to `drain_timeout` for acknowledgements.
//!
//! The outbox is on disk, by default under the pipeline's state directory
//! (`<state_dir>/p0/<node>/outbox`: the process of worker 0 owns it), so a message
//! accepted into it survives restarts and crashes. At a checkpoint mark the open batch
//! goes into the outbox at once, and the mark is taken then: nothing before the
//! checkpoint is only in memory. The outbox resends what the hub did not acknowledge,
//! and a run restored from a checkpoint sends what followed it again, so after a crash
//! delivery is at least once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::{
    AnyStream, Claim, Inputs, Limit, Location, Node, PlanContext, PortType, RenderContext, Routing,
    StartContext, StartError,
};

use super::batch::Batcher;
use super::client::{DeviceClient, DeviceClientOptions, X509Files};
use super::config::IotHubConfig;
use super::events::CloudEvent;
use super::outbox::Outbox;
use crate::delivery::config::{Retry, Spool as SpoolPlan, default_dead_letter};
use crate::delivery::{
    DeadLetters, Inbox, Payload, Reason, Received, SinkCheckpoint, SinkState, render_sink,
    spool_and_dead_letter_claims,
};
use crate::formats::JsonRecord;
use crate::spool::{Spool, WhenFull};

/// The defaults of `retry:` for reconnecting to the hub.
const RETRY: Retry = Retry {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(300),
};

/// The default most bytes of the outbox.
const OUTBOX_BYTES: u64 = 256 << 20;

/// How often the uplink looks at cloud-to-device events while no record comes.
const EVENT_POLL: Duration = Duration::from_millis(100);

/// What the sink's (empty) checkpoint part means.
const FINGERPRINT: &str = "iothub v1";

/// A planned `iothub` sink.
pub struct IotHubSink {
    config: IotHubConfig,
    options: DeviceClientOptions,
    encoder: JsonRecord,
    spool: SpoolPlan,
    spool_at: Location,
    dead_letter: PathBuf,
    dead_letter_at: Location,
    connection_at: Location,
}

impl IotHubSink {
    fn open_outbox(&self, ctx: &StartContext<'_>) -> Result<Outbox, StartError> {
        // The plan always gives one (`spool.dir`, or under the state directory).
        let Some(dir) = &self.spool.dir else {
            return Err(StartError::other("the IoT Hub outbox has no directory"));
        };
        let mut options = self.spool.options();
        // Dropping the oldest would renumber the outbox; refuse new ones (the plan
        // refuses `when_full: drop_oldest`).
        options.when_full = WhenFull::Backpressure;
        let mut spool = Spool::open(dir, options).map_err(StartError::other)?;
        spool.report_to(ctx.gauge("outbox_bytes"), ctx.gauge("outbox_records"));
        if !spool.is_empty() {
            tracing::info!(
                messages = spool.len(),
                "the IoT Hub outbox holds messages of an earlier run; they go first"
            );
        }
        Ok(Outbox::new(Box::new(spool)))
    }
}

/// The device connection `options` opens, as a claimed resource: IoT Hub keeps one
/// connection per device (a second one knocks the first off), so two nodes connecting
/// as the same device are refused when the pipeline is validated.
pub(crate) fn device_claim(options: &DeviceClientOptions, at: Location) -> Claim {
    let host = options
        .host
        .clone()
        .unwrap_or_else(|| options.connection.connect_host().to_string());
    Claim {
        resource: smartgrid_runtime::Resource::MqttClientId {
            broker: format!(
                "IoT Hub {host}:{} (one connection per device)",
                options.port
            ),
            client_id: options.connection.client_id(),
        },
        at,
    }
}

/// Files the plan checks exist: the device's certificate and key.
pub(crate) fn device_files(
    config: &IotHubConfig,
    ctx: &mut PlanContext<'_>,
) -> Option<Option<X509Files>> {
    let Some(x509) = &config.x509 else {
        return Some(None);
    };
    let mut ok = true;
    let mut file = |ctx: &mut PlanContext<'_>, path: &Path| -> PathBuf {
        let resolved = ctx.resolve(path);
        if !resolved.is_file() {
            ctx.error_at_key("x509", format!("no such file: {}", resolved.display()))
                .with_hint(
                    "give the device's PEM certificate and key (relative paths start at the \
                 pipeline file's folder)",
                );
            ok = false;
        }
        resolved
    };
    let files = X509Files {
        cert: file(ctx, &x509.cert),
        key: file(ctx, &x509.key),
    };
    if ok {
        // They exist: they must also hold a certificate and a key.
        let pair = crate::io::TlsConfig {
            ca_file: None,
            client_cert: Some(files.cert.clone()),
            client_key: Some(files.key.clone()),
        };
        if let Err(errors) = crate::io::mqtt::TlsOptions::load(&pair) {
            for error in errors {
                if let crate::io::mqtt::MqttError::TlsPem { path, message, .. } = error {
                    ctx.error_at_key("x509", format!("{} {message}", path.display()))
                        .with_hint("give the device's PEM certificate and its unencrypted key");
                    ok = false;
                }
            }
        }
    }
    ok.then_some(Some(files))
}

impl Node for IotHubSink {
    const KIND: &'static str = "iothub";
    const SUMMARY: &'static str = "sink: send readings to Azure IoT Hub as JSON batches (QoS 1, durable outbox, SAS or X.509)";
    const INPUTS: Inputs = Inputs::One(Routing::Any);
    const LIMITS: &'static [(&'static str, Limit)] = &[
        ("token_ttl", Limit::seconds(60, 31536000)),
        ("flush_interval", Limit::millis_to_seconds(1, 3600)),
        ("queue", Limit::count(1, 65_536)),
        ("drain_timeout", Limit::seconds(0, 3600)),
        ("connect_timeout", Limit::seconds(0, 600)),
        ("retry.initial_delay", Limit::millis_to_seconds(1, 3600)),
        ("retry.max_delay", Limit::millis_to_seconds(1, 86400)),
        ("spool.max_size", Limit::bytes(0, 1 << 40)),
    ];
    const RENAMED_KEYS: &'static [(&'static str, &'static str)] = &[
        ("shutdown_timeout", "drain_timeout"),
        ("reconnect_min", "retry.initial_delay"),
        ("reconnect_max", "retry.max_delay"),
        ("outbox_max_bytes", "spool.max_size"),
        ("ca_file", "tls.ca_file"),
    ];

    type Config = IotHubConfig;
    type State = SinkState<Vec<String>>;

    fn plan(config: IotHubConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let schema = ctx.readings_input()?;
        let connection = config.validate(&mut |key, message, hint| {
            ctx.error_at_key(key, message).with_hint(hint);
        });
        let retry = config.retry.plan(RETRY, ctx);
        let min_outbox = config.max_message_bytes as u64 * 4;
        // Under the state directory of process 0, which owns the outbox.
        let outbox = ctx
            .state_dir()
            .join("p0")
            .join(&ctx.node.name)
            .join("outbox");
        let spool = config
            .spool
            .plan(Some(outbox), OUTBOX_BYTES, min_outbox, ctx);
        let ca_hint = "the hub's or the IoT Edge gateway's certificate";
        let tls = match &config.tls {
            Some(t) => crate::io::plan_tls(t, ctx, ca_hint).map(Some),
            None => Some(None),
        };
        let x509 = device_files(&config, ctx);
        let (connection, retry, spool, tls, x509) = (connection?, retry?, spool?, tls?, x509?);
        let mut options = DeviceClientOptions::new(connection);
        options.x509 = x509;
        options.host = config.host.clone();
        options.port = config.port;
        options.ca_file = tls.and_then(|t| t.ca_file);
        options.token_ttl = config.token_ttl.0;
        options.keep_alive = config.keep_alive.0;
        options.reconnect_min = retry.initial;
        options.reconnect_max = retry.max;
        let node = ctx.node.name.clone();
        let dead_letter = ctx.resolve_data(
            &config
                .dead_letter
                .clone()
                .unwrap_or_else(|| default_dead_letter(&node)),
        );
        Some(IotHubSink {
            options,
            encoder: JsonRecord::new(&schema),
            spool,
            spool_at: ctx.node.key_at("spool"),
            dead_letter,
            dead_letter_at: ctx.node.key_at("dead_letter"),
            connection_at: ctx.node.key_at("connection_string"),
            config,
        })
    }

    fn output(&self) -> Option<PortType> {
        None
    }

    fn resources(&self) -> Vec<Claim> {
        let mut claims = spool_and_dead_letter_claims(
            self.spool.dir.as_deref(),
            self.spool_at,
            &self.dead_letter,
            self.dead_letter_at,
        );
        claims.push(device_claim(&self.options, self.connection_at));
        claims
    }

    /// Connect (in the process of worker 0, which owns the connection and the outbox,
    /// so two processes never contend for the spool folder) and start the uplink thread.
    fn start(&self, ctx: &StartContext<'_>) -> Result<Self::State, StartError> {
        if ctx.process_index != 0 {
            return Ok(SinkState::idle());
        }
        let outbox = self.open_outbox(ctx)?;
        let client =
            DeviceClient::connect(self.options.clone(), outbox).map_err(StartError::other)?;
        client.report_connection_to(ctx.gauge("connected"));
        if let Err(e) = client.wait_connected(self.config.connect_timeout.0) {
            tracing::warn!(node = %ctx.node, "the IoT Hub is not reachable yet ({e}); messages wait in the outbox");
        }
        let node = ctx.node.to_string();
        let uplink = UplinkThread {
            client,
            batcher: Batcher::new(self.config.max_message_bytes, self.config.flush_interval.0),
            properties: self.config.properties.clone().into_iter().collect(),
            messages: ctx.counter("messages"),
            dropped: ctx.counter("dropped"),
            dead_letters: DeadLetters::new(
                &node,
                self.dead_letter.clone(),
                ctx.counter("dead_letters"),
            ),
            node,
            drain_timeout: self.config.drain_timeout.0,
        };
        let checkpoint = Some(SinkCheckpoint::register(ctx));
        SinkState::start(ctx, self.config.queue, checkpoint, move |inbox| {
            uplink.run(inbox)
        })
    }

    fn render<'s>(
        &self,
        state: &Self::State,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        let encoder = self.encoder.clone();
        render_sink(
            ctx,
            ctx.single_readings(inputs),
            state,
            move |reading, chunk: &mut Vec<String>| {
                chunk.push(encoder.encode(reading));
            },
        );
        None
    }

    /// Wait until the uplink thread has sent what it holds (within `drain_timeout`).
    fn finish(&self, state: Self::State, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        state.finish()
    }
}

struct UplinkThread {
    client: DeviceClient,
    batcher: Batcher,
    properties: Vec<(String, String)>,
    node: String,
    messages: Counter,
    dropped: Counter,
    dead_letters: DeadLetters,
    drain_timeout: Duration,
}

impl UplinkThread {
    fn run(mut self, inbox: Inbox<Vec<String>>) {
        let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let reported = serde_json::json!({
            "smartgrid": {"version": env!("CARGO_PKG_VERSION"), "started": started}
        });
        if let Err(e) = self.client.report_properties(&reported) {
            tracing::warn!(node = %self.node, "cannot report properties: {e}");
        }
        let events = self.client.events().clone();
        loop {
            let wait = self.batcher.deadline().map_or(EVENT_POLL, |d| {
                d.saturating_duration_since(Instant::now()).min(EVENT_POLL)
            });
            match inbox.recv_timeout(wait) {
                Received::Chunk(records) => {
                    for record in records {
                        match self.batcher.push(&record, Instant::now()) {
                            Ok(Some(message)) => self.send(&message),
                            Ok(None) => {}
                            Err(e) => {
                                self.dropped.inc();
                                let error = e.to_string();
                                self.dead_letters.write(
                                    Reason::Undeliverable,
                                    &error,
                                    1,
                                    Payload::Message(record.as_bytes()),
                                );
                            }
                        }
                    }
                }
                Received::Mark(mark) => {
                    // Sent early rather than held for `flush_interval`: a record only
                    // in the batcher would be lost by a crash after the checkpoint.
                    if let Some(message) = self.batcher.take() {
                        self.send(&message);
                    }
                    mark.take(FINGERPRINT, &[]);
                }
                Received::Closed => break,
                Received::Timeout => {}
            }
            while let Ok(event) = events.try_recv() {
                self.log_event(&event);
            }
            if let Some(message) = self.batcher.take_due(Instant::now()) {
                self.send(&message);
            }
        }
        if let Some(message) = self.batcher.take() {
            self.send(&message);
        }
        while let Ok(event) = events.try_recv() {
            self.log_event(&event);
        }
        match self.client.close(self.drain_timeout) {
            Ok(()) => tracing::info!(node = %self.node, "IoT Hub: everything acknowledged"),
            Err(e) => tracing::warn!(
                node = %self.node,
                "IoT Hub: {e}; unacknowledged messages stay in the spool for the next run"
            ),
        }
    }

    fn send(&mut self, message: &str) {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match self.client.send_event(message.as_bytes(), &properties) {
            Ok(_) => self.messages.inc(),
            Err(e) => {
                self.dropped.inc();
                let records = serde_json::from_str::<Vec<serde_json::Value>>(message)
                    .map_or(1, |v| v.len() as u64);
                let error = format!("IoT Hub message not queued: {e}");
                self.dead_letters.write(
                    Reason::Undeliverable,
                    &error,
                    records,
                    Payload::Message(message.as_bytes()),
                );
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
