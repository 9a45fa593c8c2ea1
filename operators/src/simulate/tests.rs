use std::collections::HashSet;

use super::*;

/// 2024-06-01T00:00:00Z.
const MIDNIGHT: i64 = 1_717_200_000_000;

fn cfg(sensors: u32, rate: u32, seed: u64, start: i64, duration: &str) -> SimulatorConfig {
    SimulatorConfig {
        sensors,
        rate,
        seed,
        start: Some(StartTime(start)),
        realtime: false,
        duration: Some(duration.parse().expect("a valid duration")),
        faults: 0.0,
    }
}

fn all(c: &SimulatorConfig) -> Simulator {
    Simulator::new(c, 0..c.sensors).unwrap()
}

fn total(r: &TenSecData) -> f64 {
    r.p.iter().sum()
}

/// Per-sensor series of 10-second mean total power.
fn ten_second_means(c: &SimulatorConfig, sensor: u32) -> Vec<f64> {
    let mut sim = Simulator::new(c, [sensor]).unwrap();
    let per_window = 10 * c.rate as usize;
    let mut means = Vec::new();
    let (mut sum, mut n) = (0.0, 0);
    for r in &mut sim {
        sum += total(&r);
        n += 1;
        if n == per_window {
            means.push(sum / n as f64);
            (sum, n) = (0.0, 0);
        }
    }
    means
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma) * (x - ma)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn same_seed_gives_the_same_bytes() {
    let c = cfg(8, 12, 42, MIDNIGHT + 17 * 3_600_000, "2m");
    let a: Vec<Payload> = all(&c).payloads().collect();
    let b: Vec<Payload> = all(&c).payloads().collect();
    assert_eq!(a.len(), 8 * 12 * 120);
    assert!(a.iter().zip(&b).all(|(x, y)| x.as_bytes() == y.as_bytes()));
    assert_eq!(
        all(&c).sensor_ids().collect::<Vec<_>>(),
        all(&c).sensor_ids().collect::<Vec<_>>()
    );
}

#[test]
fn a_split_across_workers_gives_the_readings_of_one_worker() {
    let c = cfg(7, 12, 9, MIDNIGHT + 7 * 3_600_000, "3m");
    let one: Vec<TenSecData> = all(&c).collect();
    // Two workers, the second given its indices out of order and with a duplicate.
    let first: Vec<u32> = c.worker_sensors(0, 2).collect();
    let second: Vec<u32> = c.worker_sensors(1, 2).collect();
    let mut both: Vec<u32> = first.iter().chain(&second).copied().collect();
    both.sort_unstable();
    assert_eq!(
        both,
        (0..7).collect::<Vec<_>>(),
        "the workers cover every sensor once"
    );
    let mut w0 = Simulator::new(&c, first.iter().copied()).unwrap();
    let mut shuffled: Vec<u32> = second.iter().rev().copied().collect();
    shuffled.push(second[0]);
    let mut w1 = Simulator::new(&c, shuffled).unwrap();
    assert_eq!(w0.sensor_indices().collect::<Vec<_>>(), first);
    assert_eq!(w1.sensor_indices().collect::<Vec<_>>(), second);
    let mut merged = Vec::new();
    let (mut t0, mut t1) = (Vec::new(), Vec::new());
    while w0.next_tick(&mut t0) && w1.next_tick(&mut t1) {
        let mut tick: Vec<TenSecData> = t0.drain(..).chain(t1.drain(..)).collect();
        tick.sort_by_key(|r| one.iter().position(|o| o.sensor_id == r.sensor_id));
        merged.extend(tick);
    }
    assert_eq!(merged.len(), one.len());
    assert!(
        merged == one,
        "split readings differ from the single worker's"
    );
    // A worker on its own sensor, at another time than the others, agrees too.
    let solo: Vec<TenSecData> = Simulator::new(&c, [4]).unwrap().collect();
    let from_one: Vec<TenSecData> = one
        .iter()
        .copied()
        .filter(|r| r.sensor_id == sensor_id(9, 4))
        .collect();
    assert_eq!(solo, from_one);
}

#[test]
fn different_seeds_differ() {
    let a: Vec<TenSecData> = all(&cfg(3, 12, 1, MIDNIGHT, "30s")).collect();
    let b: Vec<TenSecData> = all(&cfg(3, 12, 2, MIDNIGHT, "30s")).collect();
    assert_eq!(a.len(), b.len());
    assert!(
        a.iter()
            .zip(&b)
            .all(|(x, y)| x.p != y.p && x.sensor_id != y.sensor_id)
    );
}

#[test]
fn sensor_ids_are_distinct_and_stable() {
    let ids: HashSet<[u8; 12]> = (0..10_000).map(|i| sensor_id(42, i)).collect();
    assert_eq!(ids.len(), 10_000);
    assert_ne!(sensor_id(42, 0), sensor_id(43, 0));
    let sim = all(&cfg(3, 12, 42, MIDNIGHT, "1s"));
    assert_eq!(
        sim.sensor_ids().collect::<Vec<_>>(),
        (0..3).map(|i| sensor_id(42, i)).collect::<Vec<_>>()
    );
}

#[test]
fn evenings_are_heavier_than_nights() {
    // A fleet over one simulated day at 1 Hz (the model's processes run in seconds).
    let c = cfg(40, 1, 42, MIDNIGHT, "24h");
    let mut by_hour = [0.0f64; 24];
    let mut counts = [0usize; 24];
    let mut sim = all(&c);
    let start = sim.start_ms();
    for r in &mut sim {
        let hour = ((r.timestamp * 1000.0) as i64 - start) / 3_600_000;
        by_hour[hour as usize] += total(&r);
        counts[hour as usize] += 1;
    }
    let mean = |h: usize| by_hour[h] / counts[h] as f64;
    assert!(
        mean(19) > 1.3 * mean(3),
        "19:00 {:.0} W vs 03:00 {:.0} W (hourly: {:?})",
        mean(19),
        mean(3),
        (0..24).map(|h| mean(h).round()).collect::<Vec<_>>()
    );
}

#[test]
fn ten_second_means_are_autocorrelated_but_not_constant() {
    let c = cfg(4, 12, 42, MIDNIGHT, "24h");
    for sensor in 0..c.sensors {
        let means = ten_second_means(&c, sensor);
        assert_eq!(means.len(), 8640);
        let r = correlation(&means[..means.len() - 1], &means[1..]);
        assert!(r > 0.5, "sensor {sensor}: lag-1 correlation {r}");
        // Not a copy of the previous window either: the changes are real.
        let changes = means
            .windows(2)
            .filter(|w| (w[1] - w[0]).abs() > 20.0)
            .count();
        assert!(
            changes > 100,
            "sensor {sensor}: {changes} windows changed by more than 20 W"
        );
        let distinct: HashSet<i64> = means.iter().map(|m| m.round() as i64).collect();
        assert!(
            distinct.len() > 300,
            "sensor {sensor}: {} distinct means",
            distinct.len()
        );
    }
}

#[test]
fn magnitudes_are_plausible() {
    let c = cfg(50, 12, 7, MIDNIGHT + 18 * 3_600_000, "10m");
    let mut sum = [0.0; 3];
    let mut n = 0;
    for r in all(&c) {
        for (ph, sum) in sum.iter_mut().enumerate() {
            assert!(r.p[ph].is_finite() && r.q[ph].is_finite());
            assert!(r.p[ph].abs() < 30_000.0, "p = {:?}", r.p);
            assert!(r.q[ph].abs() < 30_000.0, "q = {:?}", r.q);
            *sum += r.p[ph];
        }
        n += 1;
    }
    for s in sum {
        let mean = s / n as f64;
        assert!(
            (150.0..2000.0).contains(&mean),
            "fleet mean per phase {mean:.0} W"
        );
    }
}

#[test]
fn timestamps_are_start_plus_k_over_rate() {
    let c = cfg(3, 12, 42, 1_717_832_865_000, "5s");
    let mut sim = all(&c);
    assert_eq!(sim.next_due(), Some(1_717_832_865_000));
    let mut k = 0u64;
    let mut tick = Vec::new();
    while let Some(due) = sim.next_due() {
        assert_eq!(due, 1_717_832_865_000 + (k * 1000 / 12) as i64);
        assert_eq!(sim.tick(), k);
        tick.clear();
        assert!(sim.next_tick(&mut tick));
        assert_eq!(tick.len(), 3);
        let exact = (1_717_832_865_000i64 * 12 + k as i64 * 1000) as f64 / 12_000.0;
        for r in &tick {
            assert_eq!(r.timestamp, exact);
            assert!((r.timestamp - (1_717_832_865.0 + k as f64 / 12.0)).abs() < 1e-6);
        }
        k += 1;
    }
    assert_eq!(k, 60);
    assert!(sim.is_done() && !sim.next_tick(&mut tick) && sim.next_reading().is_none());
    assert_eq!(sim.timestamp(1), 1_717_832_865.083_333_3);
}

#[test]
fn start_defaults_to_now_rounded_down_and_duration_counts_ticks() {
    let mut c = cfg(2, 12, 42, 0, "10s");
    c.start = None;
    let sim = Simulator::with_now(&c, 0..2, 1_717_200_123_456).unwrap();
    assert_eq!(sim.start_ms(), 1_717_200_123_000);
    assert_eq!(sim.end_tick(), Some(120));
    assert_eq!(sim.count(), 240);
    c.duration = Some("1s".parse().unwrap());
    c.rate = 7;
    assert_eq!(c.ticks(), Some(7));
    c.duration = Some("100ms".parse().unwrap());
    assert_eq!(c.ticks(), Some(1));
    c.duration = None;
    assert_eq!(c.ticks(), None);
    let mut sim = Simulator::with_now(&c, [0], 0).unwrap();
    assert_eq!(sim.size_hint(), (usize::MAX, None));
    assert!(sim.next_reading().is_some());
}

#[test]
fn faults_are_injected_at_the_configured_fraction() {
    let mut c = cfg(5, 12, 42, MIDNIGHT, "200s");
    let clean: Vec<Payload> = all(&c).payloads().collect();
    assert!(
        clean
            .iter()
            .all(|p| p.fault.is_none() && p.as_bytes().len() == TEN_SEC_LEN)
    );
    c.faults = 0.1;
    let mut sim = all(&c);
    let mut kinds = std::collections::HashMap::new();
    let mut faulty = 0;
    let mut out = Vec::new();
    while sim.next_tick_payloads(&mut out) {}
    assert_eq!(out.len(), clean.len());
    for (p, good) in out.iter().zip(&clean) {
        assert_eq!((p.sensor_id, p.time_ms), (good.sensor_id, good.time_ms));
        let bytes = p.as_bytes();
        match p.fault {
            None => assert_eq!(p.valid(), good.valid()),
            Some(kind) => {
                faulty += 1;
                *kinds.entry(kind.reason()).or_insert(0) += 1;
                assert_eq!(p.valid(), None);
                match kind {
                    FaultKind::Truncated => {
                        assert!((1..TEN_SEC_LEN).contains(&bytes.len()));
                        assert_eq!(bytes, &good.as_bytes()[..bytes.len()]);
                    }
                    FaultKind::Extra => {
                        assert!((TEN_SEC_LEN + 1..=MAX_PAYLOAD_LEN).contains(&bytes.len()));
                        assert_eq!(&bytes[..TEN_SEC_LEN], good.as_bytes());
                    }
                    FaultKind::UnknownType => {
                        assert_eq!(bytes.len(), TEN_SEC_LEN);
                        assert!(bytes[0] != 16 && bytes[0] != 17);
                        assert_eq!(&bytes[1..], &good.as_bytes()[1..]);
                    }
                }
            }
        }
    }
    let fraction = faulty as f64 / out.len() as f64;
    assert!(
        (0.09..0.11).contains(&fraction),
        "fault fraction {fraction}"
    );
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    // Deterministic.
    let again: Vec<Payload> = all(&c).payloads().collect();
    assert_eq!(again, out);
}

#[test]
fn payloads_encode_the_readings() {
    let c = cfg(2, 12, 42, MIDNIGHT, "2s");
    let readings: Vec<TenSecData> = all(&c).collect();
    let payloads: Vec<Payload> = all(&c).payloads().collect();
    assert_eq!(readings.len(), payloads.len());
    for (r, p) in readings.iter().zip(&payloads) {
        assert_eq!(p.valid(), Some(&encode_ten_sec(r)));
        assert_eq!(p.sensor_id, r.sensor_id);
        assert_eq!(p.time_ms, (r.timestamp * 1000.0).floor() as i64);
    }
}

#[test]
fn config_from_settings() {
    let c: SimulatorConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, SimulatorConfig::default());
    assert_eq!(
        (c.sensors, c.rate, c.seed, c.realtime, c.faults),
        (5, 12, 42, true, 0.0)
    );
    assert_eq!((c.start, c.duration), (None, None));
    let c: SimulatorConfig = serde_json::from_str(
        r#"{"sensors": 1000, "rate": 12, "seed": 7, "start": "2024-06-01T00:00:00Z",
            "realtime": false, "duration": "1m", "faults": 0.01}"#,
    )
    .unwrap();
    assert_eq!(c.start, Some(StartTime(MIDNIGHT)));
    assert_eq!(c.ticks(), Some(720));
    let c: SimulatorConfig = serde_json::from_str(r#"{"start": 1717200000000}"#).unwrap();
    assert_eq!(c.start_ms(0), MIDNIGHT);
    let e = serde_json::from_str::<SimulatorConfig>(r#"{"sensor": 3}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");

    for (json, field) in [
        (r#"{"sensors": 0}"#, "sensors"),
        (r#"{"rate": 0}"#, "rate"),
        (r#"{"rate": 5000}"#, "rate"),
        (r#"{"faults": 1.5}"#, "faults"),
        (r#"{"faults": -0.1}"#, "faults"),
    ] {
        let c: SimulatorConfig = serde_json::from_str(json).unwrap();
        match Simulator::with_now(&c, [0], 0) {
            Err(SimulateError::InvalidSetting { field: f, .. }) => assert_eq!(f, field, "{json}"),
            other => panic!("{json}: {other:?}"),
        }
    }
    let c = SimulatorConfig::default();
    assert_eq!(
        Simulator::with_now(&c, [2, 5], 0).err(),
        Some(SimulateError::SensorOutOfRange {
            index: 5,
            sensors: 5
        })
    );
}

#[test]
fn worker_split_covers_every_sensor_once() {
    let c = SimulatorConfig {
        sensors: 10,
        ..SimulatorConfig::default()
    };
    let mut seen: Vec<u32> = (0..3).flat_map(|w| c.worker_sensors(w, 3)).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    // A worker with no sensors still keeps time.
    let idle_worker = (0..20)
        .find(|&w| c.worker_sensors(w, 20).next().is_none())
        .expect("10 sensors leave some of 20 workers idle");
    let mut idle = Simulator::with_now(
        &cfg(10, 12, 1, 0, "1s"),
        c.worker_sensors(idle_worker, 20),
        0,
    )
    .unwrap();
    let mut out = Vec::new();
    let mut ticks = 0;
    while idle.next_tick(&mut out) {
        ticks += 1;
    }
    assert_eq!((ticks, out.len()), (12, 0));
    // Read payload by payload (as the source node does), it is done at once.
    let mut idle = Simulator::with_now(
        &cfg(10, 12, 1, 0, "1s"),
        c.worker_sensors(idle_worker, 20),
        0,
    )
    .unwrap();
    assert!(idle.next_payload().is_none());
    assert!(idle.is_done());
}
