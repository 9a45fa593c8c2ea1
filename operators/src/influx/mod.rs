//! `influx` sink: readings as line protocol to InfluxDB's v2 or v1 write API (or any
//! server speaking it, such as VictoriaMetrics), batched, retried, spooled to disk while
//! the server is away, and drained on shutdown.
//!
//! ```yaml
//! store:
//!   type: influx
//!   input: means_1m
//!   url: http://127.0.0.1:8086
//!   api: v2                    # v2 (default) | v1
//!   org: home                  # v2
//!   bucket: energy             # v2
//!   token: ${INFLUX_TOKEN}     # v2; never logged
//!   # db: energy               # v1 (with rp:, username:, password: ${INFLUX_PASSWORD})
//!   precision: ms              # s | ms | us | ns
//!   tags: { site: home }
//!   batch_size: 5000
//!   flush_interval: 1s
//!   spool: { dir: data/spool/store, max_size: 1GiB, when_full: backpressure }
//! ```
//!
//! Worker 0 encodes every reading (all are routed there) and hands the lines to a writer
//! thread through a bounded channel (when it is full the dataflow waits). The writer
//! ([`writer`]) batches by size and delay, sends with [`client`], and keeps what the
//! server did not accept in a [`crate::spool::Spool`], acknowledging a spooled batch
//! only after a 2xx answer.

pub mod client;
pub mod config;
pub mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use smartgrid_runtime::{
    AnyStream, Arity, Diagnostic, NodeOperator, OperatorFactory, PlanContext, PortType,
    RenderContext, RenderError,
};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use crate::sink::format::{Encoder, Format};
use crate::spool::{Spool, SpoolOptions};
use client::Client;
use config::{ApiKey, CREDENTIAL_KEYS, Credentials, InfluxConfig, RetryKey, SpoolKey};
use writer::{Counters, Msg, Settings, Writer};

/// The `influx` sink factory.
pub struct InfluxSinkFactory;

impl OperatorFactory for InfluxSinkFactory {
    fn kind(&self) -> &'static str {
        "influx"
    }

    fn summary(&self) -> &'static str {
        "sink: InfluxDB v2/v1 write API (batches, retries with backoff, on-disk spool, dead letters)"
    }

    fn arity(&self) -> Arity {
        Arity::One
    }

    fn plan(&self, ctx: &PlanContext<'_>) -> Result<Arc<dyn NodeOperator>, Vec<Diagnostic>> {
        // Groups read apart, so that one bad value does not hide the others.
        let node_spec = ctx.node;
        let group = |keys: &[&str]| node_spec.select(|k| keys.contains(&k));
        let mut problems: Vec<Diagnostic> = Vec::new();
        let api = keep(
            &mut problems,
            group(&["api"]).settings::<ApiKey>().map(|a| a.api),
        );
        let credentials = keep(
            &mut problems,
            group(&CREDENTIAL_KEYS).settings::<Credentials>(),
        );
        let spool = keep(
            &mut problems,
            group(&["spool"]).settings::<SpoolKey>().map(|s| s.spool),
        );
        let retry = keep(
            &mut problems,
            group(&["retry"]).settings::<RetryKey>().map(|r| r.retry),
        );
        // The other groups' keys are left out here (a `${VAR}` in them is reported once);
        // InfluxConfig still names them, for the unknown-key hint.
        let config = keep(
            &mut problems,
            node_spec
                .select(|k| {
                    !CREDENTIAL_KEYS.contains(&k) && !["api", "spool", "retry"].contains(&k)
                })
                .settings::<InfluxConfig>(),
        );
        let encoder = match &config {
            Some(c) => keep(
                &mut problems,
                crate::sink::encoder(
                    ctx,
                    Format::LineProtocol,
                    c.precision,
                    c.measurement.clone(),
                    c.tags.clone(),
                ),
            ),
            None => None,
        };
        let endpoint = match &config {
            Some(c) => config::validate(c, api, spool.as_ref(), retry.as_ref())
                .map_err(|issues| {
                    problems.extend(issues.into_iter().map(|(key, message, hint)| {
                        ctx.node.error(ctx.node.key_at(key), message).hint(hint)
                    }))
                })
                .ok(),
            None => None,
        };
        let (
            Some(api),
            Some(credentials),
            Some(spool),
            Some(retry),
            Some(config),
            Some(encoder),
            Some(endpoint),
            true,
        ) = (
            api,
            credentials,
            spool,
            retry,
            config,
            encoder,
            endpoint,
            problems.is_empty(),
        )
        else {
            return Err(problems);
        };
        let node = ctx.node.name.clone();
        let client = Client::new(
            &endpoint,
            api,
            config.org.as_deref(),
            config.bucket.as_deref(),
            config.db.as_deref(),
            config.rp.as_deref(),
            config.precision,
            &credentials,
            config.gzip,
            config.timeout.get(),
        );
        let spool_dir = ctx.resolve(
            &spool
                .dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("data/spool").join(ctx.pipeline).join(&node)),
        );
        let dead_letter = ctx.resolve(
            &config
                .dead_letter
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("data/{node}.dead_letters.jsonl"))),
        );
        Ok(Arc::new(InfluxSink {
            encoder,
            client: Mutex::new(Some(client)),
            spool_dir,
            spool_options: SpoolOptions {
                max_bytes: spool.max_size.0,
                when_full: spool.when_full,
                fsync: spool.fsync,
                ..SpoolOptions::default()
            },
            dead_letter,
            queue: config.queue,
            settings: Settings {
                batch_size: config.batch_size,
                flush_interval: config.flush_interval.get(),
                drain_timeout: config.drain_timeout.get(),
                attempts_before_spool: retry.attempts_before_spool,
                retry_initial: retry.initial_delay.get(),
                retry_max: retry.max_delay.get(),
            },
            running: OnceLock::new(),
        }))
    }
}

/// The value, or its diagnostics added to `problems`.
fn keep<T>(problems: &mut Vec<Diagnostic>, result: Result<T, Vec<Diagnostic>>) -> Option<T> {
    result.map_err(|e| problems.extend(e)).ok()
}

/// The writer thread of this process, started by worker 0's render.
struct Running {
    tx: Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct InfluxSink {
    encoder: Encoder,
    client: Mutex<Option<Client>>,
    spool_dir: PathBuf,
    spool_options: SpoolOptions,
    dead_letter: PathBuf,
    queue: usize,
    settings: Settings,
    running: OnceLock<Arc<Running>>,
}

impl InfluxSink {
    /// Open the spool and start the writer thread (once, on the worker that writes).
    fn start_writer(&self, ctx: &RenderContext<'_>) -> Result<Arc<Running>, RenderError> {
        if let Some(running) = self.running.get() {
            return Ok(Arc::clone(running));
        }
        let client = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| RenderError::Other("the influx writer started twice".into()))?;
        let spool = Spool::open(&self.spool_dir, self.spool_options.clone())
            .map_err(|e| RenderError::Other(format!("node `{}`: {e}", ctx.node)))?;
        let metrics = &ctx.process.metrics;
        let node = ctx.node;
        let counters = Counters {
            written: metrics.counter(format!("{node}.written")),
            spooled: metrics.counter(format!("{node}.spooled")),
            dead_letters: metrics.counter(format!("{node}.dead_letters")),
            dropped: metrics.counter(format!("{node}.dropped")),
            failures: metrics.counter(format!("{node}.failures")),
        };
        let writer = Writer::new(
            node.to_string(),
            client,
            spool,
            self.dead_letter.clone(),
            self.settings.clone(),
            counters,
        );
        let (tx, rx) = crossbeam_channel::bounded(self.queue);
        let thread = std::thread::Builder::new()
            .name(format!("influx-{node}"))
            .spawn(move || writer.run(rx))
            .map_err(|source| RenderError::Io {
                context: format!("node `{node}`: cannot start the writer thread"),
                source,
            })?;
        let running = Arc::new(Running {
            tx,
            thread: Mutex::new(Some(thread)),
        });
        let _ = self.running.set(Arc::clone(&running));
        Ok(running)
    }
}

/// Send lines to the writer once this many bytes are encoded (or the activation ends).
const CHUNK_BYTES: usize = 256 * 1024;

impl NodeOperator for InfluxSink {
    fn output(&self) -> Option<PortType> {
        None
    }

    fn render<'s>(
        &self,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Result<Option<AnyStream<'s>>, RenderError> {
        let input = AnyStream::single_readings(inputs)?;
        // Every reading goes to worker 0; only there is a writer.
        let running = if ctx.worker == 0 {
            Some(self.start_writer(ctx)?)
        } else {
            None
        };
        let encoder = self.encoder.clone();
        let node = ctx.node.to_string();
        let mut text = String::new();
        let mut points = 0usize;
        let mut closed = false;
        input.sink(Exchange::new(|_| 0), ctx.node, move |(input, frontier)| {
            let Some(running) = &running else {
                input.for_each(|_, _| {});
                return;
            };
            let send = |text: &mut String, points: &mut usize| {
                let msg = Msg::Lines {
                    text: std::mem::take(text).into_bytes(),
                    points: std::mem::take(points),
                };
                // Blocks while the queue is full: backpressure on the dataflow.
                if running.tx.send(msg).is_err() {
                    tracing::error!(node = %node, "the influx writer has stopped; readings are not stored");
                }
            };
            input.for_each(|_time, data| {
                for reading in data.iter() {
                    encoder.encode(reading, &mut text);
                    points += 1;
                    if text.len() >= CHUNK_BYTES {
                        send(&mut text, &mut points);
                    }
                }
            });
            if points > 0 {
                send(&mut text, &mut points);
            }
            if frontier.is_empty() && !closed {
                closed = true;
                // The input ended (sources stopped, e.g. on SIGTERM): wait until the
                // writer delivered or spooled everything before the process may exit.
                let _ = running.tx.send(Msg::Close);
                let handle = running
                    .thread
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                if let Some(handle) = handle
                    && handle.join().is_err()
                {
                    tracing::error!(node = %node, "the influx writer panicked");
                }
            }
        });
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod writer_tests;
