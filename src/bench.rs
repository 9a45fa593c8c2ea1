//! `smartgrid bench`: decode → 10 s and 1 min `window_mean` on pre-encoded payloads.
//!
//! Payloads are simulated and encoded before the clock starts, into one buffer per
//! worker; each message is a slice of it, so the timed part allocates nothing per
//! reading. The dataflow is built from the same operators a pipeline file renders.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::BytesMut;
use smartgrid_operators::decode::errors::{DeadLetters, ErrorSink};
use smartgrid_operators::decode::operator::{DecodeCounters, DecodeExt, EventClock};
use smartgrid_operators::formats::clemap::ClemapDecoder;
use smartgrid_operators::simulate::{Simulator, SimulatorConfig, StartTime};
use smartgrid_operators::window_mean::{CountedWindow, WindowMean, WindowMeanExt};
use smartgrid_runtime::Message;
use smartgrid_runtime::metrics::{Counter, Metrics};
use smartgrid_runtime::source::{Poll, poll_source};
use timely::dataflow::operators::Probe;

/// Messages handed to the dataflow per source activation.
const BATCH: usize = 16384;

/// Pre-encode `seconds` of 12 Hz readings for the sensors worker `w` of `workers` owns.
fn encode(sensors: u32, seconds: u32, w: usize, workers: usize) -> anyhow::Result<Vec<Message>> {
    let config = SimulatorConfig {
        sensors,
        seed: 1,
        start: Some(StartTime(1_700_000_000_000)),
        realtime: false,
        duration: Some(smartgrid_runtime::spec::Duration(Duration::from_secs(
            u64::from(seconds),
        ))),
        ..SimulatorConfig::default()
    };
    let mut sim =
        Simulator::new(&config, config.worker_sensors(w, workers)).context("simulator")?;
    let count = (sensors as usize).div_ceil(workers) * seconds as usize * 12;
    let mut buffer = BytesMut::with_capacity(count * 70);
    let mut lengths = Vec::with_capacity(count);
    while let Some(p) = sim.next_payload() {
        buffer.extend_from_slice(p.as_bytes());
        lengths.push(p.as_bytes().len());
    }
    let buffer = buffer.freeze();
    let topic: Arc<str> = Arc::from("bench");
    let mut at = 0;
    Ok(lengths
        .into_iter()
        .map(|len| {
            let payload = buffer.slice(at..at + len);
            at += len;
            Message {
                topic: Arc::clone(&topic),
                payload,
            }
        })
        .collect())
}

pub fn bench(sensors: u32, seconds: u32, workers: usize) -> anyhow::Result<ExitCode> {
    let workers = workers.max(1);
    let inputs: Vec<Vec<Message>> = (0..workers)
        .map(|w| encode(sensors, seconds, w, workers))
        .collect::<anyhow::Result<_>>()?;
    let total: usize = inputs.iter().map(Vec::len).sum();
    eprintln!(
        "encoded {total} payloads for {sensors} sensors × {seconds} s; running on {workers} worker(s)"
    );
    let inputs = Arc::new(Mutex::new(inputs.into_iter().map(Some).collect::<Vec<_>>()));
    let metrics = Metrics::default();
    let windows = metrics.counter("windows");
    let readings = metrics.counter("readings");

    let started = Instant::now();
    let config = if workers == 1 {
        timely::Config::thread()
    } else {
        timely::Config::process(workers)
    };
    let guards = {
        let (metrics, windows, readings) = (metrics.clone(), windows.clone(), readings.clone());
        timely::execute(config, move |worker| {
            let mine = inputs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get_mut(worker.index())
                .and_then(Option::take)
                .unwrap_or_default();
            let (windows, readings, metrics) = (windows.clone(), readings.clone(), metrics.clone());
            worker.dataflow::<u64, _, _>(move |scope| {
                let mut pending = mine.into_iter();
                let payloads = poll_source(scope, "payloads", move |out: &mut Vec<Message>| {
                    out.extend(pending.by_ref().take(BATCH));
                    if out.is_empty() {
                        Poll::Done
                    } else {
                        Poll::More
                    }
                });
                let counters = DecodeCounters {
                    readings,
                    skipped: Counter::default(),
                    watermark: Default::default(),
                };
                let decoded = payloads.decode(
                    "readings",
                    Arc::new(ClemapDecoder::new(16).expect("16 is a Clemap feature type")),
                    EventClock {
                        delay: Duration::from_secs(1),
                        idle: Duration::from_secs(3600),
                        // The simulated hour may lie ahead of the clock; the check still runs.
                        max_future: Duration::from_secs(u64::from(u32::MAX)),
                        liveness: Default::default(),
                    },
                    counters,
                    ErrorSink::new("readings", &metrics, DeadLetters::default()),
                    None,
                );
                let window = |size_s: u64| WindowMean {
                    size_ms: size_s * 1000,
                    lateness_ms: 0,
                    // The default horizon: its emitted windows and de-duplication times
                    // are part of what is measured.
                    correction_ms: WindowMean::DEFAULT_CORRECTION_MS,
                    fields: (0..7).collect(),
                    // Each worker's payloads are its own sensors (`worker_sensors`).
                };
                // Both sizes in one operator, as a pipeline renders two `window_mean`
                // nodes reading the same input.
                let late = metrics.counter("late");
                let (duplicates, corrections) = (
                    metrics.counter("duplicates"),
                    metrics.counter("corrections"),
                );
                let counted = |size_s| CountedWindow {
                    late: late.clone(),
                    emitted: windows.clone(),
                    duplicates: duplicates.clone(),
                    corrections: corrections.clone(),
                    ..CountedWindow::new(window(size_s))
                };
                for means in decoded.window_means(vec![counted(10), counted(60)], "means") {
                    means.probe();
                }
            });
        })
        .map_err(|e| anyhow::anyhow!("cannot start the workers: {e}"))?
    };
    for result in guards.join() {
        result.map_err(|e| anyhow::anyhow!("a worker failed: {e}"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let decoded = readings.get();
    anyhow::ensure!(
        decoded == total as u64,
        "decoded {decoded} of {total} readings"
    );
    println!(
        "readings={total} windows={} workers={workers} seconds={elapsed:.3}",
        windows.get()
    );
    // Simulated readings are each sent once and in time: anything here is a fault.
    let refused = ["late", "duplicates", "corrections"].map(|c| metrics.counter(c).get());
    if refused != [0; 3] {
        println!(
            "late={} duplicates={} corrections={}",
            refused[0], refused[1], refused[2]
        );
    }
    println!("readings_per_s={:.0}", total as f64 / elapsed);
    Ok(ExitCode::SUCCESS)
}
