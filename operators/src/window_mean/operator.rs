//! The timely operator behind `window_mean`.

use std::sync::Arc;

use smartgrid_runtime::Reading;
use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::operator::{Readings, Time};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::sums::WindowSums;

/// What to average and over which windows.
#[derive(Clone, Debug)]
pub struct WindowMean {
    /// Window length in ms; windows start at multiples of it.
    pub size_ms: u64,
    /// How long past its end a window accepts late readings, in ms.
    pub lateness_ms: u64,
    /// Positions of the averaged fields in the input row.
    pub fields: Arc<[usize]>,
}

/// Adds `window_mean` to streams of readings.
pub trait WindowMeanExt<'s> {
    /// Tumbling-window means per sensor. The stream must be partitioned by sensor
    /// (with several workers; see
    /// [`route_by_sensor`](smartgrid_runtime::operator::route_by_sensor), which a
    /// pipeline's renderer inserts), so any number of workers gives the same windows. A
    /// reading whose window has already been emitted is counted in `late` and dropped.
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
    ///             WindowMean { size_ms: 10_000, lateness_ms: 0, fields: vec![0].into() },
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

    /// Several windows over this stream in one operator, one output stream each, in
    /// order: each reading's sensor is looked up once for all of them and the stream is
    /// not copied per window. Each window is what [`window_mean`](Self::window_mean)
    /// would give. The input must be partitioned by sensor, as for `window_mean`.
    ///
    /// ```
    /// use smartgrid_operators::window_mean::{CountedWindow, WindowMean, WindowMeanExt};
    /// use smartgrid_runtime::metrics::Counter;
    /// use smartgrid_runtime::{Reading, Row, SensorId};
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Event;
    ///
    /// let sensor = SensorId::new("meter-1").expect("short name");
    /// let reading = move |ms: i64, p: f64| Reading { sensor, time_ms: ms, values: Row::from_iter([p]) };
    /// let window = |size_ms: u64| CountedWindow {
    ///     window: WindowMean { size_ms, lateness_ms: 0, fields: vec![0].into() },
    ///     late: Counter::default(),
    ///     emitted: Counter::default(),
    /// };
    /// let (short, long) = timely::example(move |scope| {
    ///     let mut outputs = vec![reading(1_000, 10.0), reading(9_000, 20.0), reading(12_000, 5.0)]
    ///         .to_stream(scope)
    ///         .container::<Vec<_>>()
    ///         .window_means(vec![window(10_000), window(60_000)], "means")
    ///         .into_iter()
    ///         .map(|means| means.capture());
    ///     (outputs.next().expect("10 s"), outputs.next().expect("1 min"))
    /// });
    /// let values = |captured: std::sync::mpsc::Receiver<Event<u64, Vec<Reading>>>| -> Vec<Vec<f64>> {
    ///     captured
    ///         .try_iter()
    ///         .filter_map(|event| match event {
    ///             Event::Messages(_, data) => Some(data),
    ///             Event::Progress(_) => None,
    ///         })
    ///         .flatten()
    ///         .map(|r| r.values.to_vec())
    ///         .collect()
    /// };
    /// // Two 10 s windows; one minute window holding all three readings.
    /// assert_eq!(values(short), [vec![15.0, 2.0], vec![5.0, 1.0]]);
    /// assert_eq!(values(long), [vec![35.0 / 3.0, 3.0]]);
    /// ```
    fn window_means(self, windows: Vec<CountedWindow>, name: &str) -> Vec<Readings<'s>>;
}

/// One output of the operator: a window size's means.
type MeansOutput = OutputBuilder<Time, CapacityContainerBuilder<Vec<Reading>>>;

/// A window and the counters it reports to.
#[derive(Clone, Debug)]
pub struct CountedWindow {
    /// What to average, over which windows.
    pub window: WindowMean,
    /// Readings that came after their window was emitted.
    pub late: Counter,
    /// Means emitted (one per sensor and window).
    pub emitted: Counter,
}

impl<'s> WindowMeanExt<'s> for Readings<'s> {
    fn window_mean(
        self,
        window: WindowMean,
        late: Counter,
        emitted: Counter,
        name: &str,
    ) -> Readings<'s> {
        let counted = CountedWindow {
            window,
            late,
            emitted,
        };
        self.window_means(vec![counted], name)
            .pop()
            .expect("one output per window")
    }

    fn window_means(self, windows: Vec<CountedWindow>, name: &str) -> Vec<Readings<'s>> {
        let input = self;
        let mut builder = OperatorBuilder::new(name.to_owned(), input.scope());
        // The input first: outputs added after it are connected to it.
        let mut input = builder.new_input(input, Pipeline);
        let (mut outputs, streams): (Vec<MeansOutput>, Vec<Readings<'s>>) = windows
            .iter()
            .map(|_| {
                let (output, stream) = builder.new_output();
                (OutputBuilder::from(output), stream)
            })
            .unzip();
        // Each open window holds a capability, for its output, at the time it may close.
        let mut sums: WindowSums<Capability<Time>> =
            WindowSums::new(windows.iter().map(|w| &w.window));
        builder.build(move |_initial_capabilities| {
            let mut means: Vec<Reading> = Vec::new();
            let mut late = vec![0; windows.len()];
            move |frontiers| {
                input.for_each(|capability, data| {
                    // Our sources always stamp their messages; an unstamped batch makes
                    // no progress claim, so no window could be held open for it.
                    let Some(&now) = capability.least() else {
                        late.iter_mut().for_each(|n| *n += data.len() as u64);
                        return;
                    };
                    for reading in data.iter() {
                        let open = |output, close| capability.delayed(&close, output);
                        sums.add(reading, now, open, &mut late);
                    }
                    data.clear();
                });
                // Shared counters are added to once per activation (see decode).
                for (window, n) in windows.iter().zip(&mut late) {
                    window.late.add(std::mem::take(n));
                }
                // Emit every window the frontier has passed, oldest first; dropping its
                // capability lets time move on downstream.
                let frontier = &frontiers[0];
                for (k, (output, window)) in outputs.iter_mut().zip(&windows).enumerate() {
                    let mut output = output.activate();
                    while let Some(capability) =
                        sums.close_oldest(k, |close| !frontier.less_equal(close), &mut means)
                    {
                        window.emitted.add(means.len() as u64);
                        output.session(&capability).give_iterator(means.drain(..));
                    }
                }
            }
        });
        streams
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartgrid_runtime::{Row, SensorId};
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
