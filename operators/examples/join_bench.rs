//! The prediction join, two ways: our `compare_with_lag` timely operator against the
//! same join written with differential-dataflow. Behind the figures in BENCHMARKS.md
//! ("Prediction join: timely operator vs differential-dataflow").
//!
//! ```sh
//! cargo run --release -p smartgrid-operators --example join_bench -- \
//!     --variant timely --sensors 1000 --windows 8640 --workers 1
//! ```
//!
//! The workload is the pipeline's: every 10 s window each sensor has one actual window
//! mean (4 fields) and one prediction (`predicted, target_time, model_version` and the
//! seed model's 18 features) targeting the next window; both are stamped, as
//! `window_mean` and `predict` stamp them, at the window's last millisecond, and the
//! inputs advance one window at a time. Every prediction but the last one of each
//! sensor meets its actual, and every match is emitted as a residual.
//!
//! Variants (one per process, so the peak RSS is the variant's own):
//! - `timely`: `compare_with_lag` (residuals, no threshold);
//! - `differential`: predictions keyed by (sensor, target time), actuals by (sensor,
//!   time), arranged and joined with `join_core`; each record is retracted `timeout`
//!   after it came (a delayed negation), so the arrangements stay bounded like the
//!   timely operator's maps;
//! - `differential-unbounded`: the same without the retractions;
//! - `feed`: generating and feeding the inputs only, the cost both others include.
//!
//! Each variant checks what it emitted (count and an order-independent checksum of the
//! residuals) against an oracle computed directly from the workload, and panics on a
//! difference; the last line is `variant=… matches=… secs=… cpu_secs=… matches_per_s=…
//! peak_rss_kib=…` (`secs` and `cpu_secs` cover the dataflow only, not the oracle).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use differential_dataflow::AsCollection;
use differential_dataflow::VecCollection;
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::implementations::{ValBatcher, ValSpine};
use serde::{Deserialize, Serialize};
use smartgrid_operators::compare_with_lag::{
    CompareCounters, CompareWithLagExt, Comparison, Emit, Threshold,
};
use smartgrid_runtime::operator::route_by_sensor;
use smartgrid_runtime::{Reading, Row, SensorId};
use timely::dataflow::InputHandle;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Concat, Input, Inspect, Probe};

const WINDOW_MS: i64 = 10_000;
/// 2024-01-01T00:00:00Z: event times like the real ones.
const START_MS: i64 = 1_704_067_200_000;
const FEATURES: usize = 18;
const MODEL_VERSION: f64 = 3_141_592.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Timely,
    Differential,
    DifferentialUnbounded,
    Feed,
}

#[derive(Clone, Copy, Debug)]
struct Args {
    variant: Variant,
    sensors: usize,
    windows: i64,
    workers: usize,
    timeout_ms: i64,
    /// Inputs already partitioned by sensor (as `decode` leaves them), so both joins read
    /// through `Pipeline`; otherwise both exchange by the sensor's route hash.
    partitioned: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        variant: Variant::Timely,
        sensors: 1000,
        windows: 8640,
        workers: 1,
        timeout_ms: 60_000,
        partitioned: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        let number = |v: String| -> i64 { v.parse().unwrap_or_else(|_| usage(&v)) };
        match flag.as_str() {
            "--variant" => {
                args.variant = match value().as_str() {
                    "timely" => Variant::Timely,
                    "differential" => Variant::Differential,
                    "differential-unbounded" => Variant::DifferentialUnbounded,
                    "feed" => Variant::Feed,
                    other => usage(other),
                }
            }
            "--sensors" => args.sensors = number(value()).max(1) as usize,
            "--windows" => args.windows = number(value()).max(2),
            "--workers" => args.workers = number(value()).max(1) as usize,
            "--timeout-ms" => args.timeout_ms = number(value()).max(WINDOW_MS),
            "--exchange" => args.partitioned = false,
            other => usage(other),
        }
    }
    args
}

fn usage(bad: &str) -> ! {
    eprintln!(
        "join_bench: bad argument `{bad}`\nusage: join_bench [--variant timely|differential|differential-unbounded|feed] \
         [--sensors N] [--windows W] [--workers K] [--timeout-ms MS] [--exchange]"
    );
    std::process::exit(2)
}

/// A Clemap-like id: 24 hex digits.
fn sensor_id(index: usize) -> SensorId {
    let text = format!(
        "{:024x}",
        (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    );
    SensorId::new(&text).expect("24 hex digits fit")
}

fn window_start(k: i64) -> i64 {
    START_MS + k * WINDOW_MS
}

/// Timely time of a window's outputs: its last millisecond, as `window_mean` stamps it.
fn stamp(k: i64) -> u64 {
    u64::try_from(window_start(k) + WINDOW_MS - 1).expect("positive")
}

/// A load that varies by sensor and window.
fn load(s: usize, k: i64, phase: u64) -> f64 {
    let mut z = (s as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((k as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(phase);
    z = (z ^ (z >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    200.0 + (z >> 40) as f64 / 4096.0
}

fn actual_window(sensor: SensorId, s: usize, k: i64) -> Reading {
    Reading {
        sensor,
        time_ms: window_start(k),
        values: Row::from_iter([load(s, k, 1), load(s, k, 2), load(s, k, 3), 120.0]),
    }
}

fn prediction(sensor: SensorId, s: usize, k: i64) -> Reading {
    let mut values = Row::new();
    values.push(load(s, k, 7) * 3.0);
    values.push(window_start(k + 1) as f64);
    values.push(MODEL_VERSION);
    for f in 0..FEATURES {
        values.push(load(s, k - (f / 3) as i64, 1 + (f % 3) as u64));
    }
    Reading {
        sensor,
        time_ms: window_start(k),
        values,
    }
}

/// The actual value the join compares with: the three phases added up.
fn actual_value(a: &Reading) -> f64 {
    a.values.iter().take(3).sum()
}

/// A residual, as `compare_with_lag` with `emit: residuals` computes it.
fn residual(predicted: f64, actual: f64, target: f64, version: f64) -> [f64; 6] {
    let error = actual - predicted;
    let relative = if actual != 0.0 {
        error.abs() / actual.abs()
    } else {
        f64::NAN
    };
    [predicted, actual, error, relative, target, version]
}

/// One output's contribution to the checksum (summed, so order does not matter).
fn fingerprint(sensor: SensorId, time_ms: i64, values: &[f64]) -> u64 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut h = mix(sensor.route_hash() ^ time_ms as u64);
    for v in values {
        h = mix(h ^ v.to_bits());
    }
    h
}

/// What the join should emit, computed without any join: prediction `k` meets actual
/// `k + 1`.
fn oracle(args: &Args) -> (u64, u64) {
    let (mut count, mut sum) = (0u64, 0u64);
    for s in 0..args.sensors {
        let sensor = sensor_id(s);
        for k in 0..args.windows - 1 {
            let p = prediction(sensor, s, k);
            let a = actual_window(sensor, s, k + 1);
            let target = window_start(k + 1);
            let r = residual(p.values[0], actual_value(&a), target as f64, p.values[2]);
            count += 1;
            sum = sum.wrapping_add(fingerprint(sensor, target, &r));
        }
    }
    (count, sum)
}

/// A row of values with a total order, so differential can arrange it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct OrdRow(Row);

impl Eq for OrdRow {}

impl PartialOrd for OrdRow {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdRow {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .iter()
            .zip(other.0.iter())
            .map(|(a, b)| a.total_cmp(b))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| self.0.len().cmp(&other.0.len()))
    }
}

/// A sensor ordered by its hash first: a join needs some order, not the ids' text order,
/// and `SensorId`'s text comparison (UTF-8 checks, `memcmp`) took over a third of the
/// differential run's time in `perf` when keys were plain `SensorId`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct SensorKey(SensorId);

impl PartialOrd for SensorKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SensorKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (self.0, other.0);
        a.route_hash().cmp(&b.route_hash()).then_with(|| {
            if a == b {
                std::cmp::Ordering::Equal
            } else {
                a.cmp(&b)
            }
        })
    }
}

type Key = (SensorKey, i64);
type Updates<'s, V> = VecCollection<'s, u64, (Key, V), isize>;

/// Readings as differential updates at their timely time.
fn updates<'s, V: Clone + 'static>(
    readings: smartgrid_runtime::operator::Readings<'s>,
    mut kv: impl FnMut(Reading) -> (Key, V) + 'static,
) -> Updates<'s, V> {
    readings
        .unary(Pipeline, "AsUpdates", move |_, _| {
            move |input, output| {
                input.for_each(|time, data| {
                    let t = *time.least().expect("a totally ordered stamp has one time");
                    output
                        .session(&time)
                        .give_iterator(data.drain(..).map(|r| (kv(r), t, 1isize)));
                });
            }
        })
        .as_collection()
}

/// The differential join: arrange both sides by (sensor, time) and `join_core`.
fn differential_join<'s, P1, P2>(
    predictions: Updates<'s, OrdRow>,
    actuals: Updates<'s, u64>,
    pacts: (P1, P2),
) -> VecCollection<'s, u64, (SensorId, i64, OrdRow), isize>
where
    P1: ParallelizationContract<u64, Vec<((Key, OrdRow), u64, isize)>>,
    P2: ParallelizationContract<u64, Vec<((Key, u64), u64, isize)>>,
{
    let p = arrange_core::<
        _,
        _,
        ValBatcher<Key, OrdRow, u64, isize>,
        ValSpine<Key, OrdRow, u64, isize>,
    >(predictions.inner, pacts.0, "Predictions", ValBatcher::new);
    let a = arrange_core::<_, _, ValBatcher<Key, u64, u64, isize>, ValSpine<Key, u64, u64, isize>>(
        actuals.inner,
        pacts.1,
        "Actuals",
        ValBatcher::new,
    );
    p.join_core(a, |&(SensorKey(sensor), target), p: &OrdRow, &a: &u64| {
        let r = residual(p.0[0], f64::from_bits(a), p.0[1], p.0[2]);
        Some((sensor, target, OrdRow(Row::from_iter(r))))
    })
}

/// Retracts every update `timeout_ms` after it came: the state differential keeps.
fn bounded<'s, V: differential_dataflow::Data>(
    c: Updates<'s, V>,
    timeout_ms: i64,
) -> Updates<'s, V> {
    let delay = timeout_ms as u64;
    c.clone()
        .concat(c.delay(move |t| t.saturating_add(delay)).negate())
}

#[derive(Default)]
struct Totals {
    matches: AtomicU64,
    checksum: AtomicU64,
    retractions: AtomicU64,
}

fn run(args: Args, totals: Arc<Totals>) {
    let config = timely::Config::process(args.workers);
    timely::execute(config, move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let mut predictions_in = InputHandle::new();
        let mut actuals_in = InputHandle::new();
        let totals = Arc::clone(&totals);
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            let predictions = scope.input_from(&mut predictions_in);
            let actuals = scope.input_from(&mut actuals_in);
            let t = Arc::clone(&totals);
            match args.variant {
                Variant::Feed => predictions.concat(actuals).probe().0,
                Variant::Timely => {
                    let comparison = Comparison {
                        prediction: [0, 1, 2],
                        features: (3..3 + FEATURES).collect(),
                        actual: vec![0, 1, 2],
                        threshold: Threshold {
                            absolute: None,
                            relative: None,
                            all: true,
                        },
                        sample_good: 0.0,
                        timeout_ms: args.timeout_ms,
                        emit: Emit::Residuals,
                    };
                    let (predictions, actuals) = if args.partitioned {
                        (predictions, actuals)
                    } else {
                        (route_by_sensor(predictions), route_by_sensor(actuals))
                    };
                    let mut local = (0u64, 0u64);
                    predictions
                        .compare_with_lag(actuals, comparison, CompareCounters::default(), "join")
                        .inspect_core(move |event| match event {
                            Ok((_, data)) => {
                                for r in data.iter() {
                                    local.0 += 1;
                                    local.1 = local
                                        .1
                                        .wrapping_add(fingerprint(r.sensor, r.time_ms, &r.values));
                                }
                            }
                            Err([]) => {
                                t.matches.fetch_add(local.0, Ordering::Relaxed);
                                t.checksum.fetch_add(local.1, Ordering::Relaxed);
                            }
                            Err(_) => {}
                        })
                        .probe()
                        .0
                }
                Variant::Differential | Variant::DifferentialUnbounded => {
                    let mut p = updates(predictions, |r| {
                        let target = r.values[1] as i64;
                        ((SensorKey(r.sensor), target), OrdRow(r.values))
                    });
                    let mut a = updates(actuals, |r| {
                        ((SensorKey(r.sensor), r.time_ms), actual_value(&r).to_bits())
                    });
                    if args.variant == Variant::Differential {
                        p = bounded(p, args.timeout_ms);
                        a = bounded(a, args.timeout_ms);
                    }
                    let joined = if args.partitioned {
                        differential_join(p, a, (Pipeline, Pipeline))
                    } else {
                        let route = |u: &((Key, OrdRow), u64, isize)| (u.0).0.0.0.route_hash();
                        let route_a = |u: &((Key, u64), u64, isize)| (u.0).0.0.0.route_hash();
                        differential_join(p, a, (Exchange::new(route), Exchange::new(route_a)))
                    };
                    let mut local = (0u64, 0u64, 0u64);
                    let out = joined.inspect_core(move |event| match event {
                        Ok((_, data)) => {
                            for ((sensor, target, row), _, diff) in data.iter() {
                                if *diff > 0 {
                                    local.0 += *diff as u64;
                                    local.1 = local.1.wrapping_add(
                                        fingerprint(*sensor, *target, &row.0)
                                            .wrapping_mul(*diff as u64),
                                    );
                                } else {
                                    local.2 += diff.unsigned_abs() as u64;
                                }
                            }
                        }
                        Err([]) => {
                            t.matches.fetch_add(local.0, Ordering::Relaxed);
                            t.checksum.fetch_add(local.1, Ordering::Relaxed);
                            t.retractions.fetch_add(local.2, Ordering::Relaxed);
                        }
                        Err(_) => {}
                    });
                    out.inner.probe().0
                }
            }
        });
        // Sources own the sensors the keyed exchange would send them, as decode does.
        let mine: Vec<(usize, SensorId)> = (0..args.sensors)
            .map(|s| (s, sensor_id(s)))
            .filter(|(_, id)| id.route_hash() % peers as u64 == index as u64)
            .collect();
        for k in 0..args.windows {
            predictions_in.advance_to(stamp(k));
            actuals_in.advance_to(stamp(k));
            for &(s, id) in &mine {
                actuals_in.send(actual_window(id, s, k));
                predictions_in.send(prediction(id, s, k));
            }
            predictions_in.advance_to(stamp(k + 1));
            actuals_in.advance_to(stamp(k + 1));
            while probe.less_than(predictions_in.time()) {
                worker.step();
            }
        }
    })
    .expect("timely workers run");
}

/// The process's peak resident set, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) the process has used so far, in seconds: less sensitive than
/// the wall clock to other work on a shared host.
fn cpu_secs() -> f64 {
    // Fields 14 and 15 of /proc/self/stat (after the parenthesised name), in clock ticks
    // of 1/100 s (USER_HZ, 100 on every Linux platform we run on).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
            Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn main() {
    let args = parse_args();
    let (expected_matches, expected_checksum) = oracle(&args);
    let totals = Arc::new(Totals::default());
    let (started, cpu_before) = (Instant::now(), cpu_secs());
    run(args, Arc::clone(&totals));
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu_before;
    let matches = totals.matches.load(Ordering::Relaxed);
    let checksum = totals.checksum.load(Ordering::Relaxed);
    if args.variant != Variant::Feed {
        assert_eq!(
            matches, expected_matches,
            "match count differs from the oracle"
        );
        assert_eq!(
            checksum, expected_checksum,
            "residuals differ from the oracle"
        );
    }
    if args.variant == Variant::Differential {
        assert_eq!(
            totals.retractions.load(Ordering::Relaxed),
            expected_matches,
            "every match is retracted once its inputs are"
        );
    }
    let variant = match args.variant {
        Variant::Timely => "timely",
        Variant::Differential => "differential",
        Variant::DifferentialUnbounded => "differential-unbounded",
        Variant::Feed => "feed",
    };
    let records = if args.variant == Variant::Feed {
        expected_matches
    } else {
        matches
    };
    println!(
        "variant={variant} sensors={} windows={} workers={} matches={matches} checksum={checksum:016x} secs={secs:.3} cpu_secs={cpu:.2} matches_per_s={:.0} peak_rss_kib={}",
        args.sensors,
        args.windows,
        args.workers,
        records as f64 / secs,
        peak_rss_kib()
    );
}
