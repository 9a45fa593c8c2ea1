//! The running sums of one `window_mean` operator's windows, apart from timely so they
//! can be tested on their own.
//!
//! Every reading costs one hash lookup (its sensor's slot, shared by all windows), one
//! look at the sensor's counted times (a duplicate is dropped there) and one add into a
//! flat array: each window keeps `1 + fields` numbers per slot (the count, then one sum
//! per averaged field), so accumulating touches one short run of memory and allocates
//! nothing once the first window has seen every sensor.
//!
//! A window lives in two stages: *open* until the frontier passes its close (its end plus
//! the lateness), holding a capability to emit it with; then *emitted*, without one,
//! until the frontier passes its close plus the correction horizon. A reading for an
//! emitted window still changes its sums, and the sensor's mean is emitted again (see
//! [`WindowSums::corrections`]); a reading past the horizon is refused.

use std::collections::VecDeque;
use std::sync::Arc;

use smartgrid_runtime::dense_map::DenseMap;
use smartgrid_runtime::operator::Time;
use smartgrid_runtime::{Reading, Row, SensorId};

use super::WindowMean;
use super::seen::Seen;

/// Sensors of the kept windows, numbered densely, with the times each was counted at.
#[derive(Default)]
pub(super) struct Slots {
    /// A sensor's slot is its position here.
    index: DenseMap<SensorId, ()>,
    pub(super) seen: Seen,
}

impl Slots {
    #[inline]
    pub(super) fn slot(&mut self, sensor: SensorId) -> usize {
        let seen = &mut self.seen;
        self.index
            .position_or_insert_with(sensor, || seen.add_slot())
    }

    /// The sensor of each slot.
    #[inline]
    pub(super) fn sensors(&self) -> &[SensorId] {
        self.index.keys()
    }
}

/// A window not yet emitted: `C` is what the operator emits it with (its capability).
pub(super) struct Open<C> {
    pub(super) start_ms: i64,
    /// The time the window may close at: its last millisecond plus the lateness.
    pub(super) close: Time,
    pub(super) token: C,
    /// `stride` numbers per slot: count, then the field sums.
    pub(super) sums: Vec<f64>,
}

/// A window already emitted, kept for late readings until its horizon passes.
pub(super) struct Emitted {
    pub(super) start_ms: i64,
    /// The close plus the correction horizon: after it, the window is forgotten.
    pub(super) expire: Time,
    pub(super) sums: Vec<f64>,
}

/// How a window's sums are laid out and added to.
pub(super) struct Layout {
    pub(super) fields: Arc<[usize]>,
    /// `fields` is `0..n`: sums add the row's first `n` values in one run.
    leading: bool,
    pub(super) stride: usize,
}

impl Layout {
    /// Add `values` to slot `slot` of `sums`.
    #[inline]
    fn add(&self, sums: &mut Vec<f64>, slot: usize, values: &[f64]) {
        let stride = self.stride;
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

    /// The means of slot `slot` (each field's, then the count), if it has readings.
    fn means(&self, sums: &[f64], slot: usize) -> Option<Row> {
        let run = sums.get(slot * self.stride..(slot + 1) * self.stride)?;
        let (&count, acc) = run.split_first().expect("stride is at least 1");
        if count == 0.0 {
            return None;
        }
        let mut values: Row = acc.iter().map(|sum| sum / count).collect();
        values.push(count);
        Some(values)
    }

    fn holds(&self, sums: &[f64], slot: usize) -> bool {
        sums.get(slot * self.stride)
            .is_some_and(|&count| count > 0.0)
    }

    /// `sums` with only the slots in `keep`, renumbered in that order.
    fn renumber(&self, sums: &[f64], keep: &[usize]) -> Vec<f64> {
        let stride = self.stride;
        let mut out = Vec::with_capacity(keep.len() * stride);
        for &old in keep {
            match sums.get(old * stride..(old + 1) * stride) {
                Some(run) => out.extend_from_slice(run),
                None => out.extend(std::iter::repeat_n(0.0, stride)),
            }
        }
        out
    }
}

/// Where a reading goes among the windows of one size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Open(usize),
    Emitted(usize),
    /// Past the horizon: the window's start and close.
    Late(i64, Time),
}

/// The windows of one size.
pub(super) struct Windows<C> {
    pub(super) size_ms: i64,
    hold_ms: u64,
    correction_ms: u64,
    pub(super) layout: Layout,
    /// Sorted by start (and so by `close`), oldest first; rarely more than two.
    pub(super) open: Vec<Open<C>>,
    /// Sorted by start, oldest first: about `correction / size` of them.
    pub(super) emitted: VecDeque<Emitted>,
    /// The open window the previous reading went to: readings arrive nearly in order.
    last: usize,
    /// Arrays of forgotten windows, reused by the next ones.
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
            correction_ms: spec.correction_ms,
            layout: Layout {
                leading: spec.fields.iter().enumerate().all(|(i, &f)| i == f),
                stride: spec.fields.len() + 1,
                fields: Arc::clone(&spec.fields),
            },
            open: Vec::new(),
            emitted: VecDeque::new(),
            last: 0,
            spare: Vec::new(),
        }
    }

    /// The start and close of the window holding `time_ms`; `None` before i64::MIN (a
    /// time some 292 million years ago, which only a broken payload carries).
    fn bounds(&self, time_ms: i64) -> Option<(i64, Time)> {
        let start = time_ms.div_euclid(self.size_ms).checked_mul(self.size_ms)?;
        Some((start, self.close_of(start)))
    }

    /// The close of the window starting at `start_ms`: its last millisecond plus the
    /// lateness. (Windows before 1970 all close at `hold_ms`: their start tells them
    /// apart.)
    pub(super) fn close_of(&self, start_ms: i64) -> Time {
        u64::try_from(start_ms)
            .unwrap_or(0)
            .saturating_add(self.hold_ms)
    }

    /// The close plus the correction horizon.
    pub(super) fn expiry(&self, close: Time) -> Time {
        close.saturating_add(self.correction_ms)
    }

    /// Where `time_ms` goes in a batch stamped `now`: its open window (opened with
    /// `open(close)` if it closes at `now` or later), or its emitted window (made, empty,
    /// if none was kept) while its horizon has not passed `now`.
    #[inline]
    fn target(&mut self, time_ms: i64, now: Time, open: impl FnOnce(Time) -> C) -> Target {
        // A window past its close but not emitted yet (the frontier has moved on in this
        // activation) still takes a reading within the horizon, which a correction would
        // add anyway; past the horizon the reading is late whether or not the window was
        // emitted, so what is refused does not depend on when the operator runs.
        if let Some(w) = self.open.get(self.last)
            && time_ms >= w.start_ms
            && time_ms.abs_diff(w.start_ms) < self.size_ms.unsigned_abs()
            && self.expiry(w.close) >= now
        {
            return Target::Open(self.last);
        }
        let Some((start, close)) = self.bounds(time_ms) else {
            return Target::Late(i64::MIN, 0);
        };
        let expire = self.expiry(close);
        let at = self.open.partition_point(|w| w.start_ms < start);
        if self.open.get(at).is_some_and(|w| w.start_ms == start) {
            if expire < now {
                return Target::Late(start, close);
            }
            self.last = at;
            return Target::Open(at);
        }
        let kept = self.emitted.partition_point(|w| w.start_ms < start);
        let emitted = self.emitted.get(kept).is_some_and(|w| w.start_ms == start);
        if close >= now {
            if emitted {
                // Only a restored state can make `now` precede an emitted window's close.
                return Target::Emitted(kept);
            }
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
            self.last = at;
            return Target::Open(at);
        }
        if expire < now {
            // Whether or not the frontier has made it forget the window yet.
            return Target::Late(start, close);
        }
        if emitted {
            return Target::Emitted(kept);
        }
        // No reading came before it closed: the late one makes it.
        let sums = self.spare.pop().unwrap_or_default();
        self.emitted.insert(
            kept,
            Emitted {
                start_ms: start,
                expire,
                sums,
            },
        );
        Target::Emitted(kept)
    }

    /// The emitted window starting at `start_ms`.
    fn emitted_at(&self, start_ms: i64) -> Option<&Emitted> {
        let at = self.emitted.partition_point(|w| w.start_ms < start_ms);
        self.emitted.get(at).filter(|w| w.start_ms == start_ms)
    }

    /// Whether slot `slot` has readings in any kept window.
    fn holds(&self, slot: usize) -> bool {
        let layout = &self.layout;
        self.open.iter().any(|w| layout.holds(&w.sums, slot))
            || self.emitted.iter().any(|w| layout.holds(&w.sums, slot))
    }

    /// The start of the oldest kept window.
    fn oldest(&self) -> Option<i64> {
        let open = self.open.first().map(|w| w.start_ms);
        let emitted = self.emitted.front().map(|w| w.start_ms);
        open.into_iter().chain(emitted).min()
    }

    /// Keep only the slots in `keep`, renumbered in that order.
    fn renumber(&mut self, keep: &[usize]) {
        for window in &mut self.open {
            window.sums = self.layout.renumber(&window.sums, keep);
        }
        for window in &mut self.emitted {
            window.sums = self.layout.renumber(&window.sums, keep);
        }
        self.spare.clear();
    }

    /// Keep the emptied `sums` for the next window.
    fn recycle(&mut self, mut sums: Vec<f64>) {
        sums.clear();
        self.spare.push(sums);
    }
}

/// A reading a window size refused: its window's horizon had passed.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Refused {
    /// The size (index) that refused it.
    pub(super) size: usize,
    pub(super) reading: Reading,
    /// Its window's start and close (end plus lateness).
    pub(super) start_ms: i64,
    pub(super) close: Time,
    /// The time of the batch it came in.
    pub(super) now: Time,
}

/// What adding one batch did, besides changing sums; the operator empties it.
#[derive(Default)]
pub(super) struct Batch {
    /// Per size, readings refused: past their window's horizon.
    pub(super) late: Vec<u64>,
    /// Readings refused, for the dead letters.
    pub(super) refused: Vec<Refused>,
    /// Readings already counted (same sensor, same event time).
    pub(super) duplicates: u64,
    /// (size, window start, slot) of every emitted window a reading changed.
    corrected: Vec<(usize, i64, u32)>,
    /// The slots of the readings being added (kept for its allocation).
    slots: Vec<usize>,
}

impl Batch {
    /// An empty batch for `sizes` window sizes.
    pub(super) fn new(sizes: usize) -> Self {
        Batch {
            late: vec![0; sizes],
            ..Batch::default()
        }
    }

    /// Whether some emitted window changed.
    pub(super) fn has_corrections(&self) -> bool {
        !self.corrected.is_empty()
    }
}

/// The windows of one operator, of one or more sizes over the same input: a reading's
/// sensor is looked up once for all of them.
pub(super) struct WindowSums<C> {
    pub(super) slots: Slots,
    pub(super) sizes: Vec<Windows<C>>,
}

impl<C> WindowSums<C> {
    pub(super) fn new<'w>(windows: impl IntoIterator<Item = &'w WindowMean>) -> Self {
        WindowSums {
            slots: Slots::default(),
            sizes: windows.into_iter().map(Windows::new).collect(),
        }
    }

    /// Add `readings`, which came in a batch stamped `now`, each to its window of every
    /// size, opening one with `open(size, close)` where needed; a reading of a sensor
    /// and event time already counted is dropped. What else happened goes into `batch`.
    ///
    /// The readings' slots are looked up first, in one pass: lookups with nothing
    /// between them overlap in the memory system, where one per reading, between its
    /// window adds, would each wait alone (BENCHMARKS.md, "Closing the gap").
    pub(super) fn add_all(
        &mut self,
        readings: &[Reading],
        now: Time,
        mut open: impl FnMut(usize, Time) -> C,
        batch: &mut Batch,
    ) {
        let mut slots = std::mem::take(&mut batch.slots);
        slots.clear();
        slots.extend(readings.iter().map(|r| self.slots.slot(r.sensor)));
        for (reading, &slot) in readings.iter().zip(&slots) {
            self.add_at(slot, reading, now, &mut open, batch);
        }
        batch.slots = slots;
    }

    #[inline(always)]
    fn add_at(
        &mut self,
        slot: usize,
        reading: &Reading,
        now: Time,
        mut open: impl FnMut(usize, Time) -> C,
        batch: &mut Batch,
    ) {
        let Some(vacancy) = self.slots.seen.find(slot, reading.time_ms) else {
            batch.duplicates += 1;
            return;
        };
        let values = reading.values.as_slice();
        let mut counted = false;
        for (k, windows) in self.sizes.iter_mut().enumerate() {
            match windows.target(reading.time_ms, now, |close| open(k, close)) {
                Target::Open(w) => {
                    windows.layout.add(&mut windows.open[w].sums, slot, values);
                    counted = true;
                }
                Target::Emitted(w) => {
                    let window = &mut windows.emitted[w];
                    windows.layout.add(&mut window.sums, slot, values);
                    let slot = u32::try_from(slot).unwrap_or(u32::MAX);
                    batch.corrected.push((k, window.start_ms, slot));
                    counted = true;
                }
                Target::Late(start_ms, close) => {
                    batch.late[k] += 1;
                    batch.refused.push(Refused {
                        size: k,
                        reading: reading.clone(),
                        start_ms,
                        close,
                        now,
                    });
                }
            }
        }
        // A reading no size counted is not remembered: its windows are all gone.
        if counted {
            self.slots.seen.insert(slot, reading.time_ms, vacancy);
        }
    }

    /// The new means of every (emitted window, sensor) the batch changed, into
    /// `out[size]` (timestamped at the window's start, as when it was first emitted);
    /// empties the batch's list.
    pub(super) fn corrections(&self, batch: &mut Batch, out: &mut [Vec<Reading>]) {
        batch.corrected.sort_unstable();
        batch.corrected.dedup();
        for (k, start_ms, slot) in batch.corrected.drain(..) {
            let windows = &self.sizes[k];
            let slot = slot as usize;
            let Some(window) = windows.emitted_at(start_ms) else {
                continue;
            };
            if let Some(values) = windows.layout.means(&window.sums, slot) {
                out[k].push(Reading {
                    sensor: self.slots.sensors()[slot],
                    time_ms: start_ms,
                    values,
                });
            }
        }
    }

    /// The oldest open window of size `size`, if `passed(close)`, moved to the emitted
    /// ones: its token, and its means sorted by sensor in `out` (each: the field means,
    /// then the count; timestamped at the window's start).
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
        for slot in 0..window.sums.len() / windows.layout.stride {
            if let Some(values) = windows.layout.means(&window.sums, slot) {
                out.push(Reading {
                    sensor: self.slots.sensors()[slot],
                    time_ms: window.start_ms,
                    values,
                });
            }
        }
        out[before..].sort_unstable_by_key(|r| r.sensor);
        let touched = out.len() - before;
        let expire = windows.expiry(window.close);
        let at = windows
            .emitted
            .partition_point(|w| w.start_ms < window.start_ms);
        windows.emitted.insert(
            at,
            Emitted {
                start_ms: window.start_ms,
                expire,
                sums: window.sums,
            },
        );
        if self.slots.sensors().len() > 64 && touched * 2 < self.slots.sensors().len() {
            self.forget_idle_sensors();
        }
        Some(window.token)
    }

    /// Forget the emitted windows whose horizon `passed`, and the counted times no kept
    /// window covers any more.
    pub(super) fn expire(&mut self, passed: impl Fn(&Time) -> bool) {
        let mut any = false;
        for windows in &mut self.sizes {
            while windows.emitted.front().is_some_and(|w| passed(&w.expire)) {
                let window = windows.emitted.pop_front().expect("just looked");
                windows.recycle(window.sums);
                any = true;
            }
        }
        if any {
            // A time before every kept window's start can never be counted again: its
            // windows of every size are gone, and the frontier is past their horizons.
            let floor = self
                .sizes
                .iter()
                .filter_map(Windows::oldest)
                .min()
                .unwrap_or(i64::MAX);
            self.slots.seen.prune(floor);
        }
    }

    /// Renumber the slots to the sensors the kept windows still hold, so a changing set
    /// of sensors does not grow the arrays without bound. A sensor no kept window holds
    /// has no counted time that matters.
    fn forget_idle_sensors(&mut self) {
        let keep: Vec<bool> = (0..self.slots.sensors().len())
            .map(|slot| self.sizes.iter().any(|w| w.holds(slot)))
            .collect();
        let kept: Vec<usize> = (0..keep.len()).filter(|&slot| keep[slot]).collect();
        for windows in &mut self.sizes {
            windows.renumber(&kept);
        }
        self.slots.seen.renumber(&kept);
        // `retain` visits the slots in order.
        let mut keep = keep.into_iter();
        self.slots
            .index
            .retain(|_, ()| keep.next().unwrap_or(false));
    }

    /// Whether no window is kept.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.sizes
            .iter()
            .all(|w| w.open.is_empty() && w.emitted.is_empty())
    }
}

#[cfg(test)]
#[path = "sums_tests.rs"]
mod tests;
