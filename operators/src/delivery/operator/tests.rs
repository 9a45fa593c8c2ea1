//! Worker 0's sink operator at checkpoint barriers: marks reach the writer after every
//! record before them and before every record after them, whatever the arrival order.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smartgrid_runtime::checkpoint::{AT_STOP, Checkpoints, NodeState, OnStop};
use smartgrid_runtime::liveness::Liveness;
use smartgrid_runtime::metrics::Metrics;
use smartgrid_runtime::operator::Time;
use smartgrid_runtime::pressure::Pressure;
use smartgrid_runtime::shutdown::Shutdown;
use smartgrid_runtime::state::StateStore;
use smartgrid_runtime::timely::container::CapacityContainerBuilder;
use smartgrid_runtime::timely::dataflow::InputHandle;
use smartgrid_runtime::timely::dataflow::operators::Input as _;
use smartgrid_runtime::{ProcessContext, Reading, RenderContext, Row, SensorId, StartContext};

use super::*;
use crate::delivery::{Received, SinkCheckpoint};

type Feed = InputHandle<Time, CapacityContainerBuilder<Vec<Reading>>>;

/// What the writer saw: `"<time_ms>"` per record, `"T<time>"` per mark taken.
type Seen = Arc<Mutex<Vec<String>>>;

struct Harness {
    ctx: ProcessContext,
    checkpoints: Arc<Checkpoints>,
    stop: Shutdown,
    _dir: tempfile::TempDir,
}

/// Periodic checkpoints (every announce counts) in a fresh state directory.
fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StateStore::open(dir.path(), "p", 0, 1).expect("open");
    let stop = Shutdown::new();
    let checkpoints = Arc::new(
        Checkpoints::new(
            store,
            OnStop::Checkpoint,
            Some(Duration::ZERO),
            stop.clone(),
        )
        .expect("checkpoints"),
    );
    let pressure = Pressure::new();
    let ctx = ProcessContext {
        pipeline: "p".into(),
        base_dir: dir.path().to_path_buf(),
        metrics: Metrics::default(),
        shutdown: stop.clone(),
        liveness: Liveness::new(pressure.clone()),
        pressure,
        checkpoints: Arc::clone(&checkpoints),
        workers: 1,
        process_index: 0,
        process_count: 1,
        taps: Default::default(),
    };
    Harness {
        ctx,
        checkpoints,
        stop,
        _dir: dir,
    }
}

/// The sink `out` with a writer that records what it receives and takes each mark
/// after `delay`.
fn sink(h: &Harness, delay: Duration) -> (SinkState<Lines>, Seen) {
    let seen = Seen::default();
    let record = Arc::clone(&seen);
    let start = StartContext {
        node: "out",
        process: &h.ctx,
    };
    let checkpoint = SinkCheckpoint::register(&start);
    let state = SinkState::start(&start, 1, Some(checkpoint), move |inbox: Inbox<Lines>| {
        loop {
            match inbox.recv_timeout(Duration::from_millis(10)) {
                Received::Chunk(lines) => {
                    let mut seen = record.lock().expect("lock");
                    seen.extend(lines.text.lines().map(String::from));
                }
                Received::Mark(mark) => {
                    std::thread::sleep(delay);
                    record
                        .lock()
                        .expect("lock")
                        .push(format!("T{}", mark.time()));
                    mark.take("test", &[]);
                }
                Received::Timeout => {}
                Received::Closed => break,
            }
        }
    })
    .expect("start");
    (state, seen)
}

fn reading(time: Time) -> Reading {
    Reading {
        sensor: SensorId::new("m").expect("short"),
        time_ms: time as i64,
        values: Row::new(),
    }
}

/// Runs the sink on one worker: `feed` sends readings and announces checkpoints, then
/// the input closes and the worker runs until the operator is done.
fn run(
    h: &Harness,
    state: SinkState<Lines>,
    feed: impl FnOnce(&mut Feed, &mut NodeState) + Send + Sync + 'static,
) {
    let ctx = h.ctx.clone();
    let source = h.checkpoints.node("decode", 0, 1);
    // The first look only starts the interval.
    assert!(!source.announce(1, Instant::now()));
    let mut source = source;
    let state = smartgrid_runtime::timely::execute_directly(move |worker| {
        let mut input = InputHandle::new();
        worker.dataflow::<Time, _, _>(|scope| {
            let stream = scope.input_from(&mut input);
            let render = RenderContext {
                scope,
                node: "out",
                worker: 0,
                peers: 1,
                process: &ctx,
            };
            render_lines_for_test(&render, stream, &state);
        });
        feed(&mut input, &mut source);
        drop(input);
        let deadline = Instant::now() + Duration::from_secs(20);
        while worker.step_or_park(Some(Duration::from_millis(10))) {
            assert!(Instant::now() < deadline, "the sink did not finish");
        }
        state
    });
    state.finish().expect("the writer ends");
}

fn render_lines_for_test<'s>(
    ctx: &RenderContext<'s>,
    input: smartgrid_runtime::operator::Readings<'s>,
    state: &SinkState<Lines>,
) {
    render_sink(ctx, input, state, |reading, lines: &mut Lines| {
        lines.text.push_str(&format!("{}\n", reading.time_ms));
        lines.records += 1;
    });
}

/// What `decode` does: announce a checkpoint at `time` and take its own part.
fn announce(source: &mut NodeState, time: Time) {
    assert!(source.announce(time, Instant::now()), "announced at {time}");
    source.take(time, "decode", &[]);
}

fn send(input: &mut Feed, time: Time) {
    input.advance_to(time);
    input.send(reading(time));
}

#[test]
fn held_input_follows_the_mark_and_the_next_barrier_waits_for_the_writer() {
    let h = harness();
    let (state, seen) = sink(&h, Duration::from_millis(50));
    run(&h, state, |input, source| {
        send(input, 5);
        announce(source, 10);
        send(input, 12);
        send(input, 15);
        announce(source, 20);
        send(input, 25);
        input.advance_to(30);
    });
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen, ["5", "T10", "12", "15", "T20", "25"]);
    let written = h.checkpoints.written();
    assert!(written > 0, "both checkpoints complete");
    // The input ended without a stop: the sink left, later checkpoints do not wait.
    let mut source = h.checkpoints.node("decode", 0, 1);
    announce(&mut source, 40);
    assert!(h.checkpoints.written() > written);
}

#[test]
fn a_stop_that_keeps_state_ends_with_the_stop_s_mark() {
    let h = harness();
    let (state, seen) = sink(&h, Duration::ZERO);
    let stop = h.stop.clone();
    run(&h, state, move |input, source| {
        send(input, 5);
        announce(source, 10);
        send(input, 12);
        // SIGTERM: the input ends while a checkpoint is still to be marked.
        stop.trigger();
    });
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen, ["5", "T10", "12", format!("T{AT_STOP}").as_str()]);
}

#[test]
fn a_writer_that_cannot_take_a_mark_does_not_hold_the_sink_up() {
    let h = harness();
    let seen = Seen::default();
    let record = Arc::clone(&seen);
    let start = StartContext {
        node: "out",
        process: &h.ctx,
    };
    let checkpoint = SinkCheckpoint::register(&start);
    let state = SinkState::start(&start, 4, Some(checkpoint), move |inbox: Inbox<Lines>| {
        loop {
            match inbox.recv_timeout(Duration::from_millis(10)) {
                Received::Chunk(lines) => {
                    let mut seen = record.lock().expect("lock");
                    seen.extend(lines.text.lines().map(String::from));
                }
                // Dropped untaken: a disk that fails its sync.
                Received::Mark(mark) => drop(mark),
                Received::Timeout => {}
                Received::Closed => break,
            }
        }
    })
    .expect("start");
    run(&h, state, |input, source| {
        send(input, 5);
        announce(source, 10);
        send(input, 12);
        input.advance_to(30);
    });
    assert_eq!(*seen.lock().expect("lock"), ["5", "12"]);
    assert!(h.checkpoints.written() > 0, "the checkpoint was written");
}
