//! A `window_mean` operator's windows as plain data, for checkpoints: every open window
//! and every emitted one still within its correction horizon, per sensor its count and
//! its sums; and per sensor the event times counted in any of them. Restoring it into a
//! fresh operator (on a worker that owns a share of the sensors) and going on gives the
//! same means as a run that never stopped. The numbers are `f64` as they were;
//! [`WindowSumsState::to_bytes`] keeps them to the bit (JSON would turn a NaN sum into
//! `null`).

use serde::{Deserialize, Serialize};
use smartgrid_runtime::SensorId;
use smartgrid_runtime::operator::Time;

use super::sums::{Emitted, Open, WindowSums};
use super::time_list::TimeList;

/// Every kept window of one operator, by size (in the order of its window specs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowSumsState {
    /// One per window size.
    pub sizes: Vec<SizeState>,
    /// Per sensor, sorted by id, the event times counted in any kept window, so
    /// redeliveries stay duplicates after a restore. Once per sensor, not per window
    /// and size: they are most of a checkpoint's bytes.
    pub counted: Vec<CountedTimes>,
}

/// One sensor's counted event times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountedTimes {
    /// The sensor id.
    pub sensor: String,
    /// The times, sorted.
    pub times: TimeList,
}

/// The kept windows of one size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SizeState {
    /// The window length it was made with: a restore into other windows is refused.
    pub size_ms: u64,
    /// How many fields it averages (also checked on restore).
    pub fields: usize,
    /// Oldest first.
    pub windows: Vec<WindowState>,
}

/// One window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    /// Its start (ms since the epoch); the end and close follow from the settings.
    pub start_ms: i64,
    /// Whether its means were emitted (it is kept for corrections) or not (it is open).
    pub emitted: bool,
    /// The sensors with readings in it, sorted by id.
    pub sensors: Vec<SensorState>,
}

/// One sensor's part of a window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SensorState {
    /// The sensor id.
    pub sensor: String,
    /// How many readings were counted.
    pub count: u64,
    /// The sum of each averaged field.
    pub sums: Vec<f64>,
}

/// Why a state cannot be restored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RestoreError {
    /// The state has another number of window sizes.
    #[error("the state has {found} window sizes; this node has {expected}")]
    Sizes {
        /// In the state.
        found: usize,
        /// In the operator.
        expected: usize,
    },
    /// A size's length or field count differs.
    #[error(
        "window {index} was {found_ms} ms over {found_fields} fields; it is now {expected_ms} ms over {expected_fields}"
    )]
    Shape {
        /// Which size.
        index: usize,
        /// In the state.
        found_ms: u64,
        /// In the state.
        found_fields: usize,
        /// In the operator.
        expected_ms: u64,
        /// In the operator.
        expected_fields: usize,
    },
    /// A sensor's sums do not match the field count, or an id is not a sensor id.
    #[error("a window of sensor `{0}` is malformed")]
    Sensor(String),
    /// The bytes are not a state.
    #[error("not a window_mean state: {0}")]
    Decode(String),
}

impl WindowSumsState {
    /// The state as bytes (bincode: every `f64` to the bit).
    pub fn to_bytes(&self) -> Vec<u8> {
        bincode::serialize(self).expect("plain structs of numbers and strings serialize")
    }

    /// A state from [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RestoreError> {
        bincode::deserialize(bytes).map_err(|e| RestoreError::Decode(e.to_string()))
    }
}

impl<C> WindowSums<C> {
    /// Every kept window as plain data. The operator writes the same bytes without
    /// this copy ([`export_bytes`](Self::export_bytes)); the tests compare the two.
    #[cfg(test)]
    pub(super) fn export(&self) -> WindowSumsState {
        let sizes = self
            .sizes
            .iter()
            .map(|windows| {
                let layout = &windows.layout;
                let window = |start_ms: i64, emitted: bool, sums: &[f64]| {
                    let mut sensors: Vec<SensorState> = sums
                        .chunks_exact(layout.stride)
                        .enumerate()
                        .filter(|(_, run)| run[0] > 0.0)
                        .map(|(slot, run)| SensorState {
                            sensor: self.slots.sensors()[slot].as_str().to_string(),
                            count: run[0] as u64,
                            sums: run[1..].to_vec(),
                        })
                        .collect();
                    sensors.sort_unstable_by(|a, b| a.sensor.cmp(&b.sensor));
                    WindowState {
                        start_ms,
                        emitted,
                        sensors,
                    }
                };
                let mut list: Vec<WindowState> = windows
                    .emitted
                    .iter()
                    .map(|w| window(w.start_ms, true, &w.sums))
                    .chain(
                        windows
                            .open
                            .iter()
                            .map(|w| window(w.start_ms, false, &w.sums)),
                    )
                    .collect();
                list.sort_by_key(|w| w.start_ms);
                SizeState {
                    size_ms: windows.size_ms.unsigned_abs(),
                    fields: layout.fields.len(),
                    windows: list,
                }
            })
            .collect();
        let mut counted: Vec<CountedTimes> = (0..self.slots.sensors().len())
            .filter_map(|slot| {
                let (mut times, mut last) = (TimeList::default(), None);
                self.slots.seen.each(slot, |t| times.push(t, &mut last));
                (!times.is_empty()).then(|| CountedTimes {
                    sensor: self.slots.sensors()[slot].as_str().to_string(),
                    times,
                })
            })
            .collect();
        counted.sort_unstable_by(|a, b| a.sensor.cmp(&b.sensor));
        WindowSumsState { sizes, counted }
    }

    /// Add `state` to these windows: the sensors `keep` accepts (this worker's share),
    /// each open window with the token `open(size, close)` makes for it. Windows already
    /// here are added to, so the states of several workers can be restored into one.
    /// Nothing is changed if the state does not fit these windows.
    pub(super) fn import(
        &mut self,
        state: &WindowSumsState,
        mut open: impl FnMut(usize, Time) -> C,
        keep: impl Fn(SensorId) -> bool,
    ) -> Result<(), RestoreError> {
        self.check(state)?;
        for (k, size) in state.sizes.iter().enumerate() {
            for window in &size.windows {
                let mine: Vec<(SensorId, &SensorState)> = window
                    .sensors
                    .iter()
                    .filter_map(|s| SensorId::new(&s.sensor).ok().map(|id| (id, s)))
                    .filter(|(id, _)| keep(*id))
                    .collect();
                if mine.is_empty() && window.emitted {
                    continue;
                }
                let slots: Vec<usize> = mine.iter().map(|(id, _)| self.slots.slot(*id)).collect();
                let stride = self.sizes[k].layout.stride;
                let sums = self.window_sums(k, window.start_ms, window.emitted, &mut open);
                for (&slot, (_, sensor)) in slots.iter().zip(&mine) {
                    if sums.len() < (slot + 1) * stride {
                        sums.resize((slot + 1) * stride, 0.0);
                    }
                    let run = &mut sums[slot * stride..(slot + 1) * stride];
                    if run[0] == 0.0 {
                        // Copied, not added to zero: a sum of -0.0 stays -0.0.
                        run[1..].copy_from_slice(&sensor.sums);
                    } else {
                        for (sum, value) in run[1..].iter_mut().zip(&sensor.sums) {
                            *sum += value;
                        }
                    }
                    run[0] += sensor.count as f64;
                }
            }
        }
        for counted in &state.counted {
            let Ok(id) = SensorId::new(&counted.sensor) else {
                continue;
            };
            if !keep(id) {
                continue;
            }
            let slot = self.slots.slot(id);
            let seen = &mut self.slots.seen;
            // `check` decoded every list already.
            for t in counted.times.times().unwrap_or_default() {
                if let Some(at) = seen.find(slot, t) {
                    seen.insert(slot, t, at);
                }
            }
        }
        Ok(())
    }

    /// Refuses a state made with other windows, before anything is changed.
    fn check(&self, state: &WindowSumsState) -> Result<(), RestoreError> {
        if state.sizes.len() != self.sizes.len() {
            return Err(RestoreError::Sizes {
                found: state.sizes.len(),
                expected: self.sizes.len(),
            });
        }
        for (index, (size, windows)) in state.sizes.iter().zip(&self.sizes).enumerate() {
            let fields = windows.layout.fields.len();
            if size.size_ms != windows.size_ms.unsigned_abs() || size.fields != fields {
                return Err(RestoreError::Shape {
                    index,
                    found_ms: size.size_ms,
                    found_fields: size.fields,
                    expected_ms: windows.size_ms.unsigned_abs(),
                    expected_fields: fields,
                });
            }
            for window in &size.windows {
                if let Some(bad) = window
                    .sensors
                    .iter()
                    .find(|s| s.sums.len() != fields || SensorId::new(&s.sensor).is_err())
                {
                    return Err(RestoreError::Sensor(bad.sensor.clone()));
                }
            }
        }
        for counted in &state.counted {
            if SensorId::new(&counted.sensor).is_err() {
                return Err(RestoreError::Sensor(counted.sensor.clone()));
            }
            if let Err(e) = counted.times.times() {
                return Err(RestoreError::Decode(format!(
                    "sensor `{}`: {e}",
                    counted.sensor
                )));
            }
        }
        Ok(())
    }

    /// The sums of size `k`'s window at `start_ms`, made (open with `open`'s token, or
    /// emitted) if it is not kept yet.
    fn window_sums(
        &mut self,
        k: usize,
        start_ms: i64,
        emitted: bool,
        open: &mut impl FnMut(usize, Time) -> C,
    ) -> &mut Vec<f64> {
        let windows = &mut self.sizes[k];
        let close = windows.close_of(start_ms);
        let at = windows.open.partition_point(|w| w.start_ms < start_ms);
        if windows.open.get(at).is_some_and(|w| w.start_ms == start_ms) {
            return &mut windows.open[at].sums;
        }
        let kept = windows.emitted.partition_point(|w| w.start_ms < start_ms);
        if windows
            .emitted
            .get(kept)
            .is_some_and(|w| w.start_ms == start_ms)
        {
            return &mut windows.emitted[kept].sums;
        }
        if emitted {
            let expire = windows.expiry(close);
            windows.emitted.insert(
                kept,
                Emitted {
                    start_ms,
                    expire,
                    sums: Vec::new(),
                },
            );
            &mut windows.emitted[kept].sums
        } else {
            windows.open.insert(
                at,
                Open {
                    start_ms,
                    close,
                    token: open(k, close),
                    sums: Vec::new(),
                },
            );
            &mut windows.open[at].sums
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::WindowMean;
    use super::super::sums::Batch;
    use super::*;
    use smartgrid_runtime::Reading;

    fn spec(size_ms: u64, fields: &[usize]) -> WindowMean {
        WindowMean {
            size_ms,
            lateness_ms: 0,
            correction_ms: 20_000,
            fields: fields.into(),
        }
    }

    fn sums() -> WindowSums<Time> {
        WindowSums::new(&[spec(10_000, &[0, 2]), spec(60_000, &[1])])
    }

    /// A batch stamped `now`; returns the corrections it made, per size.
    fn feed(sums: &mut WindowSums<Time>, now: Time, readings: &[Reading]) -> Vec<Vec<Reading>> {
        let mut batch = Batch::new(2);
        sums.add_all(readings, now, |_, close| close, &mut batch);
        let mut out = vec![Vec::new(), Vec::new()];
        sums.corrections(&mut batch, &mut out);
        out
    }

    /// Close and forget what the frontier `at` has passed; returns what closed.
    fn advance(sums: &mut WindowSums<Time>, at: Time) -> Vec<Reading> {
        let mut out = Vec::new();
        for k in 0..2 {
            while sums.close_oldest(k, |&c| c < at, &mut out).is_some() {}
        }
        sums.expire(|&e| e < at);
        out
    }

    /// Readings of 5 sensors over 3 minutes, some out of order, some twice, with odd
    /// values whose sums do not round the same way in another order.
    fn readings() -> Vec<(Time, Reading)> {
        let mut next = crate::xorshift::xorshift(0x9e37_79b9_7f4a_7c15_u64);
        let mut out = Vec::new();
        for i in 0..3_000_i64 {
            let ms = 1_700_000_000_000 + i * 60 - (next() % 3_000) as i64;
            let sensor = SensorId::new(&format!("s{}", next() % 5)).expect("short");
            let values = (0..3).map(|_| (next() % 1_000_000) as f64 / 7.0).collect();
            let reading = Reading {
                sensor,
                time_ms: ms,
                values,
            };
            let now = (1_700_000_000_000 + i * 60 - 2_000) as Time;
            if i % 17 == 0 {
                out.push((now, reading.clone()));
            }
            out.push((now, reading));
        }
        out
    }

    /// Everything one `WindowSums` emits for `readings`, optionally exported, encoded
    /// and restored (into two workers' shares, merged back) after `stop`.
    fn run(readings: &[(Time, Reading)], stop: Option<usize>) -> Vec<Reading> {
        let mut sums = sums();
        let mut emitted = Vec::new();
        for (i, (now, r)) in readings.iter().enumerate() {
            if Some(i) == stop {
                // What the operator writes, and the plain-data copy it stands for.
                let bytes = sums.export_bytes();
                assert_eq!(bytes, sums.export().to_bytes());
                let mut streamed = Vec::new();
                sums.export_into(&mut streamed).expect("writes into memory");
                assert_eq!(streamed, bytes, "a stop streams the same bytes");
                let state = WindowSumsState::from_bytes(&bytes).expect("decodes");
                assert_eq!(state, sums.export());
                let mut fresh = super::super::sums::WindowSums::new(&[
                    spec(10_000, &[0, 2]),
                    spec(60_000, &[1]),
                ]);
                let even = |s: SensorId| s.route_hash().is_multiple_of(2);
                fresh
                    .import(&state, |_, close| close, even)
                    .expect("restores");
                fresh
                    .import(&state, |_, close| close, |s| !even(s))
                    .expect("restores");
                assert_eq!(fresh.export(), state);
                sums = fresh;
            }
            emitted.extend(advance(&mut sums, *now));
            emitted.extend(feed(&mut sums, *now, std::slice::from_ref(r)).concat());
        }
        emitted.extend(advance(&mut sums, Time::MAX));
        emitted
    }

    #[test]
    fn a_restored_state_goes_on_as_if_it_never_stopped() {
        let readings = readings();
        let whole = run(&readings, None);
        assert!(whole.len() > 100);
        for stop in [1, 777, 1_500, 2_999] {
            let restored = run(&readings, Some(stop));
            assert_eq!(restored.len(), whole.len(), "stopped at {stop}");
            for (a, b) in restored.iter().zip(&whole) {
                assert_eq!((a.sensor, a.time_ms), (b.sensor, b.time_ms));
                let bits = |r: &Reading| r.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(a), bits(b), "stopped at {stop}");
            }
        }
    }

    #[test]
    fn a_state_of_other_windows_is_refused_and_changes_nothing() {
        let mut source = sums();
        feed(
            &mut source,
            0,
            &[Reading {
                sensor: SensorId::new("a").expect("short"),
                time_ms: 5,
                values: [1.0, 2.0, 3.0].into_iter().collect(),
            }],
        );
        let state = source.export();
        let mut other: WindowSums<Time> =
            WindowSums::new(&[spec(10_000, &[0]), spec(60_000, &[1])]);
        let error = other
            .import(&state, |_, c| c, |_| true)
            .expect_err("refused");
        assert!(
            matches!(error, RestoreError::Shape { index: 0, .. }),
            "{error}"
        );
        assert!(other.is_empty());
        let mut fewer: WindowSums<Time> = WindowSums::new(&[spec(10_000, &[0, 2])]);
        assert_eq!(
            fewer.import(&state, |_, c| c, |_| true),
            Err(RestoreError::Sizes {
                found: 2,
                expected: 1
            })
        );
        assert!(WindowSumsState::from_bytes(b"nonsense").is_err());
    }
}
