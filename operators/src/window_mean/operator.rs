//! The timely operator behind `window_mean`.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::operator::{Readings, Time, route_by_sensor};
use smartgrid_runtime::{Reading, Row, SensorId};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

/// What to average and over which windows.
#[derive(Clone, Debug)]
pub struct WindowMean {
    /// Window length in ms; windows start at multiples of it.
    pub size_ms: u64,
    /// How long past its end a window accepts late readings, in ms.
    pub lateness_ms: u64,
    /// Positions of the averaged fields in the input row.
    pub fields: Arc<[usize]>,
    /// The input is already partitioned by sensor (no exchange needed).
    pub input_partitioned: bool,
}

/// Running sums for one sensor in one window.
struct Sums {
    count: u64,
    sums: Row,
}

/// One open window: the capability it will emit at, and its per-sensor sums.
struct OpenWindow {
    start_ms: i64,
    capability: Capability<Time>,
    sensors: FxHashMap<SensorId, Sums>,
}

/// Adds `window_mean` to streams of readings.
pub trait WindowMeanExt<'s> {
    /// Tumbling-window means per sensor. Readings are routed to workers by sensor, so
    /// any number of workers gives the same windows. A reading whose window has already
    /// been emitted is counted in `late` and dropped.
    ///
    /// ```
    /// use smartgrid_operators::window_mean::{WindowMean, WindowMeanExt};
    /// use smartgrid_runtime::metrics::Counter;
    /// use smartgrid_runtime::{Reading, Row, SensorId};
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Event;
    ///
    /// let sensor = SensorId::new("meter-1").expect("short name");
    /// let reading = move |ms: i64, p: f64| Reading { sensor, time_ms: ms, values: Row::from_iter([p]) };
    /// let captured = timely::example(move |scope| {
    ///     vec![reading(1_000, 10.0), reading(9_000, 20.0), reading(12_000, 5.0)]
    ///         .to_stream(scope)
    ///         .container::<Vec<_>>()
    ///         .window_mean(
    ///             WindowMean { size_ms: 10_000, lateness_ms: 0, fields: vec![0].into(), input_partitioned: false },
    ///             Counter::default(),
    ///             Counter::default(),
    ///             "means",
    ///         )
    ///         .capture()
    /// });
    /// let means: Vec<Reading> = captured
    ///     .try_iter()
    ///     .filter_map(|event| match event {
    ///         Event::Messages(_, data) => Some(data),
    ///         Event::Progress(_) => None,
    ///     })
    ///     .flatten()
    ///     .collect();
    /// // [0 s, 10 s): mean of 10 and 20 over 2 readings; [10 s, 20 s): one reading.
    /// assert_eq!(means[0].values.as_slice(), &[15.0, 2.0]);
    /// assert_eq!(means[1].values.as_slice(), &[5.0, 1.0]);
    /// assert_eq!((means[0].time_ms, means[1].time_ms), (0, 10_000));
    /// ```
    fn window_mean(
        self,
        window: WindowMean,
        late: Counter,
        emitted: Counter,
        name: &str,
    ) -> Readings<'s>;
}

impl<'s> WindowMeanExt<'s> for Readings<'s> {
    fn window_mean(
        self,
        window: WindowMean,
        late: Counter,
        emitted: Counter,
        name: &str,
    ) -> Readings<'s> {
        let size = i64::try_from(window.size_ms).unwrap_or(i64::MAX).max(1);
        let hold = window
            .size_ms
            .saturating_sub(1)
            .saturating_add(window.lateness_ms);
        let fields = window.fields;
        route_by_sensor(self, window.input_partitioned).unary_frontier(
            Pipeline,
            name,
            move |_capability, _info| {
                // Keyed by the time the window may close at: start + size - 1 + lateness.
                let mut open: BTreeMap<Time, OpenWindow> = BTreeMap::new();
                let mut emit: Vec<(SensorId, Sums)> = Vec::new();
                // Sensors seen in the last emitted window: the next one starts at that
                // size, so it does not rehash as it fills.
                let mut expected_sensors = 0;
                move |(input, frontier), output| {
                    // Shared counters are added to once per activation (see decode).
                    let mut late_here = 0;
                    input.for_each(|capability, data| {
                        // Our sources always stamp their messages; an unstamped batch makes
                        // no progress claim, so no window could be held open for it.
                        let Some(&now) = capability.least() else {
                            late_here += data.len() as u64;
                            return;
                        };
                        for reading in data.drain(..) {
                            let start = reading.time_ms.div_euclid(size) * size;
                            let close = u64::try_from(start).unwrap_or(0).saturating_add(hold);
                            if close < now {
                                late_here += 1;
                                continue;
                            }
                            let window = open.entry(close).or_insert_with(|| OpenWindow {
                                start_ms: start,
                                capability: capability.delayed(&close, 0),
                                sensors: FxHashMap::with_capacity_and_hasher(
                                    expected_sensors,
                                    Default::default(),
                                ),
                            });
                            let sums =
                                window
                                    .sensors
                                    .entry(reading.sensor)
                                    .or_insert_with(|| Sums {
                                        count: 0,
                                        sums: fields.iter().map(|_| 0.0).collect(),
                                    });
                            sums.count += 1;
                            for (sum, &i) in sums.sums.iter_mut().zip(fields.iter()) {
                                *sum += reading.values.get(i).copied().unwrap_or(f64::NAN);
                            }
                        }
                    });
                    late.add(late_here);
                    // Emit every window the frontier has passed, oldest first; dropping its
                    // capability lets time move on downstream.
                    while let Some(entry) = open.first_entry() {
                        if frontier.less_equal(entry.key()) {
                            break;
                        }
                        let window = entry.remove();
                        expected_sensors = window.sensors.len();
                        emitted.add(window.sensors.len() as u64);
                        emit.extend(window.sensors);
                        emit.sort_unstable_by_key(|(sensor, _)| *sensor);
                        let mut session = output.session(&window.capability);
                        for (sensor, s) in emit.drain(..) {
                            let n = s.count as f64;
                            let mut values: Row = s.sums.iter().map(|sum| sum / n).collect();
                            values.push(n);
                            session.give(Reading {
                                sensor,
                                time_ms: window.start_ms,
                                values,
                            });
                        }
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc as StdArc, Mutex};
    use timely::dataflow::InputHandle;
    use timely::dataflow::operators::{Input, Inspect, Probe};

    fn reading(sensor: &str, ms: i64, p: f64) -> Reading {
        Reading {
            sensor: SensorId::new(sensor).expect("short"),
            time_ms: ms,
            values: Row::from_iter([p]),
        }
    }

    /// Feeds `batches` of (input time, readings), advancing the input after each, and
    /// returns what was emitted with its timely time, plus the late count.
    fn drive(lateness_ms: u64, batches: Vec<(u64, Vec<Reading>)>) -> (Vec<(u64, Reading)>, u64) {
        let late = Counter::default();
        let seen = StdArc::new(Mutex::new(Vec::new()));
        let (late2, seen2) = (late.clone(), StdArc::clone(&seen));
        timely::execute_directly(move |worker| {
            let mut input = InputHandle::new();
            let probe = worker.dataflow::<u64, _, _>(|scope| {
                let window = WindowMean {
                    size_ms: 10_000,
                    lateness_ms,
                    fields: vec![0].into(),
                    input_partitioned: false,
                };
                scope
                    .input_from(&mut input)
                    .window_mean(window, late2, Counter::default(), "test")
                    .inspect_core(move |event| {
                        if let Ok((stamp, data)) = event {
                            let t = *stamp.least().expect("stamped");
                            seen2
                                .lock()
                                .expect("lock")
                                .extend(data.iter().map(|r| (t, r.clone())));
                        }
                    })
                    .probe()
                    .0
            });
            for (time, readings) in batches {
                input.advance_to(time);
                for r in readings {
                    input.send(r);
                }
                input.advance_to(time + 1);
                while probe.less_than(input.time()) {
                    worker.step();
                }
            }
        });
        let out = seen.lock().expect("lock").clone();
        (out, late.get())
    }

    #[test]
    fn emits_when_the_frontier_passes_and_counts_late_readings() {
        let (out, late) = drive(
            0,
            vec![
                (0, vec![reading("a", 1_000, 1.0), reading("b", 2_000, 10.0)]),
                (5_000, vec![reading("a", 6_000, 3.0)]),
                // Frontier passes 9_999: window [0, 10 s) is emitted here.
                (12_000, vec![reading("a", 12_500, 7.0)]),
                // Too late for [0, 10 s): counted, dropped.
                (13_000, vec![reading("a", 9_000, 100.0)]),
            ],
        );
        assert_eq!(late, 1);
        let first: Vec<_> = out.iter().filter(|(_, r)| r.time_ms == 0).collect();
        assert_eq!(first.len(), 2);
        assert_eq!(
            first[0].0, 9_999,
            "emitted at the window's last millisecond"
        );
        assert_eq!(first[0].1.values.as_slice(), &[2.0, 2.0]);
        assert_eq!(first[1].1.values.as_slice(), &[10.0, 1.0]);
        // The input closes: the open window [10 s, 20 s) flushes with its one reading.
        let second: Vec<_> = out.iter().filter(|(_, r)| r.time_ms == 10_000).collect();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].1.values.as_slice(), &[7.0, 1.0]);
    }

    #[test]
    fn lateness_keeps_a_window_open_longer() {
        let (out, late) = drive(
            5_000,
            vec![
                (0, vec![reading("a", 1_000, 1.0)]),
                (12_000, vec![reading("a", 9_000, 3.0)]), // within 5 s of lateness
                (15_000, vec![reading("a", 9_500, 5.0)]), // past end + lateness: late
            ],
        );
        assert_eq!(late, 1);
        assert_eq!(out[0].1.values.as_slice(), &[2.0, 2.0]);
        assert_eq!(out[0].0, 14_999);
    }
}
