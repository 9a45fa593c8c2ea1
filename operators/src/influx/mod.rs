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
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use smartgrid_runtime::{
    AnyStream, Claim, Diagnostic, Inputs, Node, PlanContext, PortType, RenderContext, Resource,
    Routing, Schema, StartContext, StartError,
};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;

use crate::sink::format::{Encoder, Format};
use crate::spool::{Spool, SpoolOptions};
use client::Client;
use config::{ApiKey, CREDENTIAL_KEYS, Credentials, InfluxConfig, RetryKey, SpoolKey};
use writer::{Counters, Msg, Settings, Writer};

fn plan_influx(schema: &Schema, ctx: &PlanContext<'_>) -> Result<InfluxSink, Vec<Diagnostic>> {
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
            .select(|k| !CREDENTIAL_KEYS.contains(&k) && !["api", "spool", "retry"].contains(&k))
            .settings::<InfluxConfig>(),
    );
    let encoder = config.as_ref().map(|c| {
        crate::sink::encoder(
            ctx,
            schema,
            Format::LineProtocol,
            c.precision,
            c.measurement.clone(),
            c.tags.clone(),
        )
    });
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
    Ok(InfluxSink {
        encoder,
        client,
        spool_at: ctx.node.key_at("spool"),
        dead_letter_at: ctx.node.key_at("dead_letter"),
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
    })
}

/// The value, or its diagnostics added to `problems`.
fn keep<T>(problems: &mut Vec<Diagnostic>, result: Result<T, Vec<Diagnostic>>) -> Option<T> {
    result.map_err(|e| problems.extend(e)).ok()
}

/// A planned `influx` sink.
pub struct InfluxSink {
    encoder: Encoder,
    client: Client,
    spool_dir: PathBuf,
    spool_at: smartgrid_runtime::Location,
    spool_options: SpoolOptions,
    dead_letter: PathBuf,
    dead_letter_at: smartgrid_runtime::Location,
    queue: usize,
    settings: Settings,
}

/// The writer thread of a running `influx` sink, in the process of worker 0 (which
/// every reading is sent to).
pub struct InfluxState {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
}

/// Send lines to the writer once this many bytes are encoded (or the activation ends).
const CHUNK_BYTES: usize = 256 * 1024;

impl Node for InfluxSink {
    const KIND: &'static str = "influx";
    const SUMMARY: &'static str = "sink: InfluxDB v2/v1 write API (batches, retries with backoff, on-disk spool, dead letters)";
    const INPUTS: Inputs = Inputs::One(Routing::Any);
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&[]);

    /// The settings are read in groups by [`plan_influx`], so that one bad value does not
    /// hide the others.
    type Config = serde::de::IgnoredAny;

    type State = InfluxState;

    fn plan(_: serde::de::IgnoredAny, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let schema = ctx.readings_input()?;
        let planned = plan_influx(&schema, ctx);
        ctx.keep(planned)
    }

    fn output(&self) -> Option<PortType> {
        None
    }

    fn resources(&self) -> Vec<Claim> {
        vec![
            Claim {
                resource: Resource::Directory(self.spool_dir.clone()),
                at: self.spool_at,
            },
            Claim {
                resource: Resource::FileWritten(self.dead_letter.clone()),
                at: self.dead_letter_at,
            },
        ]
    }

    /// Open the spool and start the writer thread.
    fn start(&self, ctx: &StartContext<'_>) -> Result<InfluxState, StartError> {
        if ctx.process_index != 0 {
            return Ok(InfluxState {
                tx: None,
                thread: None,
            });
        }
        let spool =
            Spool::open(&self.spool_dir, self.spool_options.clone()).map_err(StartError::other)?;
        let counters = Counters {
            written: ctx.counter("written"),
            spooled: ctx.counter("spooled"),
            dead_letters: ctx.counter("dead_letters"),
            dropped: ctx.counter("dropped"),
            failures: ctx.counter("failures"),
        };
        let writer = Writer::new(
            ctx.node.to_string(),
            self.client.clone(),
            spool,
            self.dead_letter.clone(),
            self.settings.clone(),
            counters,
        )
        .with_shutdown(ctx.shutdown.clone());
        let (tx, rx) = crossbeam_channel::bounded(self.queue);
        let thread = std::thread::Builder::new()
            .name(format!("influx-{}", ctx.node))
            .spawn(move || writer.run(rx))
            .map_err(|source| StartError::Io {
                context: "cannot start the writer thread".into(),
                source,
            })?;
        Ok(InfluxState {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn render<'s>(
        &self,
        state: &InfluxState,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        let input = ctx.single_readings(inputs);
        // Every reading goes to worker 0; only there is a writer.
        let mut tx = state.tx.clone().filter(|_| ctx.worker == 0);
        let encoder = self.encoder.clone();
        let node = ctx.node.to_string();
        let mut text = String::new();
        let mut points = 0usize;
        input.sink(Exchange::new(|_| 0), ctx.node, move |(input, frontier)| {
            let Some(sender) = &tx else {
                input.for_each(|_, _| {});
                return;
            };
            let send = |text: &mut String, points: &mut usize| {
                let msg = Msg::Lines {
                    text: std::mem::take(text).into_bytes(),
                    points: std::mem::take(points),
                };
                // Blocks while the queue is full: backpressure on the dataflow.
                if sender.send(msg).is_err() {
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
            if frontier.is_empty() {
                // The input ended (sources stopped, e.g. on SIGTERM): the writer
                // delivers or spools the rest, and the node's finish waits for it.
                let _ = sender.send(Msg::Close);
                tx = None;
            }
        });
        None
    }

    fn finish(&self, mut state: InfluxState, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        // The writer drains and stops when every sender is gone: worker 0's at the end
        // of its input, this one now.
        drop(state.tx.take());
        match state.thread.take().map(JoinHandle::join) {
            Some(Err(_)) => Err(StartError::other("the influx writer panicked")),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod writer_tests;
