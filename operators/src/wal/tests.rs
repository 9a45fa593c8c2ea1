use std::fs::OpenOptions;
use std::io::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn options(max_bytes: u64) -> WalOptions {
    WalOptions {
        max_bytes,
        segment_bytes: 256,
        fsync: false,
    }
}

fn record(i: u64) -> Vec<u8> {
    format!("meters/m{:02} {{\"t\":{i}}}", i % 7).into_bytes()
}

fn replayed(wal: &mut Wal, from: u64) -> Vec<(u64, Vec<u8>)> {
    wal.replay(from).unwrap().collect::<Result<_, _>>().unwrap()
}

fn expected(range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(|i| (i, record(i))).collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn append_all(wal: &mut Wal, range: std::ops::Range<u64>) {
    for i in range {
        assert_eq!(wal.append(&record(i)).unwrap(), i);
    }
}

#[test]
fn records_come_back_by_position_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
        assert_eq!((wal.start(), wal.end()), (0, 0));
        append_all(&mut wal, 0..100);
        wal.sync().unwrap();
        assert!(segment_files(dir.path()).len() > 3, "segments roll over");
    }
    let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!((wal.start(), wal.end()), (0, 100));
    assert_eq!(replayed(&mut wal, 0), expected(0..100));
    // From the middle of a segment, from the end, and from past it.
    assert_eq!(replayed(&mut wal, 37), expected(37..100));
    assert!(replayed(&mut wal, 100).is_empty());
    assert!(replayed(&mut wal, 500).is_empty());
    // Segments are named by their first position.
    let first_ids: Vec<u64> = segment_files(dir.path())
        .iter()
        .map(|p| segment::parse_name(p.file_name().unwrap().to_str().unwrap()).unwrap())
        .collect();
    assert_eq!(first_ids[0], 0);
    assert!(first_ids.windows(2).all(|w| w[0] < w[1]));
}

/// Appends are written at the sync (one fsync for the group); what a crash catches
/// before it was never acknowledged, and its positions are given again.
#[test]
fn a_group_is_durable_at_its_sync_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
        append_all(&mut wal, 0..5);
        wal.sync().unwrap();
        append_all(&mut wal, 5..8);
        // Dropped without a sync: a crash.
    }
    let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!(wal.end(), 5);
    assert_eq!(replayed(&mut wal, 0), expected(0..5));
    assert_eq!(wal.append(b"again").unwrap(), 5);
}

#[test]
fn a_replay_ends_where_the_log_ended_when_it_was_made() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
    append_all(&mut wal, 0..30);
    wal.sync().unwrap();
    let replay = wal.replay(10).unwrap();
    assert_eq!((replay.remaining(), replay.end()), (20, 30));
    append_all(&mut wal, 30..60);
    wal.sync().unwrap();
    // A commit while it reads deletes segments it has open.
    wal.truncate(25).unwrap();
    let got: Vec<_> = replay.collect::<Result<_, _>>().unwrap();
    assert_eq!(got, expected(10..30));
}

#[test]
fn truncation_deletes_whole_segments_and_keeps_the_numbering() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
        append_all(&mut wal, 0..100);
        wal.sync().unwrap();
        let before = segment_files(dir.path()).len();
        let bytes = wal.bytes();
        let freed = wal.truncate(50).unwrap();
        assert!(freed > 0 && wal.bytes() == bytes - freed);
        assert!(segment_files(dir.path()).len() < before);
        assert_eq!(wal.start(), 50);
        // Without a checkpoint, a replay starts at the truncation.
        assert_eq!(replayed(&mut wal, 0), expected(50..100));
        // Going back does nothing.
        assert_eq!(wal.truncate(10).unwrap(), 0);
    }
    {
        let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
        assert_eq!((wal.start(), wal.end()), (50, 100));
        assert_eq!(replayed(&mut wal, 0), expected(50..100));
        // Everything committed: no segment is left, the last one included.
        wal.truncate(100).unwrap();
        assert!(segment_files(dir.path()).is_empty());
        assert_eq!(wal.bytes(), 0);
    }
    let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!((wal.start(), wal.end()), (100, 100));
    assert_eq!(wal.append(&record(100)).unwrap(), 100);
    wal.sync().unwrap();
    assert_eq!(replayed(&mut wal, 0), expected(100..101));
}

#[test]
fn a_torn_tail_is_cut_and_complete_records_survive() {
    for cut in [1u64, 4, 9, 20] {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
            append_all(&mut wal, 0..20);
            wal.sync().unwrap();
        }
        // A crash in the middle of writing record 19.
        let last = segment_files(dir.path()).pop().unwrap();
        let file = OpenOptions::new().write(true).open(&last).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len - cut).unwrap();
        drop(file);
        let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
        assert!(wal.recovered_bytes() > 0, "cut {cut}");
        assert_eq!(wal.end(), 19, "cut {cut}");
        assert_eq!(replayed(&mut wal, 0), expected(0..19));
        assert_eq!(wal.append(&record(19)).unwrap(), 19);
        wal.sync().unwrap();
        assert_eq!(replayed(&mut wal, 0), expected(0..20));
    }
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
        append_all(&mut wal, 0..3);
        wal.sync().unwrap();
    }
    let last = segment_files(dir.path()).pop().unwrap();
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&[9, 0, 0, 0, 1, 2, 3, 4, b'x']).unwrap();
    drop(file);
    let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!(wal.recovered_bytes(), 9);
    assert_eq!(replayed(&mut wal, 0), expected(0..3));
}

/// Damage the log cannot explain by a crash (a synced segment changed): the replay
/// skips what it cannot read, counts it, and goes on with the next segment.
#[test]
fn a_damaged_segment_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
    append_all(&mut wal, 0..60);
    wal.sync().unwrap();
    let files = segment_files(dir.path());
    let second = &files[1];
    let first_of_next =
        segment::parse_name(files[2].file_name().unwrap().to_str().unwrap()).unwrap();
    let mut bytes = fs::read(second).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(second, &bytes).unwrap();
    let mut replay = wal.replay(0).unwrap();
    let got: Vec<u64> = replay.by_ref().map(|r| r.unwrap().0).collect();
    assert_eq!(replay.lost(), 1);
    let want: Vec<u64> = (0..60).filter(|&i| i != first_of_next - 1).collect();
    assert_eq!(got, want);
}

#[test]
fn the_size_bound_refuses_until_a_truncation_frees_space() {
    let dir = tempfile::tempdir().unwrap();
    let frame = 8 + record(0).len() as u64;
    let mut wal = Wal::open(dir.path(), options(10 * frame)).unwrap();
    append_all(&mut wal, 0..10);
    match wal.append(&record(10)) {
        Err(WalError::Full {
            used,
            needed,
            max_bytes,
            ..
        }) => assert_eq!(
            (used, needed, max_bytes),
            (10 * frame, 8 + record(10).len() as u64, 10 * frame)
        ),
        other => panic!("{other:?}"),
    }
    // Refused appends take no position.
    assert_eq!(wal.end(), 10);
    wal.sync().unwrap();
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert_eq!(on_disk, wal.bytes());
    wal.truncate(10).unwrap();
    assert_eq!(wal.append(&record(10)).unwrap(), 10);
    assert!(matches!(
        wal.append(&vec![0; 10 * frame as usize]),
        Err(WalError::TooLarge { .. })
    ));
}

/// The log's directory was emptied but a checkpoint says records up to 1000 were
/// processed: new records must not get positions the checkpoint covers.
#[test]
fn advancing_past_the_end_numbers_new_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
        append_all(&mut wal, 0..3);
        wal.advance_to(1000).unwrap();
        assert_eq!((wal.start(), wal.end()), (1000, 1000));
        assert!(segment_files(dir.path()).is_empty());
        assert_eq!(wal.append(b"x").unwrap(), 1000);
        wal.sync().unwrap();
        // Behind the end: nothing to do.
        wal.advance_to(5).unwrap();
        assert_eq!(wal.end(), 1001);
    }
    let mut wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
    assert_eq!((wal.start(), wal.end()), (1000, 1001));
    assert_eq!(replayed(&mut wal, 0), vec![(1000, b"x".to_vec())]);
}

#[test]
fn one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options(1 << 20)).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), options(1 << 20)),
        Err(WalError::Locked { .. })
    ));
    drop(wal);
    Wal::open(dir.path(), options(1 << 20)).unwrap();
}

#[test]
fn fsynced_logs_work_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), WalOptions::new(1 << 20)).unwrap();
    assert_eq!(wal.options().segment_bytes, 128 << 10);
    append_all(&mut wal, 0..10);
    wal.sync().unwrap();
    wal.truncate(4).unwrap();
    drop(wal);
    let mut wal = Wal::open(dir.path(), WalOptions::new(1 << 20)).unwrap();
    assert_eq!(replayed(&mut wal, 0), expected(4..10));
}

/// Random appends, syncs, truncations, crashes (the unsynced tail lost, sometimes a
/// torn frame) and replays against a model: the synced records after the last
/// truncation, by position.
#[test]
fn random_operations_match_a_model() {
    for seed in 0..20 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path(), options(4096)).unwrap();
        let (mut start, mut synced, mut next) = (0u64, 0u64, 0u64);
        for _ in 0..400 {
            match rng.random_range(0..100) {
                0..55 => match wal.append(&record(next)) {
                    Ok(position) => {
                        assert_eq!(position, next, "seed {seed}");
                        next += 1;
                    }
                    Err(WalError::Full { .. }) => {
                        wal.sync().unwrap();
                        synced = next;
                        let to = rng.random_range(start..=next);
                        wal.truncate(to).unwrap();
                        start = start.max(to);
                    }
                    Err(e) => panic!("seed {seed}: {e}"),
                },
                55..75 => {
                    wal.sync().unwrap();
                    synced = next;
                }
                75..85 => {
                    let to = rng.random_range(start..=synced);
                    wal.truncate(to).unwrap();
                    start = start.max(to);
                }
                85..93 => {
                    drop(wal);
                    if rng.random_bool(0.5)
                        && let Some(last) = segment_files(dir.path()).pop()
                    {
                        // A frame torn while it was written.
                        let mut file = OpenOptions::new().append(true).open(last).unwrap();
                        file.write_all(&[40, 0, 0, 0, 1, 2]).unwrap();
                    }
                    wal = Wal::open(dir.path(), options(4096)).unwrap();
                    // Records written but not synced (a segment was full) may survive.
                    let end = wal.end();
                    assert!((synced..=next).contains(&end), "seed {seed}");
                    assert_eq!(wal.start(), start, "seed {seed}");
                    (synced, next) = (end, end);
                }
                _ => {
                    wal.sync().unwrap();
                    synced = next;
                    let from = rng.random_range(0..=next + 2);
                    assert_eq!(
                        replayed(&mut wal, from),
                        expected(from.max(start)..next),
                        "seed {seed}"
                    );
                }
            }
            let on_disk: u64 = segment_files(dir.path())
                .iter()
                .map(|p| p.metadata().unwrap().len())
                .sum();
            assert!(on_disk <= 4096, "seed {seed}: {on_disk} bytes on disk");
        }
    }
}
