//! Throughput of the `influx` sink's writer (batching, gzip, HTTP, spool) against a real
//! server on loopback.
//!
//! ```text
//! cargo bench -p smartgrid-operators --bench influx -- [points] [--url http://127.0.0.1:8428] [--no-gzip] [--discard] [--writers K]
//! ```
//! Without `--url` it starts VictoriaMetrics (`victoria-metrics` must be installed) and
//! also measures the spool: the same points with the server stopped (all spooled), then
//! the replay once it is back. `--discard` sends to a server in this process that reads
//! each request and answers 204 without storing anything: the sink's own ceiling
//! (batching, gzip, HTTP), whatever a database can ingest.

use std::time::{Duration, Instant};

use smartgrid_operators::delivery::{DeadLetters, Handoff, Lines, handoff};
use smartgrid_operators::formats::Precision;
use smartgrid_operators::influx::client::Client;
use smartgrid_operators::influx::config::{InfluxApi, parse_url};
use smartgrid_operators::influx::writer::{Counters, Settings, Writer};
use smartgrid_operators::spool::{Spool, SpoolOptions};
use smartgrid_runtime::metrics::Metrics;

const CHUNK: usize = 5000;

/// Pre-encoded chunks of `points` line-protocol points like a 1 s means window's.
fn chunks(points: usize, hour: u64) -> Vec<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut n = 0;
    for i in 0..points {
        let sensor = i % 1000;
        let t = 1_717_200_000_000u64 + hour * 3_600_000 + (i / 1000) as u64 * 1000;
        let x = i as f64 * 0.001;
        text.push_str(&format!(
            "means,pipeline=bench,sensor_id=sensor{sensor:04} p_l1={:?},p_l2={:?},p_l3={:?},q_l1={:?},q_l2={:?},q_l3={:?} {t}\n",
            230.0 + x, 231.5 - x, 229.25 + x / 2.0, 12.0 + x, 11.0 - x / 3.0, 10.5
        ));
        n += 1;
        if n == CHUNK {
            out.push((std::mem::take(&mut text).into_bytes(), n));
            n = 0;
        }
    }
    if n > 0 {
        out.push((text.into_bytes(), n));
    }
    out
}

struct Sink {
    tx: Handoff<Lines>,
    thread: std::thread::JoinHandle<()>,
    metrics: Metrics,
}

fn start(url: &str, gzip: bool, spool_dir: &std::path::Path) -> Sink {
    let endpoint = parse_url(url).expect("a valid --url");
    let api = InfluxApi::V2 {
        org: "bench".into(),
        bucket: "bench".into(),
        token: None,
    };
    let client = Client::new(
        &endpoint,
        &api,
        Precision::Ms,
        gzip,
        Duration::from_secs(30),
        None,
    )
    .expect("a client");
    let spool = Spool::open(
        spool_dir,
        SpoolOptions {
            max_bytes: 8 << 30,
            ..SpoolOptions::default()
        },
    )
    .expect("open the spool");
    let metrics = Metrics::default();
    let counters = Counters {
        written: metrics.counter("written"),
        spooled: metrics.counter("spooled"),
        dropped: metrics.counter("dropped"),
        failures: metrics.counter("failures"),
        failing: metrics.gauge("failing"),
    };
    let settings = Settings {
        batch_size: CHUNK,
        flush_interval: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(60),
        attempts_before_spool: 1,
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
    };
    let writer = Writer::new(
        "bench".into(),
        client,
        spool,
        DeadLetters::new(
            "bench",
            spool_dir.join("dead.jsonl"),
            metrics.counter("dead_letters"),
        ),
        settings,
        counters,
    );
    let (tx, rx) = handoff(64, &smartgrid_runtime::pressure::Pressure::new());
    let thread = std::thread::spawn(move || writer.run(rx));
    Sink {
        tx,
        thread,
        metrics,
    }
}

/// Hand `text` over, waiting (spinning) while the queue is full: the bench measures the
/// writer, not the hand-off.
fn send(sink: &mut Sink, text: Vec<u8>, points: usize) {
    sink.tx.push(Lines {
        text: String::from_utf8(text).expect("line protocol is UTF-8"),
        records: points,
    });
    while !sink.tx.flush() {
        std::thread::yield_now();
    }
}

fn counter(metrics: &Metrics, name: &str) -> u64 {
    metrics
        .snapshot()
        .into_iter()
        .find(|(k, _)| k == name)
        .map_or(0, |(_, v)| v)
}

fn wait_for(metrics: &Metrics, name: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while counter(metrics, name) < value {
        assert!(
            Instant::now() < deadline,
            "{name} stuck at {}",
            counter(metrics, name)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An HTTP/1.1 server that reads each request's body and answers 204.
fn discard_server() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut stream = stream;
                let mut line = String::new();
                let mut body = Vec::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0usize;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = line.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':')
                            && name.eq_ignore_ascii_case("content-length")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    body.resize(length, 0);
                    if reader.read_exact(&mut body).is_err()
                        || stream
                            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let points: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let gzip = !args.iter().any(|a| a == "--no-gzip");
    let url_arg = args
        .iter()
        .position(|a| a == "--url")
        .and_then(|i| args.get(i + 1).cloned());
    let mut vm = None;
    let discard = args.iter().any(|a| a == "--discard");
    let url = match url_arg {
        Some(url) => url,
        None if discard => discard_server(),
        None => {
            let server = testkit::VictoriaMetrics::start();
            let url = server.url();
            vm = Some(server);
            url
        }
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    println!(
        "influx sink → {url}: {points} points in chunks of {CHUNK}, gzip {}",
        if gzip { "on" } else { "off" }
    );

    // Direct writes, optionally split over several independent writers (`--writers K`),
    // to see what requests in flight at once would gain.
    let writers: usize = args
        .iter()
        .position(|a| a == "--writers")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(1);
    let data = chunks(points, 0);
    let mut sinks: Vec<Sink> = (0..writers)
        .map(|w| start(&url, gzip, &dir.path().join(format!("spool-direct-{w}"))))
        .collect();
    let t0 = Instant::now();
    for (i, (text, n)) in data.into_iter().enumerate() {
        send(&mut sinks[i % writers], text, n);
    }
    let total = || -> u64 { sinks.iter().map(|s| counter(&s.metrics, "written")).sum() };
    while total() < points as u64 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let direct = t0.elapsed();
    for sink in sinks {
        drop(sink.tx);
        sink.thread.join().expect("writer thread");
    }
    println!(
        "  direct:  {:>10.0} points/s ({direct:.2?}, {writers} writer(s))",
        points as f64 / direct.as_secs_f64()
    );

    // The server away: every batch goes to the spool; then it comes back: replay.
    let Some(mut vm) = vm else {
        return;
    };
    vm.stop();
    let data = chunks(points, 1);
    let batches = data.len() as u64;
    let mut sink = start(&url, gzip, &dir.path().join("spool-outage"));
    let t0 = Instant::now();
    for (text, n) in data {
        send(&mut sink, text, n);
    }
    wait_for(&sink.metrics, "spooled", batches);
    let spooled = t0.elapsed();
    vm.server().start();
    let t1 = Instant::now();
    wait_for(&sink.metrics, "written", points as u64);
    let replay = t1.elapsed();
    drop(sink.tx);
    sink.thread.join().expect("writer thread");
    println!(
        "  spooled: {:>10.0} points/s ({spooled:.2?}, server down, fsync per batch)",
        points as f64 / spooled.as_secs_f64()
    );
    println!(
        "  replay:  {:>10.0} points/s ({replay:.2?}, from the spool once the server is back)",
        points as f64 / replay.as_secs_f64()
    );
}
