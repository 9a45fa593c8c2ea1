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
//! thread through the sink toolkit's hand-off ([`crate::delivery`]): when its queue is
//! full the sources pause, no worker waits. The writer ([`writer`]) batches by size and
//! delay, sends with [`client`], and keeps what the server did not accept in a
//! [`crate::spool::Spool`], acknowledging a spooled batch only after a 2xx answer. It
//! takes part in checkpoints once what precedes one is accepted or spooled.

pub mod client;
pub mod config;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

use smartgrid_runtime::{
    AnyStream, Claim, Inputs, Limit, Location, Node, PlanContext, PortType, RenderContext, Routing,
    StartContext, StartError,
};

use crate::delivery::config::{Retry, Spool as SpoolPlan, default_dead_letter};
use crate::delivery::record_letters::per_process;
use crate::delivery::{
    DeadLetters, Lines, SinkCheckpoint, SinkState, render_lines, spool_and_dead_letter_claims,
};
use crate::formats::{Encoder, Format};
use crate::io::TlsConfig;
use crate::spool::Spool;
use client::Client;
use config::{Endpoint, InfluxApi, InfluxConfig};
use writer::{Counters, Settings, Writer};

/// A planned `influx` sink.
pub struct InfluxSink {
    encoder: Encoder,
    endpoint: Endpoint,
    api: InfluxApi,
    precision: crate::formats::Precision,
    gzip: bool,
    timeout: Duration,
    tls: Option<TlsConfig>,
    spool: SpoolPlan,
    spool_at: Location,
    dead_letter: PathBuf,
    dead_letter_at: Location,
    queue: usize,
    settings: Settings,
}

/// The defaults of `retry:` for HTTP requests.
const RETRY: Retry = Retry {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(30),
};

/// The smallest spool that holds a batch.
const MIN_SPOOL: u64 = 1 << 20;

impl Node for InfluxSink {
    const KIND: &'static str = "influx";
    const SUMMARY: &'static str = "sink: InfluxDB v2/v1 write API (batches, retries with backoff, on-disk spool, dead letters)";
    const INPUTS: Inputs = Inputs::One(Routing::Any);
    const LIMITS: &'static [(&'static str, Limit)] = &[
        ("batch_size", Limit::count(1, 100_000)),
        ("flush_interval", Limit::millis_to_seconds(1, 3600)),
        ("timeout", Limit::millis_to_seconds(100, 600)),
        ("queue", Limit::count(1, 65_536)),
        ("drain_timeout", Limit::seconds(0, 3600)),
        ("retry.initial_delay", Limit::millis_to_seconds(1, 3600)),
        ("retry.max_delay", Limit::millis_to_seconds(1, 86400)),
        ("retry.attempts_before_spool", Limit::count(0, 1000)),
        ("spool.max_size", Limit::bytes(0, 1 << 40)),
    ];

    type Config = InfluxConfig;
    type State = SinkState<Lines>;

    /// Every check runs, so that one bad value does not hide the others.
    fn plan(config: InfluxConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let schema = ctx.readings_input()?;
        let endpoint = config::plan_url(&config, ctx);
        let api = config::plan_api(&config, ctx);
        let retry = config.retry.plan(RETRY, ctx);
        let node = ctx.node.name.clone();
        let default_dir =
            ctx.resolve_data(&PathBuf::from("data/spool").join(ctx.pipeline).join(&node));
        let spool = config
            .spool
            .plan(Some(default_dir), 1 << 30, MIN_SPOOL, ctx);
        let tls = config
            .tls
            .as_ref()
            .map(|t| crate::io::plan_tls(t, ctx, "the server's certificate"));
        let encoder = crate::sink::encoder(
            ctx,
            &schema,
            Format::LineProtocol,
            config.precision,
            config.measurement.clone(),
            config.tags.clone(),
        );
        let (endpoint, api, retry, spool) = (endpoint?, api?, retry?, spool?);
        let tls = match tls {
            Some(t) => Some(t?),
            None => None,
        };
        let dead_letter = ctx.resolve_data(
            &config
                .dead_letter
                .clone()
                .unwrap_or_else(|| default_dead_letter(&node)),
        );
        Some(InfluxSink {
            encoder,
            endpoint,
            api,
            precision: config.precision,
            gzip: config.gzip,
            timeout: config.timeout.get(),
            tls,
            spool,
            spool_at: ctx.node.key_at("spool"),
            dead_letter,
            dead_letter_at: ctx.node.key_at("dead_letter"),
            queue: config.queue,
            settings: Settings {
                batch_size: config.batch_size,
                flush_interval: config.flush_interval.get(),
                drain_timeout: config.drain_timeout.get(),
                attempts_before_spool: config.retry.attempts_before_spool.unwrap_or(3),
                retry_initial: retry.initial,
                retry_max: retry.max,
            },
        })
    }

    fn output(&self) -> Option<PortType> {
        None
    }

    fn resources(&self) -> Vec<Claim> {
        spool_and_dead_letter_claims(
            self.spool.dir.as_deref(),
            self.spool_at,
            &self.dead_letter,
            self.dead_letter_at,
        )
    }

    /// Open the spool and start the writer thread, in every process: InfluxDB takes
    /// concurrent writers, so in a cluster each process writes what its own workers
    /// produced, with a spool and a dead-letter file of its own.
    fn start(&self, ctx: &StartContext<'_>) -> Result<Self::State, StartError> {
        let client = Client::new(
            &self.endpoint,
            &self.api,
            self.precision,
            self.gzip,
            self.timeout,
            self.tls.as_ref(),
        )
        .map_err(StartError::other)?;
        let dir = per_process(
            &self.spool.dir.clone().unwrap_or_default(),
            ctx.process_index,
        );
        let mut spool = Spool::open(&dir, self.spool.options()).map_err(StartError::other)?;
        spool.report_to(ctx.gauge("spool_bytes"), ctx.gauge("spool_records"));
        let counters = Counters {
            written: ctx.counter("written"),
            spooled: ctx.counter("spooled"),
            dropped: ctx.counter("dropped"),
            failures: ctx.counter("failures"),
            failing: ctx.gauge("failing"),
        };
        let dead_letters = DeadLetters::new(
            ctx.node,
            per_process(&self.dead_letter, ctx.process_index),
            ctx.counter("dead_letters"),
        );
        let writer = Writer::new(
            ctx.node.to_string(),
            client,
            spool,
            dead_letters,
            self.settings.clone(),
            counters,
        )
        .with_shutdown(ctx.shutdown.clone());
        let checkpoint = Some(SinkCheckpoint::register(ctx));
        Ok(
            SinkState::start(ctx, self.queue, checkpoint, move |inbox| writer.run(inbox))?
                .in_every_process(),
        )
    }

    fn render<'s>(
        &self,
        state: &Self::State,
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        render_lines(
            ctx,
            ctx.single_readings(inputs),
            state,
            self.encoder.clone(),
        );
        None
    }

    /// Wait until the writer has delivered (or spooled) what it holds, within
    /// `drain_timeout`.
    fn finish(&self, state: Self::State, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        state.finish()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod writer_tests;
