//! The timely operator behind `window_mean`.

use std::sync::Arc;

use smartgrid_runtime::Reading;
use smartgrid_runtime::checkpoint::{AT_STOP, Held, NodeState};
use smartgrid_runtime::metrics::{Counter, Gauge, GaugeShare};
use smartgrid_runtime::operator::{Readings, Time};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;

use super::letters::LateLetters;
use super::state::WindowSumsState;
use super::sums::{Batch, Refused, WindowSums};
use crate::io::ThrottledLog;

/// What to average and over which windows.
#[derive(Clone, Debug)]
pub struct WindowMean {
    /// Window length in ms; windows start at multiples of it.
    pub size_ms: u64,
    /// How long past its end a window waits before it is emitted, in ms.
    pub lateness_ms: u64,
    /// How long past its close (end plus lateness) an emitted window still takes late
    /// readings and emits its corrected means, in ms (the correction horizon).
    pub correction_ms: u64,
    /// Positions of the averaged fields in the input row.
    pub fields: Arc<[usize]>,
}

impl WindowMean {
    /// The default correction horizon: a minute covers a broker restart or a reconnect
    /// backlog, and keeps a minute of event times per sensor for de-duplication.
    pub const DEFAULT_CORRECTION_MS: u64 = 60_000;
}

/// Adds `window_mean` to streams of readings.
pub trait WindowMeanExt<'s> {
    /// Tumbling-window means per sensor. The stream must be partitioned by sensor
    /// (with several workers; see
    /// [`route_by_sensor`](smartgrid_runtime::operator::route_by_sensor), which a
    /// pipeline's renderer inserts), so any number of workers gives the same windows.
    ///
    /// A reading of a sensor and event time already counted is dropped (`duplicates`).
    /// A reading whose window was emitted already, within the correction horizon, is
    /// added to it and the sensor's mean is emitted again, with the same timestamp (the
    /// window's start), at the time of the reading's batch (`corrections`); past the
    /// horizon it is counted in `late` and dead-lettered.
    ///
    /// ```
    /// use smartgrid_operators::window_mean::{CountedWindow, WindowMean, WindowMeanExt};
    /// use smartgrid_runtime::{Reading, Row, SensorId};
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Event;
    ///
    /// let sensor = SensorId::new("meter-1").expect("short name");
    /// let reading = move |ms: i64, p: f64| Reading { sensor, time_ms: ms, values: Row::from_iter([p]) };
    /// let window = WindowMean { size_ms: 10_000, lateness_ms: 0, correction_ms: 60_000, fields: vec![0].into() };
    /// let captured = timely::example(move |scope| {
    ///     vec![reading(1_000, 10.0), reading(9_000, 20.0), reading(9_000, 20.0), reading(12_000, 5.0)]
    ///         .to_stream(scope)
    ///         .container::<Vec<_>>()
    ///         .window_mean(CountedWindow::new(window), "means")
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
    /// // [0 s, 10 s): mean of 10 and 20 over 2 readings (the second 9 s reading is a
    /// // duplicate); [10 s, 20 s): one reading.
    /// assert_eq!(means[0].values.as_slice(), &[15.0, 2.0]);
    /// assert_eq!(means[1].values.as_slice(), &[5.0, 1.0]);
    /// assert_eq!((means[0].time_ms, means[1].time_ms), (0, 10_000));
    /// ```
    fn window_mean(self, window: CountedWindow, name: &str) -> Readings<'s>;

    /// Several windows over this stream in one operator, one output stream each, in
    /// order: each reading's sensor is looked up (and de-duplicated) once for all of
    /// them and the stream is not copied per window. Each window is what
    /// [`window_mean`](Self::window_mean) would give. The input must be partitioned by
    /// sensor, as for `window_mean`.
    ///
    /// ```
    /// use smartgrid_operators::window_mean::{CountedWindow, WindowMean, WindowMeanExt};
    /// use smartgrid_runtime::{Reading, Row, SensorId};
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Event;
    ///
    /// let sensor = SensorId::new("meter-1").expect("short name");
    /// let reading = move |ms: i64, p: f64| Reading { sensor, time_ms: ms, values: Row::from_iter([p]) };
    /// let window = |size_ms: u64| CountedWindow::new(WindowMean {
    ///     size_ms,
    ///     lateness_ms: 0,
    ///     correction_ms: 0,
    ///     fields: vec![0].into(),
    /// });
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

    /// [`window_means`](Self::window_means), keeping the open windows (and those still
    /// correctable) in the checkpoints of `state` (see `smartgrid_runtime::checkpoint`):
    /// restored at start, saved at every cut, and saved instead of flushed at a stop.
    fn window_means_checkpointed(
        self,
        windows: Vec<CountedWindow>,
        name: &str,
        state: Option<NodeState>,
    ) -> Vec<Readings<'s>>;
}

/// One output of the operator: a window size's means.
type MeansOutput = OutputBuilder<Time, CapacityContainerBuilder<Vec<Reading>>>;

/// A window, the counters it reports to and where its late readings go.
#[derive(Clone)]
pub struct CountedWindow {
    /// What to average, over which windows.
    pub window: WindowMean,
    /// Readings that came past their window's correction horizon (dead-lettered).
    pub late: Counter,
    /// Means emitted (one per sensor and window; corrections not included).
    pub emitted: Counter,
    /// Readings dropped because their sensor and event time were already counted.
    pub duplicates: Counter,
    /// Means emitted again because late readings changed them.
    pub corrections: Counter,
    /// Windows open now (not yet emitted), summed over the workers; set per batch.
    pub open_windows: Gauge,
    /// The dead letters of late readings.
    pub letters: LateLetters,
}

impl CountedWindow {
    /// `window` with counters of its own and no dead letters.
    pub fn new(window: WindowMean) -> Self {
        CountedWindow {
            window,
            late: Counter::default(),
            emitted: Counter::default(),
            duplicates: Counter::default(),
            corrections: Counter::default(),
            open_windows: Gauge::default(),
            letters: LateLetters::default(),
        }
    }
}

impl<'s> WindowMeanExt<'s> for Readings<'s> {
    fn window_mean(self, window: CountedWindow, name: &str) -> Readings<'s> {
        self.window_means(vec![window], name)
            .pop()
            .expect("one output per window")
    }

    fn window_means(self, windows: Vec<CountedWindow>, name: &str) -> Vec<Readings<'s>> {
        self.window_means_checkpointed(windows, name, None)
    }

    fn window_means_checkpointed(
        self,
        windows: Vec<CountedWindow>,
        name: &str,
        mut state: Option<NodeState>,
    ) -> Vec<Readings<'s>> {
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
        let fingerprint = fingerprint(&windows);
        let mut log = ThrottledLog::new(name);
        let restore_name = name.to_owned();
        builder.build(move |initial_capabilities| {
            if let Some(state) = state.as_ref() {
                restore(
                    &mut sums,
                    state,
                    &fingerprint,
                    &initial_capabilities,
                    &restore_name,
                );
            }
            drop(initial_capabilities);
            let mut step = Step {
                means: Vec::new(),
                corrected: vec![Vec::new(); windows.len()],
                batch: Batch::new(windows.len()),
                refused: Vec::new(),
            };
            let mut held: Held<Vec<Capability<Time>>, Reading> = Held::default();
            let mut saved_at_stop = false;
            // This worker's open windows per size, set once per activation (not per
            // reading), so the hot path is not touched.
            let mut open_windows: Vec<GaugeShare> = windows
                .iter()
                .map(|w| GaugeShare::new(w.open_windows.clone()))
                .collect();
            move |frontiers| {
                if saved_at_stop {
                    open_windows.iter_mut().for_each(|g| g.set(0));
                    return;
                }
                input.for_each(|capability, data| {
                    // Our sources always stamp their messages; an unstamped batch makes
                    // no progress claim, so no window could be held open for it.
                    let Some(&now) = capability.least() else {
                        step.batch
                            .late
                            .iter_mut()
                            .for_each(|n| *n += data.len() as u64);
                        return;
                    };
                    let retain = || {
                        (0..windows.len())
                            .map(|k| capability.retain_least(k))
                            .collect()
                    };
                    if held.hold_if_pending(state.as_ref(), now, retain, data) {
                        return;
                    }
                    let open = |output, close| capability.delayed(&close, output);
                    step.add(&mut sums, &windows, &mut outputs, data, now, open);
                });
                let frontier = &frontiers[0];
                if let Some(state) = state.as_mut() {
                    while let Some(time) = state.due_latest(&[frontier.frontier()], held.earliest())
                    {
                        // A window that closes before the cut goes out before it (at its
                        // close): emitted in the cut, not saved open, or the next run
                        // would emit it a second time.
                        let before = |close: &Time| *close < time;
                        emit_closed(&mut sums, &windows, &mut outputs, &mut step.means, before);
                        state.take(time, &fingerprint, &sums.export_bytes());
                        for (now, caps, mut data) in held.release(state) {
                            let open = |output: usize, close| caps[output].delayed(&close);
                            step.add(&mut sums, &windows, &mut outputs, &mut data, now, open);
                        }
                    }
                    if frontier.is_empty() {
                        if state.keeps_on_stop() {
                            // Saved, not flushed: the next run emits these windows once,
                            // with every reading. Their capabilities go with the sums.
                            state.take_streamed(AT_STOP, &fingerprint, |out| sums.export_into(out));
                            sums = WindowSums::new(windows.iter().map(|w| &w.window));
                            saved_at_stop = true;
                            step.report(&windows, &mut log);
                            return;
                        }
                        state.finished();
                    }
                }
                step.report(&windows, &mut log);
                let passed = |time: &Time| !frontier.less_equal(time);
                emit_closed(&mut sums, &windows, &mut outputs, &mut step.means, passed);
                for (gauge, size) in open_windows.iter_mut().zip(&sums.sizes) {
                    gauge.set(i64::try_from(size.open.len()).unwrap_or(i64::MAX));
                }
            }
        });
        streams
    }
}

/// What one activation of the operator accumulates before it reports.
struct Step {
    means: Vec<Reading>,
    corrected: Vec<Vec<Reading>>,
    batch: Batch,
    refused: Vec<Refused>,
}

impl Step {
    /// Add a batch of readings at timely time `now`; `open(output, close)` makes the
    /// capability a new window holds. Corrections go out at `now`.
    fn add(
        &mut self,
        sums: &mut WindowSums<Capability<Time>>,
        windows: &[CountedWindow],
        outputs: &mut [MeansOutput],
        readings: &mut Vec<Reading>,
        now: Time,
        open: impl Fn(usize, Time) -> Capability<Time>,
    ) {
        sums.add_all(readings, now, &open, &mut self.batch);
        readings.clear();
        if self.batch.has_corrections() {
            // At the batch's own time: the earliest this operator may still emit at,
            // and the windows' start as the records' timestamp.
            sums.corrections(&mut self.batch, &mut self.corrected);
            for (k, means) in self.corrected.iter_mut().enumerate() {
                if means.is_empty() {
                    continue;
                }
                windows[k].corrections.add(means.len() as u64);
                let at = open(k, now);
                outputs[k]
                    .activate()
                    .session(&at)
                    .give_iterator(means.drain(..));
            }
        }
        self.refused.append(&mut self.batch.refused);
    }

    /// Add the counts to the shared counters (once per activation, see decode) and
    /// dead-letter what was refused.
    fn report(&mut self, windows: &[CountedWindow], log: &mut ThrottledLog) {
        for (window, n) in windows.iter().zip(&mut self.batch.late) {
            window.late.add(std::mem::take(n));
        }
        let duplicates = std::mem::take(&mut self.batch.duplicates);
        if duplicates > 0 {
            windows.iter().for_each(|w| w.duplicates.add(duplicates));
        }
        if !self.refused.is_empty() {
            dead_letter(windows, &self.refused, log);
            self.refused.clear();
        }
    }
}

/// Emit every window `passed` says has closed, oldest first (dropping its capability
/// lets time move on downstream), and forget the emitted ones past their horizon.
fn emit_closed(
    sums: &mut WindowSums<Capability<Time>>,
    windows: &[CountedWindow],
    outputs: &mut [MeansOutput],
    means: &mut Vec<Reading>,
    passed: impl Fn(&Time) -> bool,
) {
    for (k, (output, window)) in outputs.iter_mut().zip(windows).enumerate() {
        let mut output = output.activate();
        while let Some(capability) = sums.close_oldest(k, &passed, means) {
            window.emitted.add(means.len() as u64);
            output.session(&capability).give_iterator(means.drain(..));
        }
    }
    sums.expire(&passed);
}

/// What the saved windows mean: their sizes and the fields they average.
fn fingerprint(windows: &[CountedWindow]) -> String {
    let sizes: Vec<String> = windows
        .iter()
        .map(|w| format!("{}ms{:?}", w.window.size_ms, w.window.fields))
        .collect();
    format!("window_mean v2 {}", sizes.join(" "))
}

/// Restore the windows every worker of the previous run saved, this worker's sensors
/// only, each open one under a capability at its close.
fn restore(
    sums: &mut WindowSums<Capability<Time>>,
    state: &NodeState,
    fingerprint: &str,
    initial: &[Capability<Time>],
    name: &str,
) {
    let started = std::time::Instant::now();
    let parts = state.restored(fingerprint);
    for part in &parts {
        let restored = WindowSumsState::from_bytes(part).and_then(|saved| {
            sums.import(
                &saved,
                |k, close| initial[k].delayed(&close),
                |s| state.owns(s),
            )
        });
        if let Err(e) = restored {
            tracing::warn!(node = name, "saved windows are not restored: {e}");
        }
    }
    if !parts.is_empty() {
        let took_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(node = name, took_ms, "open windows restored");
    }
}

/// Log and dead-letter the readings refused in one activation, per window size.
fn dead_letter(windows: &[CountedWindow], refused: &[Refused], log: &mut ThrottledLog) {
    log.warn(
        "late",
        format_args!(
            "{} readings came past their window's correction horizon",
            refused.len()
        ),
    );
    for (k, window) in windows.iter().enumerate() {
        let mine: Vec<&Refused> = refused.iter().filter(|r| r.size == k).collect();
        let spec = &window.window;
        window
            .letters
            .write(&mine, spec.size_ms, spec.correction_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::record_letters::Letters;
    use smartgrid_runtime::{Row, Schema, SensorId};
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

    /// What a run emitted, with its timely time, and what it counted.
    struct Driven {
        out: Vec<(u64, Reading)>,
        window: CountedWindow,
    }

    /// Feeds `batches` of (input time, readings) to 10 s windows, advancing the input
    /// after each.
    fn drive(
        lateness_ms: u64,
        correction_ms: u64,
        letters: Letters,
        batches: Vec<(u64, Vec<Reading>)>,
    ) -> Driven {
        let mut window = CountedWindow::new(WindowMean {
            size_ms: 10_000,
            lateness_ms,
            correction_ms,
            fields: vec![0].into(),
        });
        window.letters = LateLetters::new("test", Schema::new(["p"]), letters);
        let seen = StdArc::new(Mutex::new(Vec::new()));
        let (counted, seen2) = (window.clone(), StdArc::clone(&seen));
        timely::execute_directly(move |worker| {
            let mut input = InputHandle::new();
            let probe = worker.dataflow::<u64, _, _>(|scope| {
                scope
                    .input_from(&mut input)
                    .window_mean(counted, "test")
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
            crate::window_mean::feed::feed(worker, &mut input, &probe, batches);
        });
        let out = seen.lock().expect("lock").clone();
        Driven { out, window }
    }

    #[test]
    fn emits_when_the_frontier_passes_and_counts_late_readings() {
        let d = drive(
            0,
            0,
            Letters::default(),
            vec![
                (0, vec![reading("a", 1_000, 1.0), reading("b", 2_000, 10.0)]),
                (5_000, vec![reading("a", 6_000, 3.0)]),
                // Frontier passes 9_999: window [0, 10 s) is emitted here.
                (12_000, vec![reading("a", 12_500, 7.0)]),
                // Too late for [0, 10 s), with no correction horizon: counted, dropped.
                (13_000, vec![reading("a", 9_000, 100.0)]),
            ],
        );
        assert_eq!(d.window.late.get(), 1);
        assert_eq!(d.window.corrections.get(), 0);
        let first: Vec<_> = d.out.iter().filter(|(_, r)| r.time_ms == 0).collect();
        assert_eq!(first.len(), 2);
        assert_eq!(
            first[0].0, 9_999,
            "emitted at the window's last millisecond"
        );
        assert_eq!(first[0].1.values.as_slice(), &[2.0, 2.0]);
        assert_eq!(first[1].1.values.as_slice(), &[10.0, 1.0]);
        // The input closes: the open window [10 s, 20 s) flushes with its one reading.
        let second: Vec<_> = d.out.iter().filter(|(_, r)| r.time_ms == 10_000).collect();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].1.values.as_slice(), &[7.0, 1.0]);
    }

    #[test]
    fn lateness_keeps_a_window_open_longer() {
        let d = drive(
            5_000,
            0,
            Letters::default(),
            vec![
                (0, vec![reading("a", 1_000, 1.0)]),
                (12_000, vec![reading("a", 9_000, 3.0)]), // within 5 s of lateness
                (15_000, vec![reading("a", 9_500, 5.0)]), // past end + lateness: late
            ],
        );
        assert_eq!(d.window.late.get(), 1);
        assert_eq!(d.out[0].1.values.as_slice(), &[2.0, 2.0]);
        assert_eq!(d.out[0].0, 14_999);
    }

    #[test]
    fn a_redelivered_reading_is_counted_once() {
        let d = drive(
            0,
            60_000,
            Letters::default(),
            vec![
                (0, vec![reading("a", 1_000, 1.0), reading("a", 2_000, 3.0)]),
                // Redelivered after a reconnect, in another batch, and in the same one.
                (
                    3_000,
                    vec![reading("a", 1_000, 1.0), reading("a", 4_000, 5.0)],
                ),
                (
                    4_000,
                    vec![reading("a", 4_000, 5.0), reading("a", 4_000, 5.0)],
                ),
                // After its window was emitted: still a duplicate, not a correction.
                (15_000, vec![reading("a", 2_000, 3.0)]),
            ],
        );
        assert_eq!(d.window.duplicates.get(), 4);
        assert_eq!((d.window.late.get(), d.window.corrections.get()), (0, 0));
        let means: Vec<_> = d.out.iter().map(|(_, r)| r.values.to_vec()).collect();
        assert_eq!(means, [vec![3.0, 3.0]]);
    }

    #[test]
    fn a_late_reading_within_the_horizon_emits_the_merged_mean_again_at_its_batch_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("late.jsonl");
        let file = smartgrid_runtime::operator::open_output(&path, false).expect("open");
        let letters = Letters::from_file(file);
        let d = drive(
            0,
            30_000,
            letters,
            vec![
                (0, vec![reading("a", 1_000, 1.0), reading("b", 1_000, 7.0)]),
                // [0, 10 s) is emitted when the frontier passes 9 999.
                (12_000, vec![reading("a", 12_000, 2.0)]),
                // Late for [0, 10 s) but within 30 s of its close: merged, emitted again.
                (
                    20_000,
                    vec![reading("a", 5_000, 3.0), reading("a", 6_000, 5.0)],
                ),
                // A window nobody had a reading for yet, past its close, within horizon.
                (35_000, vec![reading("b", 21_000, 4.0)]),
                // Past 9 999 + 30 000: refused and dead-lettered.
                (40_000, vec![reading("a", 8_000, 100.0)]),
            ],
        );
        let w = &d.window;
        assert_eq!(
            (w.late.get(), w.corrections.get(), w.duplicates.get()),
            (1, 2, 0)
        );
        let a: Vec<_> = d
            .out
            .iter()
            .filter(|(_, r)| r.sensor.as_str() == "a" && r.time_ms == 0)
            .map(|(t, r)| (*t, r.values.to_vec()))
            .collect();
        // First at the window's close, then once for the batch of two late readings, at
        // that batch's time, with the same timestamp.
        assert_eq!(a, [(9_999, vec![1.0, 1.0]), (20_000, vec![3.0, 3.0])]);
        let b: Vec<_> = d
            .out
            .iter()
            .filter(|(_, r)| r.sensor.as_str() == "b" && r.time_ms == 20_000)
            .map(|(t, r)| (*t, r.values.to_vec()))
            .collect();
        assert_eq!(b, [(35_000, vec![4.0, 1.0])]);
        let text = std::fs::read_to_string(&path).expect("dead letters");
        let letters: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(letters.len(), 1, "{text}");
        assert_eq!(letters[0]["reason"], "late");
        assert_eq!(letters[0]["sensor_id"], "a");
        assert_eq!(letters[0]["time_ms"], 8_000);
        assert_eq!(letters[0]["fields"]["p"], 100.0);
        assert_eq!(letters[0]["window_start_ms"], 0);
        assert_eq!(letters[0]["late_by_ms"], 40_000 - 9_999);
    }
}
