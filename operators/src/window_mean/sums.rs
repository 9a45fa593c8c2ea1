//! The running sums of one `window_mean` operator's open windows, apart from timely so
//! they can be tested on their own.
//!
//! Every reading costs one hash lookup (its sensor's slot, shared by all open windows)
//! and one add into a flat array: each window keeps `1 + fields` numbers per slot (the
//! count, then one sum per averaged field), so accumulating touches one short run of
//! memory and allocates nothing once the first window has seen every sensor.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use smartgrid_runtime::operator::Time;
use smartgrid_runtime::{Reading, Row, SensorId};

use super::WindowMean;

/// Sensors seen by the open windows, numbered densely.
#[derive(Default)]
struct Slots {
    index: FxHashMap<SensorId, u32>,
    sensors: Vec<SensorId>,
}

impl Slots {
    #[inline]
    fn slot(&mut self, sensor: SensorId) -> usize {
        if let Some(&slot) = self.index.get(&sensor) {
            return slot as usize;
        }
        let slot = self.sensors.len();
        self.sensors.push(sensor);
        // Slots are u32: four billion sensors in the open windows of one worker would
        // not fit in memory long before this saturates.
        self.index
            .insert(sensor, u32::try_from(slot).unwrap_or(u32::MAX));
        slot
    }
}

/// One open window: `C` is what the operator emits it with (its capability).
struct Open<C> {
    start_ms: i64,
    /// The time the window may close at: its last millisecond plus the lateness.
    close: Time,
    token: C,
    /// `stride` numbers per slot: count, then the field sums.
    sums: Vec<f64>,
}

/// The open windows of one size.
struct Windows<C> {
    size_ms: i64,
    hold_ms: u64,
    fields: Arc<[usize]>,
    /// `fields` is `0..n`: sums add the row's first `n` values in one run.
    leading: bool,
    stride: usize,
    /// Sorted by start (and so by `close`), oldest first; rarely more than two.
    open: Vec<Open<C>>,
    /// The window the previous reading went to: readings arrive nearly in time order.
    last: usize,
    /// Arrays of closed windows, reused by the next ones.
    spare: Vec<Vec<f64>>,
}

impl<C> Windows<C> {
    fn new(spec: &WindowMean) -> Self {
        Windows {
            size_ms: i64::try_from(spec.size_ms).unwrap_or(i64::MAX).max(1),
            hold_ms: spec
                .size_ms
                .saturating_sub(1)
                .saturating_add(spec.lateness_ms),
            leading: spec.fields.iter().enumerate().all(|(i, &f)| i == f),
            stride: spec.fields.len() + 1,
            fields: Arc::clone(&spec.fields),
            open: Vec::new(),
            last: 0,
            spare: Vec::new(),
        }
    }

    /// The index of the open window holding `time_ms`, opened with `open(close)` if
    /// needed, or `None` if it closes before `now`: the reading is late.
    #[inline]
    fn window_of(
        &mut self,
        time_ms: i64,
        now: Time,
        open: impl FnOnce(Time) -> C,
    ) -> Option<usize> {
        if let Some(w) = self.open.get(self.last)
            && time_ms >= w.start_ms
            && time_ms.abs_diff(w.start_ms) < self.size_ms.unsigned_abs()
        {
            return (w.close >= now).then_some(self.last);
        }
        // A window starting before i64::MIN (a time some 292 million years ago, which only
        // a broken payload carries) would be late under any watermark.
        let start = time_ms.div_euclid(self.size_ms).checked_mul(self.size_ms)?;
        let close = u64::try_from(start)
            .unwrap_or(0)
            .saturating_add(self.hold_ms);
        if close < now {
            return None;
        }
        // Sorted by start, so by close too. (Windows before 1970 all close at `hold_ms`:
        // their start tells them apart.)
        let at = self.open.partition_point(|w| w.start_ms < start);
        if self.open.get(at).is_none_or(|w| w.start_ms != start) {
            let sums = self.spare.pop().unwrap_or_default();
            self.open.insert(
                at,
                Open {
                    start_ms: start,
                    close,
                    token: open(close),
                    sums,
                },
            );
        }
        self.last = at;
        Some(at)
    }

    /// Add `values` to slot `slot` of window `w`.
    #[inline]
    fn add(&mut self, w: usize, slot: usize, values: &[f64]) {
        let stride = self.stride;
        let sums = &mut self.open[w].sums;
        if sums.len() <= slot * stride {
            sums.resize((slot + 1) * stride, 0.0);
        }
        let (count, acc) = sums[slot * stride..(slot + 1) * stride]
            .split_first_mut()
            .expect("stride is at least 1");
        *count += 1.0;
        if self.leading && values.len() >= acc.len() {
            // Slices of one length: the adds vectorize with no bounds checks.
            let values = &values[..acc.len()];
            for i in 0..acc.len() {
                acc[i] += values[i];
            }
        } else {
            // A row shorter than the plan's schema (only a misbehaving custom operator
            // sends one) adds NaN, so its window shows it.
            for (sum, &i) in acc.iter_mut().zip(self.fields.iter()) {
                *sum += values.get(i).copied().unwrap_or(f64::NAN);
            }
        }
    }

    /// Whether slot `slot` has readings in any open window.
    fn holds(&self, slot: usize) -> bool {
        self.open.iter().any(|w| {
            w.sums
                .get(slot * self.stride)
                .is_some_and(|&count| count > 0.0)
        })
    }

    /// Keep only the slots in `keep`, renumbered in that order.
    fn renumber(&mut self, keep: &[usize]) {
        let stride = self.stride;
        for window in &mut self.open {
            let mut sums = Vec::with_capacity(keep.len() * stride);
            for &old in keep {
                match window.sums.get(old * stride..(old + 1) * stride) {
                    Some(run) => sums.extend_from_slice(run),
                    None => sums.extend(std::iter::repeat_n(0.0, stride)),
                }
            }
            window.sums = sums;
        }
        self.spare.clear();
    }
}

/// The open windows of one operator, of one or more sizes over the same input: a
/// reading's sensor is looked up once for all of them.
pub(super) struct WindowSums<C> {
    slots: Slots,
    sizes: Vec<Windows<C>>,
    /// For each size, the window the current reading goes to.
    targets: Vec<Option<usize>>,
}

impl<C> WindowSums<C> {
    pub(super) fn new<'w>(windows: impl IntoIterator<Item = &'w WindowMean>) -> Self {
        let sizes: Vec<Windows<C>> = windows.into_iter().map(Windows::new).collect();
        WindowSums {
            slots: Slots::default(),
            targets: vec![None; sizes.len()],
            sizes,
        }
    }

    /// Add `reading` to its window of every size, opening one with `open(size, close)`
    /// where needed. A window that closes before `now` (the time the reading's batch
    /// carries) refuses it: `late[size]` is counted.
    #[inline]
    pub(super) fn add(
        &mut self,
        reading: &Reading,
        now: Time,
        mut open: impl FnMut(usize, Time) -> C,
        late: &mut [u64],
    ) {
        let mut any = false;
        for (k, windows) in self.sizes.iter_mut().enumerate() {
            let target = windows.window_of(reading.time_ms, now, |close| open(k, close));
            if target.is_none() {
                late[k] += 1;
            }
            any |= target.is_some();
            self.targets[k] = target;
        }
        if !any {
            return;
        }
        let slot = self.slots.slot(reading.sensor);
        for (windows, target) in self.sizes.iter_mut().zip(&self.targets) {
            if let Some(w) = *target {
                windows.add(w, slot, reading.values.as_slice());
            }
        }
    }

    /// The oldest open window of size `size`, if `passed(close)`, removed: its token,
    /// and its means sorted by sensor in `out` (each: the field means, then the count;
    /// timestamped at the window's start).
    pub(super) fn close_oldest(
        &mut self,
        size: usize,
        passed: impl Fn(&Time) -> bool,
        out: &mut Vec<Reading>,
    ) -> Option<C> {
        let windows = &mut self.sizes[size];
        if !windows.open.first().is_some_and(|w| passed(&w.close)) {
            return None;
        }
        let window = windows.open.remove(0);
        windows.last = 0;
        let before = out.len();
        for (slot, sums) in window.sums.chunks_exact(windows.stride).enumerate() {
            let (&count, acc) = sums.split_first().expect("stride is at least 1");
            if count == 0.0 {
                continue;
            }
            let mut values: Row = acc.iter().map(|sum| sum / count).collect();
            values.push(count);
            out.push(Reading {
                sensor: self.slots.sensors[slot],
                time_ms: window.start_ms,
                values,
            });
        }
        out[before..].sort_unstable_by_key(|r| r.sensor);
        let touched = out.len() - before;
        let mut sums = window.sums;
        sums.clear();
        windows.spare.push(sums);
        if self.slots.sensors.len() > 64 && touched * 2 < self.slots.sensors.len() {
            self.forget_idle_sensors();
        }
        Some(window.token)
    }

    /// Renumber the slots to the sensors the open windows still hold, so a changing
    /// set of sensors does not grow the arrays without bound.
    fn forget_idle_sensors(&mut self) {
        let keep: Vec<usize> = (0..self.slots.sensors.len())
            .filter(|&slot| self.sizes.iter().any(|w| w.holds(slot)))
            .collect();
        for windows in &mut self.sizes {
            windows.renumber(&keep);
        }
        let sensors: Vec<SensorId> = keep.iter().map(|&s| self.slots.sensors[s]).collect();
        self.slots = Slots::default();
        for sensor in sensors {
            self.slots.slot(sensor);
        }
    }

    /// Whether no window is open.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.sizes.iter().all(|w| w.open.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn reading(sensor: &str, ms: i64, values: &[f64]) -> Reading {
        Reading {
            sensor: SensorId::new(sensor).expect("short"),
            time_ms: ms,
            values: values.iter().copied().collect(),
        }
    }

    fn spec(size_ms: u64, lateness_ms: u64, fields: &[usize]) -> WindowMean {
        WindowMean {
            size_ms,
            lateness_ms,
            fields: fields.into(),
        }
    }

    /// Windows whose token is their close time; returns the late counts.
    fn add(sums: &mut WindowSums<Time>, r: &Reading, now: Time) -> Vec<u64> {
        let mut late = vec![0; sums.sizes.len()];
        sums.add(r, now, |_, close| close, &mut late);
        late
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

    #[test]
    fn means_of_two_sizes_match_a_grouping_done_the_slow_way() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut unit = || (next() >> 11) as f64 / (1u64 << 53) as f64;
        // Three fields: 1 s windows average fields 2 and 0 (not a leading run), 5 s
        // windows fields 0 and 1.
        let mut sums: WindowSums<Time> =
            WindowSums::new(&[spec(1_000, 0, &[2, 0]), spec(5_000, 0, &[0, 1])]);
        type Oracle = BTreeMap<(i64, String), (f64, f64, f64)>;
        let (mut short, mut long): (Oracle, Oracle) = Default::default();
        for i in 0..5_000 {
            let sensor = format!("s{}", (unit() * 40.0) as u32);
            let ms = i * 3 + (unit() * 5.0) as i64;
            let row = [unit() * 100.0, unit(), unit() - 0.5];
            assert_eq!(add(&mut sums, &reading(&sensor, ms, &row), 0), [0, 0]);
            let e = short
                .entry((ms.div_euclid(1_000) * 1_000, sensor.clone()))
                .or_default();
            *e = (e.0 + row[2], e.1 + row[0], e.2 + 1.0);
            let e = long
                .entry((ms.div_euclid(5_000) * 5_000, sensor))
                .or_default();
            *e = (e.0 + row[0], e.1 + row[1], e.2 + 1.0);
        }
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
        assert!(sums.is_empty());
    }

    #[test]
    fn late_readings_are_refused_per_size_and_windows_close_oldest_first() {
        let mut sums: WindowSums<Time> =
            WindowSums::new(&[spec(10_000, 2_000, &[0]), spec(60_000, 0, &[0])]);
        assert_eq!(add(&mut sums, &reading("a", 15_000, &[1.0]), 0), [0, 0]);
        assert_eq!(add(&mut sums, &reading("a", 3_000, &[2.0]), 0), [0, 0]);
        // [0, 10 s) closes at 11 999 (9 999 + 2 000 of lateness): still open at 11 999,
        // late after it; the minute window still takes the reading.
        assert_eq!(add(&mut sums, &reading("b", 9_000, &[4.0]), 11_999), [0, 0]);
        assert_eq!(add(&mut sums, &reading("b", 9_000, &[8.0]), 12_000), [1, 0]);
        let closed = drain(&mut sums, 0);
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[0].0, 11_999);
        assert_eq!(closed[1].0, 21_999);
        let first: Vec<_> = closed[0]
            .1
            .iter()
            .map(|r| (r.sensor.as_str(), r.values.to_vec()))
            .collect();
        assert_eq!(first, [("a", vec![2.0, 1.0]), ("b", vec![4.0, 1.0])]);
        let minute = drain(&mut sums, 1);
        assert_eq!(minute[0].0, 59_999);
        let b = &minute[0].1[1];
        assert_eq!(
            (b.sensor.as_str(), b.values.to_vec()),
            ("b", vec![6.0, 2.0])
        );
        // Late for both: nothing is kept.
        assert_eq!(add(&mut sums, &reading("c", 0, &[1.0]), 60_000), [1, 1]);
        assert!(sums.is_empty());
    }

    #[test]
    fn a_short_row_shows_as_nan_and_negative_times_align_down() {
        let mut sums: WindowSums<Time> = WindowSums::new(&[spec(1_000, 0, &[0, 1])]);
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
        let mut sums: WindowSums<Time> = WindowSums::new(&[spec(10_000, 0, &[0])]);
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
            WindowSums::new(&[spec(1_000, 0, &[0]), spec(2_000, 0, &[0])]);
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
            for size in [0, 1] {
                out.clear();
                sums.close_oldest(size, |&close| close < 1_000 * second as u64, &mut out);
            }
        }
        assert!(
            sums.slots.sensors.len() <= 64,
            "{}",
            sums.slots.sensors.len()
        );
        // What is left is still right after the renumbering.
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
}
