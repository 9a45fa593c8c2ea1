//! The checkpoints of a cluster process: common cuts and the agreed restore.

use std::sync::Mutex as StdMutex;

use timely::progress::Antichain;

use super::*;

/// Timely time of a live run: ms since the epoch.
const NOW: Time = 1_733_000_000_000;
const SECOND: Duration = Duration::from_secs(1);

fn store(dir: &std::path::Path) -> StateStore {
    StateStore::open(dir, "p", 0, 2).expect("open")
}

/// Process 0 of 2, having agreed with process 1 that it holds `held`.
fn agreed(dir: &std::path::Path, stop: &Shutdown, held: &[Vec<Time>]) -> Arc<Checkpoints> {
    let checkpoints = Checkpoints::agreed(
        store(dir),
        OnStop::Checkpoint,
        Some(SECOND),
        stop.clone(),
        held,
    );
    Arc::new(checkpoints.expect("agreed"))
}

fn kept(dir: &std::path::Path) -> Vec<Time> {
    store(dir)
        .keeping(cluster::KEPT)
        .kept()
        .iter()
        .map(|k| k.time)
        .collect()
}

fn at(time: Time) -> Antichain<Time> {
    Antichain::from_elem(time)
}

#[test]
fn a_participant_takes_no_part_before_time_leaves_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoints = agreed(dir.path(), &Shutdown::new(), &[vec![], vec![]]);
    let mut means = checkpoints.node("means", 0, 1);
    // Timely time starts at 0: nothing is held, whatever arrives.
    assert!(!means.holds(0));
    assert_eq!(means.due(at(0).borrow()), None);
    assert_eq!(
        means.barrier(),
        None,
        "no cut is owed for the times before the jump"
    );
    // A batch after the jump arrives before the frontier has moved: applied.
    assert!(!means.holds(NOW + 1_500));
    // The frontier jumps from 0 to NOW + 200: the first cut comes after everything
    // applied, not just after the frontier.
    assert_eq!(means.due(at(NOW + 200).borrow()), None);
    assert_eq!(means.barrier(), Some(NOW + 2_000));
    assert!(!means.holds(NOW + 1_999) && means.holds(NOW + 2_000));
}

#[test]
fn a_decoder_starts_at_the_first_cut_after_its_first_watermark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoints = agreed(dir.path(), &Shutdown::new(), &[vec![], vec![]]);
    let mut decode = checkpoints.node("readings", 0, 1);
    assert!(
        !decode.announce(NOW + 300, Instant::now()),
        "cluster cuts are not announced"
    );
    decode.cuts_after(NOW + 300);
    assert_eq!(decode.barrier(), Some(NOW + 1_000));
    decode.cuts_after(NOW + 5_000);
    assert_eq!(decode.barrier(), Some(NOW + 1_000), "it started once");
}

#[test]
fn several_cuts_passed_at_once_are_each_taken_and_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoints = agreed(dir.path(), &Shutdown::new(), &[vec![], vec![]]);
    let log = checkpoints.source("meters");
    let truncated = Arc::new(StdMutex::new(Vec::new()));
    let seen = Arc::clone(&truncated);
    log.on_commit(move |position| seen.lock().expect("lock").push(position));
    let mut decode = checkpoints.node("readings", 0, 1);
    let mut means = checkpoints.node("means", 0, 1);
    decode.cuts_after(NOW + 100);
    assert_eq!(means.due(at(NOW + 100).borrow()), None);
    // The watermark jumps 3.5 s: the decoder takes the three cuts it passed, with the
    // same position (everything it decoded went out before the first).
    log.emitted(7);
    let mut taken = Vec::new();
    while let Some(cut) = decode.barrier().filter(|&t| t <= NOW + 3_500) {
        decode.take_with_position(cut, "w", b"", Some("meters"));
        taken.push(cut);
    }
    assert_eq!(taken, vec![NOW + 1_000, NOW + 2_000, NOW + 3_000]);
    let mut taken = Vec::new();
    while let Some(cut) = means.due(at(NOW + 3_500).borrow()) {
        means.take(cut, "m", cut.to_le_bytes().as_slice());
        taken.push(cut);
    }
    assert_eq!(taken, vec![NOW + 1_000, NOW + 2_000, NOW + 3_000]);
    assert_eq!(means.barrier(), Some(NOW + 4_000));
    assert_eq!(
        means.due(Antichain::new().borrow()),
        None,
        "the input ended: none owed"
    );
    assert_eq!(*truncated.lock().expect("lock"), vec![7, 7, 7]);
    drop((decode, means, log, checkpoints));
    assert_eq!(
        kept(dir.path()),
        vec![NOW + 3_000, NOW + 2_000, NOW + 1_000]
    );
}

#[test]
fn a_jump_over_many_cuts_costs_one_part_of_a_costly_state_and_one_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoints = agreed(dir.path(), &Shutdown::new(), &[vec![], vec![]]);
    let mut decode = checkpoints.node("readings", 0, 1);
    let mut means = checkpoints.node("means", 0, 1);
    decode.cuts_after(NOW + 100);
    assert_eq!(means.due(at(NOW + 100).borrow()), None);
    // The watermark jumps an hour (3 600 cuts), nothing held: the windows' part is
    // taken once, at the last cut passed, and that is the one checkpoint written.
    let hour = NOW + 3_600_500;
    while let Some(cut) = decode.barrier().filter(|&t| t <= hour) {
        decode.take_with_position(cut, "w", b"", None);
    }
    let mut taken = Vec::new();
    while let Some(cut) = means.due_latest(&[at(hour).borrow()], None) {
        means.take(cut, "m", cut.to_le_bytes().as_slice());
        taken.push(cut);
    }
    assert_eq!(taken, vec![NOW + 3_600_000]);
    assert_eq!(means.barrier(), Some(NOW + 3_601_000));
    assert_eq!(checkpoints.written(), (4 + 1 + 8) + (4 + 1) as u64);
    // A batch held between two passed cuts stops the skipping before it: its part
    // must be in the later cut, and it is applied only after the earlier is taken.
    let held_at = NOW + 3_603_500;
    assert!(means.holds(held_at));
    let frontier = NOW + 3_605_200;
    let mut taken = Vec::new();
    while let Some(cut) = means.due_latest(&[at(frontier).borrow()], Some(held_at)) {
        means.take(cut, "m", b"");
        taken.push(cut);
        if cut > held_at {
            break;
        }
    }
    assert_eq!(taken[0], NOW + 3_603_000, "not past the held batch");
    drop((decode, means, checkpoints));
    assert_eq!(kept(dir.path()).first(), Some(&(NOW + 3_600_000)));
}

/// Writes periodic checkpoints at `times` (position = time / 1000), as process 0.
fn write(dir: &std::path::Path, times: &[Time]) {
    let store = store(dir).keeping(cluster::KEPT);
    for &time in times {
        let positions = BTreeMap::from([("meters".to_string(), time / 1_000)]);
        let mut part = 4u32.to_le_bytes().to_vec();
        part.extend_from_slice(b"fp v");
        part.extend_from_slice(&time.to_le_bytes());
        let parts = BTreeMap::from([(("means".to_string(), 0), part)]);
        store.write(time, &positions, &parts).expect("write");
    }
}

#[test]
fn the_newest_common_cut_is_restored_and_the_later_ones_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &[1_000, 2_000, 3_000, 4_000]);
    assert_eq!(
        kept(dir.path()),
        vec![4_000, 3_000, 2_000],
        "the last three"
    );
    // Process 1 was killed while writing 4000: 3000 is the newest both hold.
    let held = [vec![4_000, 3_000, 2_000], vec![3_000, 2_000, 1_000]];
    let checkpoints = agreed(dir.path(), &Shutdown::new(), &held);
    let means = checkpoints.node("means", 0, 2);
    assert_eq!(means.restored_time(), Some(3_000));
    assert_eq!(
        means.restored("fp v"),
        vec![3_000u64.to_le_bytes().to_vec()]
    );
    let log = checkpoints.source("meters");
    assert_eq!(log.replay_from(), Some(3));
    // Its log is kept back to the oldest kept checkpoint, not the newest.
    let truncated = Arc::new(StdMutex::new(Vec::new()));
    let seen = Arc::clone(&truncated);
    log.on_commit(move |position| seen.lock().expect("lock").push(position));
    let mut decode = checkpoints.node("readings", 0, 2);
    let mut means = means;
    decode.cuts_after(5_500);
    means.cuts_after(5_500);
    log.emitted(9);
    decode.take_with_position(6_000, "w", b"", Some("meters"));
    means.take(6_000, "fp v", b"");
    assert_eq!(*truncated.lock().expect("lock"), vec![2]);
    drop((decode, means, log, checkpoints));
    assert_eq!(
        kept(dir.path()),
        vec![6_000, 3_000, 2_000],
        "4000 was discarded"
    );
}

#[test]
fn nothing_in_common_restores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &[2_000]);
    let checkpoints = agreed(dir.path(), &Shutdown::new(), &[vec![2_000], vec![1_000]]);
    assert_eq!(checkpoints.node("means", 0, 2).restored_time(), None);
    assert_eq!(checkpoints.source("meters").replay_from(), None);
    drop(checkpoints);
    assert!(
        kept(dir.path()).is_empty(),
        "a cut no other process holds is useless"
    );
}

/// Process 0 stops gracefully after cuts 1000 and 2000.
fn stop_after_two_cuts(dir: &std::path::Path) {
    write(dir, &[1_000, 2_000]);
    let stop = Shutdown::new();
    let checkpoints = agreed(dir, &stop, &[vec![2_000, 1_000], vec![2_000, 1_000]]);
    let mut means = checkpoints.node("means", 0, 2);
    stop.trigger();
    means.take(AT_STOP, "fp v", b"at stop");
    assert!(checkpoints.commit_at_stop().expect("commit") > 0);
    drop((means, checkpoints));
    assert_eq!(kept(dir), vec![AT_STOP, 2_000, 1_000]);
}

#[test]
fn a_stop_checkpoint_is_restored_when_every_process_wrote_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    stop_after_two_cuts(dir.path());
    let held = [vec![AT_STOP, 2_000, 1_000], vec![AT_STOP, 2_000, 1_000]];
    let checkpoints = agreed(dir.path(), &Shutdown::new(), &held);
    let mut means = checkpoints.node("means", 0, 2);
    assert_eq!(means.restored_time(), Some(AT_STOP));
    assert_eq!(means.restored("fp v"), vec![b"at stop".to_vec()]);
    // The first cut of the new run supersedes it: it must not be restored after it.
    means.cuts_after(2_500);
    means.take(3_000, "fp v", b"");
    drop((means, checkpoints));
    assert_eq!(kept(dir.path()), vec![3_000, 2_000, 1_000]);
}

#[test]
fn without_a_stop_checkpoint_everywhere_the_newest_common_cut_is_restored() {
    let dir = tempfile::tempdir().expect("tempdir");
    stop_after_two_cuts(dir.path());
    // Process 1 was killed: it has no stop checkpoint.
    let held = [vec![AT_STOP, 2_000, 1_000], vec![3_000, 2_000, 1_000]];
    let checkpoints = agreed(dir.path(), &Shutdown::new(), &held);
    let means = checkpoints.node("means", 0, 2);
    assert_eq!(means.restored_time(), Some(2_000));
    assert_eq!(
        means.restored("fp v"),
        vec![2_000u64.to_le_bytes().to_vec()]
    );
    assert_eq!(checkpoints.source("meters").replay_from(), Some(2));
    drop((means, checkpoints));
    assert_eq!(kept(dir.path()), vec![2_000, 1_000]);
}

#[test]
fn a_crash_while_writing_leaves_the_previous_cut_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), &[1_000, 2_000]);
    // A crash between moving the current one aside and renaming the new one in.
    let p = dir.path().join("p0");
    std::fs::rename(p.join("checkpoint"), p.join("checkpoint.2000")).expect("rename");
    std::fs::create_dir_all(p.join("checkpoint.tmp")).expect("a torn new one");
    assert_eq!(kept(dir.path()), vec![2_000, 1_000]);
    write(dir.path(), &[3_000]);
    assert_eq!(kept(dir.path()), vec![3_000, 2_000, 1_000]);
}
