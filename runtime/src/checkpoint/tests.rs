use std::sync::Mutex as StdMutex;

use timely::progress::Antichain;

use super::*;
use crate::record::SensorId;

fn open(dir: &std::path::Path, interval: Option<Duration>, stop: &Shutdown) -> Arc<Checkpoints> {
    let store = StateStore::open(dir, "p", 0, 1).expect("open");
    Arc::new(Checkpoints::new(store, OnStop::Checkpoint, interval, stop.clone()).expect("new"))
}

#[test]
fn a_periodic_checkpoint_is_written_when_every_participant_has_taken_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Shutdown::new();
    let checkpoints = open(dir.path(), Some(Duration::from_secs(10)), &stop);
    let log = checkpoints.source("meters");
    let truncated = Arc::new(StdMutex::new(Vec::new()));
    let seen = Arc::clone(&truncated);
    log.on_commit(move |at| seen.lock().expect("lock").push(at));
    let mut decode = checkpoints.node("readings", 0, 2);
    let mut means = [
        checkpoints.node("means", 0, 2),
        checkpoints.node("means", 1, 2),
    ];

    let t0 = Instant::now();
    assert!(
        !decode.announce(5_000, t0),
        "the first interval starts at the first look"
    );
    assert!(!decode.announce(6_000, t0 + Duration::from_secs(3)));
    assert!(decode.announce(20_000, t0 + Duration::from_secs(11)));
    log.emitted(1_234);
    decode.take_with_position(20_000, "w", b"20000", Some("meters"));

    assert_eq!(means[0].barrier(), Some(20_000));
    assert!(means[0].holds(20_000) && !means[0].holds(19_999));
    let behind = Antichain::from_elem(19_999);
    let passed = Antichain::from_elem(20_000);
    assert_eq!(
        means[0].due(behind.borrow()),
        None,
        "records before it may still come"
    );
    assert_eq!(means[0].due(passed.borrow()), Some(20_000));
    means[0].take(20_000, "size=10s", b"zero");
    assert!(
        truncated.lock().expect("lock").is_empty(),
        "worker 1 has not taken it"
    );
    assert_eq!(means[0].barrier(), None, "taken");
    means[1].take(20_000, "size=10s", b"one");
    assert_eq!(*truncated.lock().expect("lock"), vec![1_234]);

    drop((decode, means, log));
    drop(checkpoints);
    let checkpoints = open(dir.path(), Some(Duration::from_secs(10)), &stop);
    let again = checkpoints.node("means", 0, 1);
    assert_eq!(again.restored_time(), Some(20_000));
    let mut parts = again.restored("size=10s");
    parts.sort();
    assert_eq!(parts, vec![b"one".to_vec(), b"zero".to_vec()]);
    assert!(again.restored("size=1m").is_empty(), "another fingerprint");
    assert_eq!(checkpoints.source("meters").replay_from(), Some(1_234));
}

#[test]
fn a_finished_participant_holds_no_checkpoint_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoints = open(dir.path(), Some(Duration::from_millis(1)), &Shutdown::new());
    let mut decode = checkpoints.node("readings", 0, 2);
    let idle = checkpoints.node("readings", 1, 2);
    let t0 = Instant::now();
    decode.announce(1, t0);
    assert!(decode.announce(9_000, t0 + Duration::from_secs(1)));
    decode.take(9_000, "w", b"");
    assert!(checkpoints.written() == 0, "worker 1 is a participant");
    idle.finished();
    assert!(checkpoints.written() > 0);
}

#[test]
fn a_stop_keeps_state_and_the_next_run_restores_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Shutdown::new();
    {
        let checkpoints = open(dir.path(), None, &stop);
        let mut means = checkpoints.node("means", 0, 1);
        stop.trigger();
        assert!(means.keeps_on_stop());
        means.take(AT_STOP, "f", b"open windows");
        assert!(checkpoints.commit_at_stop().expect("commit") > 0);
    }
    let checkpoints = open(dir.path(), None, &Shutdown::new());
    let means = checkpoints.node("means", 0, 1);
    assert_eq!(means.restored_time(), Some(AT_STOP));
    assert_eq!(means.restored("f"), vec![b"open windows".to_vec()]);
    assert!(!means.keeps_on_stop(), "no stop was asked for");
    // The run ends by itself (its input ended): nothing is kept, and without a
    // replayable source the checkpoint was consumed when it was restored.
    assert_eq!(checkpoints.commit_at_stop().expect("commit"), 0);
    drop((means, checkpoints));
    let checkpoints = open(dir.path(), None, &Shutdown::new());
    assert_eq!(checkpoints.node("means", 0, 1).restored_time(), None);
}

#[test]
fn a_stop_writes_each_part_as_it_is_taken_and_a_crash_before_the_commit_keeps_the_previous() {
    // Periodic (no checkpoint is consumed when restored), but none is announced.
    const HOUR: Option<Duration> = Some(Duration::from_secs(3600));
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Shutdown::new();
    {
        let checkpoints = open(dir.path(), HOUR, &stop);
        let mut means = checkpoints.node("means", 0, 1);
        stop.trigger();
        means.take(AT_STOP, "f", b"first run");
        checkpoints.commit_at_stop().expect("commit");
    }
    let stop = Shutdown::new();
    let checkpoints = open(dir.path(), HOUR, &stop);
    let (mut means, lags) = (
        checkpoints.node("means", 0, 1),
        checkpoints.node("lags", 0, 1),
    );
    stop.trigger();
    means.take_streamed(AT_STOP, "f", |out| out.write_all(b"second run"));
    // On disk before the other node has saved: nothing of it waits in memory.
    let part = dir.path().join("p0/checkpoint.stop/means.0");
    let written = std::fs::read(&part).expect("the part is written at once");
    assert!(written.ends_with(b"second run"), "{written:?}");
    // The process dies before every node has saved: the next run gets the previous
    // checkpoint, whole, and not the half-written one.
    drop((means, lags, checkpoints));
    let checkpoints = open(dir.path(), HOUR, &Shutdown::new());
    assert!(!part.exists(), "the unfinished stop's parts are removed");
    let restored = checkpoints.node("means", 0, 1);
    assert_eq!(restored.restored("f"), vec![b"first run".to_vec()]);
    drop((restored, checkpoints));
    // A stop that finishes puts every streamed part in place.
    let stop = Shutdown::new();
    let checkpoints = open(dir.path(), HOUR, &stop);
    let mut means = checkpoints.node("means", 0, 1);
    let mut lags = checkpoints.node("lags", 0, 1);
    stop.trigger();
    means.take_streamed(AT_STOP, "f", |out| out.write_all(b"third run"));
    lags.take(AT_STOP, "g", b"lags");
    let bytes = checkpoints.commit_at_stop().expect("commit");
    assert_eq!(bytes, 2 * 5 + "third run".len() + "lags".len());
    drop((means, lags, checkpoints));
    let checkpoints = open(dir.path(), HOUR, &Shutdown::new());
    assert_eq!(
        checkpoints.node("means", 0, 1).restored("f"),
        vec![b"third run".to_vec()]
    );
    assert_eq!(
        checkpoints.node("lags", 0, 1).restored("g"),
        vec![b"lags".to_vec()]
    );
}

#[test]
fn a_drain_keeps_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Shutdown::new();
    let store = StateStore::open(dir.path(), "p", 0, 1).expect("open");
    let checkpoints =
        Arc::new(Checkpoints::new(store, OnStop::Drain, None, stop.clone()).expect("new"));
    stop.trigger();
    assert!(!checkpoints.node("means", 0, 1).keeps_on_stop());
    assert_eq!(checkpoints.commit_at_stop().expect("commit"), 0);
}

#[test]
fn sensors_are_owned_by_the_worker_the_exchange_sends_them_to() {
    let checkpoints = Arc::new(Checkpoints::disabled());
    let workers: Vec<NodeState> = (0..3).map(|w| checkpoints.node("means", w, 3)).collect();
    for name in ["a", "b", "meter-17", "x"] {
        let sensor = SensorId::new(name).expect("short");
        let owners: Vec<usize> = (0..3).filter(|&w| workers[w].owns(sensor)).collect();
        assert_eq!(owners, vec![(sensor.route_hash() % 3) as usize]);
    }
}

#[test]
fn a_drain_keeps_the_log_positions_and_no_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Shutdown::new();
    {
        let store = StateStore::open(dir.path(), "p", 0, 1).expect("open");
        let checkpoints = Arc::new(
            Checkpoints::new(
                store,
                OnStop::Drain,
                Some(Duration::from_secs(10)),
                stop.clone(),
            )
            .expect("new"),
        );
        let log = checkpoints.source("meters");
        log.emitted(77);
        stop.trigger();
        checkpoints.commit_at_stop().expect("commit");
    }
    let checkpoints = open(dir.path(), Some(Duration::from_secs(10)), &Shutdown::new());
    assert_eq!(
        checkpoints.source("meters").replay_from(),
        Some(77),
        "flushed: not replayed"
    );
    assert_eq!(
        checkpoints.node("means", 0, 1).restored_time(),
        None,
        "no state"
    );
}

#[test]
fn two_parts_naming_one_source_replay_from_the_earlier_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoints = open(dir.path(), Some(Duration::from_millis(1)), &Shutdown::new());
    let log = checkpoints.source("meters");
    let mut first = checkpoints.node("readings", 0, 2);
    let mut second = checkpoints.node("readings", 1, 2);
    let t0 = Instant::now();
    first.announce(1, t0);
    assert!(first.announce(5_000, t0 + Duration::from_secs(1)));
    log.emitted(10);
    first.take_with_position(5_000, "w", b"", Some("meters"));
    log.emitted(20);
    second.take_with_position(5_000, "w", b"", Some("meters"));
    drop((first, second, log));
    drop(checkpoints);
    let checkpoints = open(dir.path(), Some(Duration::from_millis(1)), &Shutdown::new());
    assert_eq!(checkpoints.source("meters").replay_from(), Some(10));
}
