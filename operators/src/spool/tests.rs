use std::collections::VecDeque;
use std::fs::OpenOptions;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn options(max_bytes: u64, when_full: WhenFull) -> SpoolOptions {
    SpoolOptions {
        max_bytes,
        when_full,
        segment_bytes: 256,
        fsync: false,
    }
}

fn record(i: usize) -> Vec<u8> {
    format!("m,sensor_id=s{i} value={i} {i}\n").into_bytes()
}

fn pending(spool: &Spool) -> Vec<Vec<u8>> {
    spool.iter().collect::<Result<_, _>>().unwrap()
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

#[test]
fn order_is_kept_across_reopen_and_acks_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<Vec<u8>> = (0..100).map(record).collect();
    {
        let mut spool = Spool::open(dir.path(), options(1 << 20, WhenFull::Backpressure)).unwrap();
        for r in &all {
            spool.append(r).unwrap();
        }
        assert!(
            segment_files(dir.path()).len() > 3,
            "small segments roll over"
        );
        for _ in 0..30 {
            assert!(spool.ack().unwrap());
        }
        assert_eq!(spool.len(), 70);
    }
    let mut spool = Spool::open(dir.path(), options(1 << 20, WhenFull::Backpressure)).unwrap();
    assert_eq!(pending(&spool), all[30..].to_vec());
    assert_eq!(spool.peek().unwrap(), Some(all[30].clone()));
    let expected_bytes: u64 = all[30..].iter().map(|r| 8 + r.len() as u64).sum();
    assert_eq!(spool.bytes(), expected_bytes);
    while spool.ack().unwrap() {}
    assert!(spool.is_empty());
    assert_eq!(spool.peek().unwrap(), None);
    assert!(
        segment_files(dir.path()).len() <= 1,
        "acknowledged segments are deleted: {:?}",
        segment_files(dir.path())
    );
    drop(spool);
    let spool = Spool::open(dir.path(), options(1 << 20, WhenFull::Backpressure)).unwrap();
    assert!(spool.is_empty(), "nothing acknowledged comes back");
}

#[test]
fn a_torn_tail_is_cut_and_complete_records_survive() {
    let all: Vec<Vec<u8>> = (0..20).map(record).collect();
    // Cut the last segment at every length inside its last record.
    let probe = tempfile::tempdir().unwrap();
    {
        let mut spool =
            Spool::open(probe.path(), options(1 << 20, WhenFull::Backpressure)).unwrap();
        for r in &all {
            spool.append(r).unwrap();
        }
    }
    let last = segment_files(probe.path()).pop().unwrap();
    let full_len = fs::metadata(&last).unwrap().len();
    let last_frame = 8 + all[19].len() as u64;
    for cut in 1..last_frame {
        let dir = tempfile::tempdir().unwrap();
        for f in segment_files(probe.path()) {
            fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
        let torn = dir.path().join(last.file_name().unwrap());
        OpenOptions::new()
            .write(true)
            .open(&torn)
            .unwrap()
            .set_len(full_len - cut)
            .unwrap();
        let mut spool = Spool::open(dir.path(), options(1 << 20, WhenFull::Backpressure)).unwrap();
        assert_eq!(pending(&spool), all[..19].to_vec(), "cut {cut} bytes");
        assert_eq!(spool.recovered_bytes(), last_frame - cut);
        // Appends continue after the valid prefix, not after the garbage.
        spool.append(b"after").unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), options(1 << 20, WhenFull::Backpressure)).unwrap();
        assert_eq!(spool.len(), 20);
        assert_eq!(pending(&spool)[19], b"after".to_vec());
    }
}

#[test]
fn a_corrupted_payload_is_cut_at_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut spool = Spool::open(dir.path(), options(1 << 20, WhenFull::Backpressure)).unwrap();
        for i in 0..3 {
            spool.append(&record(i)).unwrap();
        }
    }
    let seg = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0xff; // a flipped byte inside the last payload
    fs::write(&seg, bytes).unwrap();
    let spool = Spool::open(dir.path(), options(1 << 20, WhenFull::Backpressure)).unwrap();
    assert_eq!(pending(&spool), vec![record(0), record(1)]);
}

#[test]
fn backpressure_refuses_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let r = vec![7u8; 92]; // 100 bytes framed
    let mut spool = Spool::open(dir.path(), options(350, WhenFull::Backpressure)).unwrap();
    for _ in 0..3 {
        spool.append(&r).unwrap();
    }
    let err = spool.append(&r).unwrap_err();
    assert!(
        matches!(
            err,
            SpoolError::Full {
                pending: 300,
                needed: 100,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(spool.len(), 3);
    assert_eq!(spool.dropped(), 0);
    spool.ack().unwrap();
    spool.append(&r).unwrap();
    assert_eq!(spool.len(), 3);
    let too_large = spool.append(&[0u8; 400]).unwrap_err();
    assert!(
        matches!(too_large, SpoolError::TooLarge { len: 400, .. }),
        "{too_large}"
    );
}

#[test]
fn drop_oldest_counts_what_it_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), options(350, WhenFull::DropOldest)).unwrap();
    let records: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 92]).collect();
    for r in &records {
        spool.append(r).unwrap();
    }
    assert_eq!(spool.dropped(), 7);
    assert_eq!(pending(&spool), records[7..].to_vec());
    assert!(spool.bytes() <= 350);
    drop(spool);
    let spool = Spool::open(dir.path(), options(350, WhenFull::DropOldest)).unwrap();
    assert_eq!(pending(&spool), records[7..].to_vec(), "drops are durable");
}

#[test]
fn one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Spool::open(dir.path(), SpoolOptions::default()).unwrap();
    let second = Spool::open(dir.path(), SpoolOptions::default());
    assert!(
        matches!(second, Err(SpoolError::Locked { .. })),
        "a second open must fail"
    );
}

#[test]
fn fsynced_spool_works_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SpoolOptions {
        segment_bytes: 100,
        ..SpoolOptions::default()
    };
    {
        let mut spool = Spool::open(dir.path(), opts.clone()).unwrap();
        for i in 0..10 {
            spool.append(&record(i)).unwrap();
        }
        spool.ack().unwrap();
    }
    let spool = Spool::open(dir.path(), opts).unwrap();
    assert_eq!(pending(&spool), (1..10).map(record).collect::<Vec<_>>());
}

/// Random appends, acks, reopens and torn tails against a `VecDeque`.
#[test]
fn random_operations_match_a_queue() {
    for seed in 0..20u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let when_full = if seed % 2 == 0 {
            WhenFull::Backpressure
        } else {
            WhenFull::DropOldest
        };
        let max_bytes = 2_000;
        let opts = SpoolOptions {
            max_bytes,
            when_full,
            segment_bytes: rng.random_range(50..600),
            fsync: false,
        };
        let mut spool = Spool::open(dir.path(), opts.clone()).unwrap();
        let mut oracle: VecDeque<Vec<u8>> = VecDeque::new();
        let mut oracle_bytes = 0u64;
        let mut dropped = 0u64;
        let mut next = 0u32;
        for step in 0..600 {
            match rng.random_range(0..100) {
                0..55 => {
                    let len = rng.random_range(0..120);
                    let mut r = next.to_le_bytes().to_vec();
                    r.resize(4 + len, (next % 251) as u8);
                    next += 1;
                    let needed = 8 + r.len() as u64;
                    let result = spool.append(&r);
                    if oracle_bytes + needed > max_bytes && when_full == WhenFull::Backpressure {
                        assert!(
                            matches!(result, Err(SpoolError::Full { .. })),
                            "seed {seed} step {step}"
                        );
                        continue;
                    }
                    result.unwrap();
                    while oracle_bytes + needed > max_bytes {
                        let gone = oracle.pop_front().unwrap();
                        oracle_bytes -= 8 + gone.len() as u64;
                        dropped += 1;
                    }
                    oracle_bytes += needed;
                    oracle.push_back(r);
                }
                55..90 => {
                    assert_eq!(
                        spool.peek().unwrap(),
                        oracle.front().cloned(),
                        "seed {seed} step {step}"
                    );
                    let acked = spool.ack().unwrap();
                    assert_eq!(
                        acked,
                        oracle
                            .pop_front()
                            .inspect(|r| oracle_bytes -= 8 + r.len() as u64)
                            .is_some()
                    );
                }
                90..97 => {
                    drop(spool);
                    spool = Spool::open(dir.path(), opts.clone()).unwrap();
                    dropped = 0;
                }
                _ => {
                    // A crash in the middle of an append: half a frame at the end.
                    drop(spool);
                    if let Some(last) = segment_files(dir.path()).pop() {
                        let mut f = OpenOptions::new().append(true).open(&last).unwrap();
                        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
                    }
                    spool = Spool::open(dir.path(), opts.clone()).unwrap();
                    dropped = 0;
                }
            }
            assert_eq!(spool.len(), oracle.len(), "seed {seed} step {step}");
            assert_eq!(spool.bytes(), oracle_bytes, "seed {seed} step {step}");
            assert_eq!(spool.dropped(), dropped, "seed {seed} step {step}");
        }
        assert_eq!(pending(&spool), Vec::from(oracle), "seed {seed}");
    }
}
