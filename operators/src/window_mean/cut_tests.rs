//! A window that closes before a checkpoint's cut is emitted in that cut, not saved
//! open: else a run restored from the cut emits it a second time (a `file` sink keeps
//! what was written before the cut).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use smartgrid_runtime::checkpoint::{Checkpoints, OnStop};
use smartgrid_runtime::shutdown::Shutdown;
use smartgrid_runtime::state::StateStore;
use smartgrid_runtime::{Reading, Row, SensorId};
use timely::dataflow::InputHandle;
use timely::dataflow::operators::{Input, Inspect, Probe};

use super::{CountedWindow, WindowMean, WindowMeanExt};

fn reading(ms: i64, p: f64) -> Reading {
    Reading {
        sensor: SensorId::new("a").expect("short"),
        time_ms: ms,
        values: Row::from_iter([p]),
    }
}

/// Process 0 of a two-process cluster, cutting every 5 s, restoring the cut both
/// processes hold (`held`).
fn checkpoints(dir: &std::path::Path, held: &[Vec<u64>]) -> Arc<Checkpoints> {
    let store = StateStore::open(dir, "p", 0, 2).expect("open");
    let interval = Some(Duration::from_secs(5));
    let agreed = Checkpoints::agreed(store, OnStop::Drain, interval, Shutdown::new(), held);
    Arc::new(agreed.expect("agreed"))
}

/// 10 s windows over `batches` of (input time, readings); the windows emitted, as
/// (start, mean, count).
fn run(checkpoints: &Arc<Checkpoints>, batches: Vec<(u64, Vec<Reading>)>) -> Vec<(i64, Vec<f64>)> {
    let state = checkpoints.node("means", 0, 1);
    let window = CountedWindow::new(WindowMean {
        size_ms: 10_000,
        lateness_ms: 0,
        correction_ms: 0,
        fields: vec![0].into(),
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = Arc::clone(&seen);
    timely::execute_directly(move |worker| {
        let mut input = InputHandle::new();
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            let means = scope.input_from(&mut input).window_means_checkpointed(
                vec![window],
                "means",
                Some(state),
            );
            means
                .into_iter()
                .next()
                .expect("one size")
                .inspect(move |r: &Reading| {
                    out.lock()
                        .expect("lock")
                        .push((r.time_ms, r.values.to_vec()))
                })
                .probe()
                .0
        });
        super::feed::feed(worker, &mut input, &probe, batches);
    });
    seen.lock().map(|emitted| emitted.clone()).expect("lock")
}

#[test]
fn a_window_closing_before_a_cut_is_not_restored_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = checkpoints(dir.path(), &[vec![], vec![]]);
    // The frontier leaves 0 (cuts from 5 s on), then jumps past the cuts at 5 s and
    // 10 s at once, and past the close of [0 s, 10 s) (9 999) with them.
    let emitted = run(
        &first,
        vec![
            (1, vec![reading(1_000, 1.0)]),
            (5, vec![reading(10_500, 3.0)]),
            (12_000, vec![reading(12_500, 5.0)]),
        ],
    );
    let all = vec![(0, vec![1.0, 1.0]), (10_000, vec![4.0, 2.0])];
    assert_eq!(emitted, all, "the input ended: everything flushed");
    drop(first);
    let store = StateStore::open(dir.path(), "p", 0, 2)
        .expect("open")
        .keeping(3);
    let kept: Vec<u64> = store.kept().iter().map(|k| k.time).collect();
    // Nothing came between the cuts at 5 s and 10 s: the windows' part is taken at
    // the later only (`NodeState::due_latest`), so that is the one written.
    assert_eq!(kept, vec![10_000]);
    drop(store);
    // Restored from the cut at 10 s: [0 s, 10 s) had been emitted before it, and
    // [10 s, 20 s) was open with its reading at 10.5 s (the one at 12.5 s came at
    // 12 s, after the cut, and is replayed).
    let again = checkpoints(dir.path(), &[vec![10_000], vec![10_000]]);
    let emitted = run(&again, vec![(12_000, vec![reading(12_500, 5.0)])]);
    assert_eq!(emitted, vec![(10_000, vec![4.0, 2.0])]);
}
