use super::*;
use std::collections::{BTreeMap, BTreeSet};

fn reading(sensor: &str, ms: i64, values: &[f64]) -> Reading {
    Reading {
        sensor: SensorId::new(sensor).expect("short"),
        time_ms: ms,
        values: values.iter().copied().collect(),
    }
}

fn spec(size_ms: u64, lateness_ms: u64, correction_ms: u64, fields: &[usize]) -> WindowMean {
    WindowMean {
        size_ms,
        lateness_ms,
        correction_ms,
        fields: fields.into(),
    }
}

/// Adds `r` in a batch stamped `now` to windows whose token is their close time.
fn add_batch(sums: &mut WindowSums<Time>, r: &Reading, now: Time) -> Batch {
    let mut batch = Batch::new(sums.sizes.len());
    sums.add_all(std::slice::from_ref(r), now, |_, close| close, &mut batch);
    batch
}

/// The late counts of adding `r` at `now`.
fn add(sums: &mut WindowSums<Time>, r: &Reading, now: Time) -> Vec<u64> {
    add_batch(sums, r, now).late
}

/// Every window of size `size` closed, oldest first.
fn drain(sums: &mut WindowSums<Time>, size: usize) -> Vec<(Time, Vec<Reading>)> {
    let mut closed = Vec::new();
    let mut out = Vec::new();
    while let Some(token) = sums.close_oldest(size, |_| true, &mut out) {
        closed.push((token, std::mem::take(&mut out)));
    }
    closed
}

/// What the operator does when the frontier reaches `at`: closes, then forgets.
fn advance(sums: &mut WindowSums<Time>, at: Time) -> Vec<Reading> {
    let mut out = Vec::new();
    for k in 0..sums.sizes.len() {
        while sums.close_oldest(k, |&c| c < at, &mut out).is_some() {}
    }
    sums.expire(|&e| e < at);
    out
}

/// The corrections of `batch`, per size.
fn corrections(sums: &WindowSums<Time>, mut batch: Batch) -> Vec<Vec<Reading>> {
    let mut out = vec![Vec::new(); sums.sizes.len()];
    sums.corrections(&mut batch, &mut out);
    out
}

#[test]
fn means_of_two_sizes_match_a_grouping_done_the_slow_way() {
    let mut next = crate::xorshift::xorshift(0x2545_f491_4f6c_dd1d_u64);
    let mut unit = || (next() >> 11) as f64 / (1u64 << 53) as f64;
    // Three fields: 1 s windows average fields 2 and 0 (not a leading run), 5 s
    // windows fields 0 and 1.
    let mut sums: WindowSums<Time> =
        WindowSums::new(&[spec(1_000, 0, 0, &[2, 0]), spec(5_000, 0, 0, &[0, 1])]);
    type Oracle = BTreeMap<(i64, String), (f64, f64, f64)>;
    let (mut short, mut long): (Oracle, Oracle) = Default::default();
    let mut counted = BTreeSet::new();
    let mut duplicates = 0;
    for i in 0..5_000 {
        let sensor = format!("s{}", (unit() * 40.0) as u32);
        let ms = i * 3 + (unit() * 5.0) as i64;
        let row = [unit() * 100.0, unit(), unit() - 0.5];
        let batch = add_batch(&mut sums, &reading(&sensor, ms, &row), 0);
        assert_eq!(batch.late, [0, 0]);
        duplicates += batch.duplicates;
        // A second reading of a sensor at one time is not counted.
        if !counted.insert((sensor.clone(), ms)) {
            continue;
        }
        let e = short
            .entry((ms.div_euclid(1_000) * 1_000, sensor.clone()))
            .or_default();
        *e = (e.0 + row[2], e.1 + row[0], e.2 + 1.0);
        let e = long
            .entry((ms.div_euclid(5_000) * 5_000, sensor))
            .or_default();
        *e = (e.0 + row[0], e.1 + row[1], e.2 + 1.0);
    }
    assert!(duplicates > 0, "the random times collide sometimes");
    assert_eq!(duplicates as usize, 5_000 - counted.len());
    for (size, oracle) in [(0, short), (1, long)] {
        let got: Vec<Reading> = drain(&mut sums, size)
            .into_iter()
            .flat_map(|(_, r)| r)
            .collect();
        assert_eq!(got.len(), oracle.len());
        for (r, ((start, sensor), (a, b, n))) in got.iter().zip(&oracle) {
            assert_eq!((r.time_ms, r.sensor.as_str()), (*start, sensor.as_str()));
            assert_eq!(r.values.as_slice(), &[a / n, b / n, *n]);
        }
    }
    sums.expire(|_| true);
    assert!(sums.is_empty());
    assert_eq!(sums.slots.seen.blocks_in_use(), 0);
}

#[test]
fn past_the_horizon_readings_are_refused_per_size_and_windows_close_oldest_first() {
    let mut sums: WindowSums<Time> =
        WindowSums::new(&[spec(10_000, 2_000, 0, &[0]), spec(60_000, 0, 0, &[0])]);
    assert_eq!(add(&mut sums, &reading("a", 15_000, &[1.0]), 0), [0, 0]);
    assert_eq!(add(&mut sums, &reading("a", 3_000, &[2.0]), 0), [0, 0]);
    // [0, 10 s) closes at 11 999 (9 999 + 2 000 of lateness): open at 11 999.
    assert_eq!(add(&mut sums, &reading("b", 9_000, &[4.0]), 11_999), [0, 0]);
    // Past its close with no correction horizon: late for 10 s only, even though the
    // frontier has not made the window emit yet.
    let batch = add_batch(&mut sums, &reading("b", 9_100, &[6.0]), 12_000);
    assert_eq!(batch.late, [1, 0]);
    assert_eq!(
        batch.refused,
        [Refused {
            size: 0,
            reading: reading("b", 9_100, &[6.0]),
            start_ms: 0,
            close: 11_999,
            now: 12_000,
        }]
    );
    let closed = advance(&mut sums, 12_000);
    assert_eq!(closed.len(), 2);
    // Emitted and forgotten: the same.
    let batch = add_batch(&mut sums, &reading("b", 9_200, &[8.0]), 12_000);
    assert_eq!(batch.late, [1, 0]);
    let first: Vec<_> = closed
        .iter()
        .map(|r| (r.sensor.as_str(), r.values.to_vec()))
        .collect();
    assert_eq!(first, [("a", vec![2.0, 1.0]), ("b", vec![4.0, 1.0])]);
    let later = drain(&mut sums, 0);
    assert_eq!(later[0].0, 21_999);
    let minute = drain(&mut sums, 1);
    assert_eq!(minute[0].0, 59_999);
    let b = &minute[0].1[1];
    assert_eq!(
        (b.sensor.as_str(), b.values.to_vec()),
        ("b", vec![6.0, 3.0])
    );
    sums.expire(|_| true);
    // Late for both: nothing is kept.
    assert_eq!(add(&mut sums, &reading("c", 0, &[1.0]), 60_000), [1, 1]);
    assert!(sums.is_empty());
}

#[test]
fn a_duplicate_is_dropped_for_every_size_even_after_its_window_was_emitted() {
    let mut sums: WindowSums<Time> =
        WindowSums::new(&[spec(1_000, 0, 5_000, &[0]), spec(2_000, 0, 5_000, &[0])]);
    for (ms, v) in [(100, 1.0), (300, 3.0), (200, 2.0)] {
        assert_eq!(
            add_batch(&mut sums, &reading("a", ms, &[v]), 0).duplicates,
            0
        );
    }
    // The same times again, in and out of order, and another sensor at one of them.
    for ms in [300, 100, 200] {
        assert_eq!(
            add_batch(&mut sums, &reading("a", ms, &[9.0]), 0).duplicates,
            1
        );
    }
    assert_eq!(
        add_batch(&mut sums, &reading("b", 100, &[5.0]), 0).duplicates,
        0
    );
    let closed = advance(&mut sums, 2_500);
    assert_eq!(closed.len(), 4, "a and b in [0, 1 s) and [0, 2 s)");
    // Emitted but still correctable: a redelivery is a duplicate, not a correction.
    let batch = add_batch(&mut sums, &reading("a", 200, &[9.0]), 2_500);
    assert_eq!((batch.duplicates, batch.has_corrections()), (1, false));
    // Once every window holding it is forgotten, its time is forgotten too.
    advance(&mut sums, 10_000);
    assert!(sums.is_empty());
    assert_eq!(sums.slots.seen.blocks_in_use(), 0);
}

#[test]
fn a_late_reading_within_the_horizon_changes_the_emitted_mean() {
    let mut sums: WindowSums<Time> =
        WindowSums::new(&[spec(10_000, 0, 30_000, &[0]), spec(60_000, 0, 0, &[0])]);
    add(&mut sums, &reading("a", 1_000, &[1.0]), 0);
    add(&mut sums, &reading("b", 2_000, &[10.0]), 0);
    // Past the close, not emitted yet: taken with no correction.
    let batch = add_batch(&mut sums, &reading("a", 9_500, &[3.0]), 11_000);
    assert_eq!((batch.late[0], batch.has_corrections()), (0, false));
    let first = advance(&mut sums, 12_000);
    assert_eq!(first[0].values.to_vec(), [2.0, 2.0]);
    // Two late readings of `a` and one of `b` in one batch: one correction each.
    let mut batch = Batch::new(2);
    let readings = [
        reading("a", 5_000, &[2.0]),
        reading("b", 9_000, &[20.0]),
        reading("a", 6_000, &[6.0]),
    ];
    sums.add_all(&readings, 20_000, |_, close| close, &mut batch);
    assert_eq!(batch.late, [0, 0]);
    let out = corrections(&sums, batch);
    let got: Vec<_> = out[0]
        .iter()
        .map(|r| (r.sensor.as_str(), r.time_ms, r.values.to_vec()))
        .collect();
    assert_eq!(got, [("a", 0, vec![3.0, 4.0]), ("b", 0, vec![15.0, 2.0])]);
    // The minute window was still open: no correction, the readings are in it.
    assert!(out[1].is_empty());
    // A window with no reading before its close is made by a late one.
    let batch = add_batch(&mut sums, &reading("c", 15_000, &[4.0]), 30_000);
    let out = corrections(&sums, batch);
    assert_eq!(out[0].len(), 1);
    assert_eq!(
        (out[0][0].time_ms, out[0][0].values.to_vec()),
        (10_000, vec![4.0, 1.0])
    );
    // [0, 10 s) closed at 9 999: correctable up to 39 999, whether forgotten yet or not.
    let batch = add_batch(&mut sums, &reading("a", 7_000, &[1.0]), 39_999);
    assert!(batch.has_corrections());
    let batch = add_batch(&mut sums, &reading("a", 8_000, &[1.0]), 40_000);
    assert_eq!(batch.late, [1, 0]);
    assert_eq!(batch.refused[0].close, 9_999);
    advance(&mut sums, 40_000);
    assert_eq!(sums.sizes[0].emitted.len(), 1, "[10 s, 20 s) is kept");
}

#[test]
fn a_short_row_shows_as_nan_and_negative_times_align_down() {
    let mut sums: WindowSums<Time> = WindowSums::new(&[spec(1_000, 0, 0, &[0, 1])]);
    add(&mut sums, &reading("a", -1, &[1.0]), 0);
    let closed = drain(&mut sums, 0);
    let r = &closed[0].1[0];
    assert_eq!(r.time_ms, -1_000);
    assert_eq!(r.values[0], 1.0);
    assert!(r.values[1].is_nan());
    assert_eq!(r.values[2], 1.0);
}

#[test]
fn times_at_the_ends_of_the_range_do_not_overflow() {
    let mut sums: WindowSums<Time> = WindowSums::new(&[spec(10_000, 0, 60_000, &[0])]);
    assert_eq!(add(&mut sums, &reading("a", i64::MIN + 1, &[1.0]), 0), [1]);
    assert_eq!(add(&mut sums, &reading("a", -5, &[1.0]), 0), [0]);
    assert_eq!(add(&mut sums, &reading("a", -15_000, &[4.0]), 0), [0]);
    // Far from the window the previous reading went to, in both directions.
    assert_eq!(add(&mut sums, &reading("a", i64::MAX, &[2.0]), 0), [0]);
    assert_eq!(add(&mut sums, &reading("a", i64::MIN + 1, &[1.0]), 0), [1]);
    let closed = drain(&mut sums, 0);
    let starts: Vec<i64> = closed.iter().map(|(_, r)| r[0].time_ms).collect();
    assert_eq!(starts, [-20_000, -10_000, i64::MAX / 10_000 * 10_000]);
    let means: Vec<f64> = closed.iter().map(|(_, r)| r[0].values[0]).collect();
    assert_eq!(means, [4.0, 1.0, 2.0]);
}

#[test]
fn sensors_that_went_quiet_are_forgotten() {
    let mut sums: WindowSums<Time> =
        WindowSums::new(&[spec(1_000, 0, 0, &[0]), spec(2_000, 0, 0, &[0])]);
    let mut out = Vec::new();
    // 200 sensors in the first second, then only 10.
    for s in 0..200 {
        add(&mut sums, &reading(&format!("s{s}"), 0, &[1.0]), 0);
    }
    for second in 1..4 {
        for s in 0..10 {
            let r = reading(&format!("s{s}"), second * 1_000, &[f64::from(s)]);
            add(&mut sums, &r, 0);
        }
        let passed = |close: &Time| *close < 1_000 * second as u64;
        for size in [0, 1] {
            out.clear();
            sums.close_oldest(size, passed, &mut out);
        }
        sums.expire(passed);
    }
    assert!(
        sums.slots.sensors().len() <= 64,
        "{}",
        sums.slots.sensors().len()
    );
    // What is left is still right after the renumbering, duplicates included.
    assert_eq!(
        add_batch(&mut sums, &reading("s3", 3_000, &[9.0]), 0).duplicates,
        1
    );
    let last: Vec<_> = drain(&mut sums, 0)[0]
        .1
        .iter()
        .map(|r| r.values[0])
        .collect();
    assert_eq!(last, (0..10).map(f64::from).collect::<Vec<_>>());
    let two_seconds: Vec<_> = drain(&mut sums, 1)[0]
        .1
        .iter()
        .map(|r| r.values.to_vec())
        .collect();
    assert_eq!(
        two_seconds,
        (0..10).map(|s| vec![f64::from(s), 2.0]).collect::<Vec<_>>()
    );
}

#[test]
fn what_is_kept_stays_bounded_in_a_long_steady_run() {
    let mut sums: WindowSums<Time> =
        WindowSums::new(&[spec(10_000, 0, 60_000, &[0]), spec(60_000, 0, 60_000, &[0])]);
    let mut most = 0;
    for step in 0..(3_000 * 12) {
        let t = 1_700_000_000_000 + step * 1_000 / 12;
        let now = (t - 1_000) as Time;
        for s in 0..20 {
            add(&mut sums, &reading(&format!("s{s}"), t, &[1.0]), now);
        }
        if step % 12 == 0 {
            advance(&mut sums, now);
        }
        most = most.max(sums.slots.seen.blocks_in_use());
    }
    // 20 sensors at 12 Hz over a minute window, its minute of horizon and the open one:
    // at most 200 s of times in full blocks (236 one-byte gaps each), and a part-filled
    // block at each end.
    assert!(most <= 20 * (12 * 200 / 236 + 2), "{most}");
    assert!(
        sums.slots.seen.len(3) >= 12 * 60,
        "{}",
        sums.slots.seen.len(3)
    );
}
