//! Ingest throughput of the `mqtt` source without and with its write-ahead log (group
//! commit, and an fsync per message), against a local mosquitto. Behind the "Ingest
//! with the write-ahead log" figures in BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release -p smartgrid-operators --example wal_bench -- \
//!     --messages 100000 --always-messages 3000 --inflight 20 --rounds 3
//! ```
//!
//! For each variant mosquitto first holds `--messages` queued QoS 1 messages (JSON
//! readings of 1000 sensors, about 50 bytes) for the source's persistent session; then
//! the pipeline `mqtt → decode → window_mean → /dev/null` is started in this process
//! and drains them. The figure is readings decoded per second from the first to the
//! last. The broker lets `--inflight` messages go unacknowledged (mosquitto's
//! `max_inflight_messages`, 20 by default): with a log, a message is acknowledged only
//! once it is synced, so that window bounds a group. The log lives under `--dir`
//! (default: the temp dir), so the figure is that disk's fsync.
//!
//! A benchmark, not a test: it depends on the disk and the machine. One line per run:
//! `variant=… round=… messages=… secs=… msg_per_s=… syncs=… per_sync=…`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use smartgrid_operators::io::mqtt::{
    ClientIdentity, ConnectOptions, Endpoint, Publisher, PublisherOptions, SubscribeOptions,
    spawn_subscriber,
};
use smartgrid_runtime::checkpoint::{Checkpoints, OnStop};
use smartgrid_runtime::context::ProcessContext;
use smartgrid_runtime::liveness::Liveness;
use smartgrid_runtime::metrics::Metrics;
use smartgrid_runtime::pressure::Pressure;
use smartgrid_runtime::render::{Cluster, run};
use smartgrid_runtime::shutdown::Shutdown;
use smartgrid_runtime::spec::{Env, parse_str};
use smartgrid_runtime::state::StateStore;

const WAIT: Duration = Duration::from_secs(30);
/// The longest a variant may take to drain its queue.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);

struct Args {
    messages: u64,
    always_messages: u64,
    inflight: u64,
    rounds: u64,
    dir: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        messages: 100_000,
        always_messages: 3_000,
        inflight: 20,
        rounds: 1,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        if flag == "--dir" {
            args.dir = Some(value.into());
            continue;
        }
        let number = value
            .parse::<u64>()
            .unwrap_or_else(|_| usage(&value))
            .max(1);
        match flag.as_str() {
            "--messages" => args.messages = number,
            "--always-messages" => args.always_messages = number,
            "--inflight" => args.inflight = number,
            "--rounds" => args.rounds = number,
            other => usage(other),
        }
    }
    args
}

fn usage(bad: &str) -> ! {
    eprintln!(
        "wal_bench: bad argument `{bad}`\nusage: wal_bench [--messages N] [--always-messages N] \
         [--inflight N] [--rounds N] [--dir PATH]"
    );
    std::process::exit(2)
}

/// The `wal:` setting of each variant.
const VARIANTS: [(&str, &str); 3] = [
    ("none", ""),
    ("group", "wal: { dir: wal, fsync: group }"),
    ("always", "wal: { dir: wal, fsync: always }"),
];

fn main() {
    let args = parse_args();
    testkit::require_binary("mosquitto");
    let broker = testkit::Mosquitto::start_with(&format!(
        "max_queued_messages 0\nmax_inflight_messages {}",
        args.inflight
    ));
    for round in 1..=args.rounds {
        for (variant, wal) in VARIANTS {
            let messages = if variant == "always" {
                args.always_messages
            } else {
                args.messages
            };
            let dir = match &args.dir {
                Some(dir) => tempfile::tempdir_in(dir),
                None => tempfile::tempdir(),
            }
            .expect("a temporary directory");
            let topic = format!("bench/{variant}{round}");
            let client_id = format!("bench-{variant}-{round}");
            queue(&broker.url(), &client_id, &topic, messages);
            let measured = drain(dir.path(), &broker.url(), &client_id, &topic, wal, messages);
            println!(
                "variant={variant} round={round} inflight={} messages={} secs={:.3} msg_per_s={:.0} syncs={} per_sync={:.1}",
                args.inflight,
                measured.messages,
                measured.secs,
                measured.messages as f64 / measured.secs,
                measured.syncs,
                if measured.syncs == 0 {
                    0.0
                } else {
                    measured.appended as f64 / measured.syncs as f64
                },
            );
        }
    }
}

/// Makes the persistent session of `client_id` (subscribed to `topic/+`), then queues
/// `messages` for it while it is away.
fn queue(url: &str, client_id: &str, topic: &str, messages: u64) {
    let connect = ConnectOptions::new(
        Endpoint::parse(url).expect("the broker's URL"),
        ClientIdentity::new(client_id),
    );
    let mut session = spawn_subscriber(
        &connect,
        &SubscribeOptions::new([format!("{topic}/+")]),
        Arc::default(),
    )
    .expect("subscriber");
    session.wait_subscribed(WAIT).expect("subscribed");
    session.stop();
    let publisher =
        Publisher::connect(url, format!("{client_id}-pub"), PublisherOptions::default())
            .expect("publisher");
    for i in 0..messages {
        let sensor = i % 1000;
        let payload = format!(
            r#"{{"s":"m{sensor:04}","t":{},"p":{}.5}}"#,
            1_700_000_000_000 + (i / 1000) * 83,
            i % 97
        );
        publisher
            .publish(
                &format!("{topic}/m{sensor:04}"),
                payload,
                smartgrid_operators::io::mqtt::Qos::AtLeastOnce,
            )
            .expect("publish");
    }
    publisher
        .flush_and_close(DRAIN_LIMIT)
        .expect("the broker took every message");
}

struct Measured {
    messages: u64,
    secs: f64,
    syncs: u64,
    appended: u64,
}

/// Runs the pipeline until it has decoded `messages` readings; the rate from the first.
fn drain(
    dir: &Path,
    url: &str,
    client_id: &str,
    topic: &str,
    wal: &str,
    messages: u64,
) -> Measured {
    let yaml = format!(
        r#"
pipeline: wal-bench
state_dir: state
nodes:
  meters:
    type: mqtt
    url: {url}
    topics: ["{topic}/+"]
    client_id: {client_id}
    {wal}
  readings:
    type: decode
    input: meters
    format: json
    sensor_id: /s
    timestamp: /t
    timestamp_unit: ms
    fields: {{ p: /p }}
  means:
    type: window_mean
    input: readings
    size: 10s
  out:
    type: file
    input: means
    path: /dev/null
    format: json
"#
    );
    let spec = parse_str(&yaml, "bench.yaml", dir.to_path_buf(), Env::Process)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let plan = smartgrid_runtime::plan::plan(&spec, &smartgrid_operators::builtin_registry())
        .unwrap_or_else(|e| panic!("{e}"));
    let plan = Arc::new(plan);
    let shutdown = Shutdown::new();
    let store = StateStore::open(&plan.state_dir, &plan.name, 0, 1).expect("state directory");
    let interval = plan.replayable().then_some(plan.checkpoint_interval);
    let checkpoints = Arc::new(
        Checkpoints::new(store, OnStop::Drain, interval, shutdown.clone()).expect("checkpoints"),
    );
    let metrics = Metrics::default();
    let pressure = Pressure::new();
    let ctx = ProcessContext {
        pipeline: plan.name.clone(),
        base_dir: plan.base_dir.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        liveness: Liveness::new(pressure.clone()),
        pressure,
        checkpoints,
        workers: 1,
        process_index: 0,
        process_count: 1,
        taps: Default::default(),
    };
    let running = thread::spawn(move || run(plan, &Cluster::local(1), ctx));
    let decoded = metrics.counter("readings.readings");
    let deadline = Instant::now() + DRAIN_LIMIT;
    let (first, started) = loop {
        let n = decoded.get();
        if n > 0 {
            break (n, Instant::now());
        }
        assert!(Instant::now() < deadline, "nothing arrived");
        thread::sleep(Duration::from_micros(200));
    };
    while decoded.get() < messages && Instant::now() < deadline {
        thread::sleep(Duration::from_micros(200));
    }
    let secs = started.elapsed().as_secs_f64();
    let measured = Measured {
        messages: decoded.get() - first,
        secs,
        syncs: metrics.counter("meters.wal_syncs").get(),
        appended: metrics.counter("meters.wal_appended").get(),
    };
    shutdown.trigger();
    running
        .join()
        .expect("the run thread")
        .expect("the run ends well");
    measured
}
