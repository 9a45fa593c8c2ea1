//! Resident memory of the MQTT layer alone: the embedded broker carrying N sensors at
//! 12 Hz into one subscriber, without decoding or windows. Behind the "MQTT layer alone"
//! figure in BENCHMARKS.md (section "Memory: the embedded default with 1000 sensors").
//!
//! ```sh
//! cargo run --release -p smartgrid-operators --example embedded_memory -- \
//!     --sensors 1000 --seconds 5
//! ```
//!
//! A benchmark, not a test: the figure depends on the build, the allocator and how fast
//! the subscriber drains, so there is nothing fixed to assert. The last line is
//! `sensors=… seconds=… sent=… received=… secs=… rss_kib=… peak_rss_kib=…`. Both sides
//! use QoS 0, so `received` can fall short of `sent` when the subscriber falls behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use smartgrid_operators::io::mqtt::{
    ClientIdentity, ConnectOptions, Endpoint, Publisher, PublisherOptions, Qos, SubscribeOptions,
    spawn_subscriber, start_embedded_broker,
};

const WAIT: Duration = Duration::from_secs(15);
const RATE_HZ: u64 = 12;

struct Args {
    sensors: usize,
    seconds: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        sensors: 1000,
        seconds: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let number = value
            .parse::<u64>()
            .unwrap_or_else(|_| usage(&value))
            .max(1);
        match flag.as_str() {
            "--sensors" => args.sensors = number as usize,
            "--seconds" => args.seconds = number,
            other => usage(other),
        }
    }
    args
}

fn usage(bad: &str) -> ! {
    eprintln!(
        "embedded_memory: bad argument `{bad}`\nusage: embedded_memory [--sensors N] [--seconds S]"
    );
    std::process::exit(2)
}

/// A field of /proc/self/status (`VmRSS`, `VmHWM`), in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args = parse_args();
    let broker = start_embedded_broker(0).expect("the embedded broker starts");
    let connect = ConnectOptions::new(
        Endpoint::parse(&broker.url()).expect("the broker's URL"),
        ClientIdentity::new("footprint-sub"),
    );
    let mut subscribe = SubscribeOptions::new(["data/realtime/feature/+"]);
    subscribe.qos = Qos::AtMostOnce;
    let sub = spawn_subscriber(&connect, &subscribe, Arc::new(AtomicBool::new(false)))
        .expect("spawn the subscriber");
    sub.wait_subscribed(WAIT).expect("subscribed");
    let received = Arc::new(AtomicU64::new(0));
    let drained = Arc::clone(&received);
    // Draining in its own thread, as the pipeline's mqtt node does, so the hand-off
    // channel stays short and the figure is the broker's, not a backlog's.
    let consumer = thread::spawn(move || {
        while sub.recv_timeout(Duration::from_secs(2)).is_ok() {
            drained.fetch_add(1, Ordering::Relaxed);
        }
    });

    let publisher = Publisher::connect(&broker.url(), "footprint-pub", PublisherOptions::default())
        .expect("the publisher connects");
    publisher.wait_connected(WAIT).expect("publisher connected");
    let topics: Vec<String> = (0..args.sensors)
        .map(|i| format!("data/realtime/feature/{i:024x}"))
        .collect();
    // Somewhat larger than a Clemap one-minute message (130 bytes), the larger type.
    let payload = vec![0u8; 200];
    let started = Instant::now();
    for tick in 0..args.seconds * RATE_HZ {
        for topic in &topics {
            publisher
                .publish(topic, payload.clone(), Qos::AtMostOnce)
                .expect("publish");
        }
        let next = started + Duration::from_millis((tick + 1) * 1000 / RATE_HZ);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    publisher.flush_and_close(WAIT).expect("flushed");
    let secs = started.elapsed().as_secs_f64();
    consumer.join().expect("the consumer thread");
    println!(
        "sensors={} seconds={} sent={} received={} secs={secs:.2} rss_kib={} peak_rss_kib={}",
        args.sensors,
        args.seconds,
        args.seconds * RATE_HZ * args.sensors as u64,
        received.load(Ordering::Relaxed),
        status_kib("VmRSS"),
        status_kib("VmHWM"),
    );
}
