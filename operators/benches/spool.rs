//! Spool throughput: append then replay (peek + ack) batches of line-protocol points.
//!
//! `cargo bench -p smartgrid-operators --bench spool -- [batches] [points_per_batch] [fsync]`
//! (defaults: 200 batches of 5000 points, fsync on). Writes in a temporary directory
//! (set `TMPDIR` to measure another disk).

use std::time::Instant;

use smartgrid_operators::spool::{Spool, SpoolOptions, WhenFull};

fn batch(index: usize, points: usize) -> Vec<u8> {
    let mut text = String::with_capacity(points * 120);
    for p in 0..points {
        let t = 1_700_000_000_000_000_000u64 + (index * points + p) as u64 * 1_000_000;
        text.push_str(&format!(
            "means_10s,sensor_id=clemap-{:04},pipeline=bench power_l1={:.3},power_l2={:.3},power_l3={:.3},voltage_l1=230.1 {t}\n",
            p % 1000,
            p as f64 * 0.5,
            p as f64 * 0.25,
            p as f64 * 0.125
        ));
    }
    text.into_bytes()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let batches: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    let points: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5000);
    let fsync = args.get(2).is_none_or(|a| a != "nofsync");
    let data: Vec<Vec<u8>> = (0..8).map(|i| batch(i, points)).collect();
    let bytes_per_batch = data[0].len();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let options = SpoolOptions {
        max_bytes: 1 << 40,
        when_full: WhenFull::Backpressure,
        fsync,
        ..SpoolOptions::default()
    };
    let mut spool = Spool::open(dir.path(), options.clone()).expect("open the spool");

    let start = Instant::now();
    for i in 0..batches {
        spool.append(&data[i % data.len()]).expect("append");
    }
    let write = start.elapsed();
    drop(spool);

    let start = Instant::now();
    let mut spool = Spool::open(dir.path(), options).expect("reopen the spool");
    let mut replayed = 0usize;
    while let Some(batch) = spool.peek().expect("peek") {
        replayed += batch.len();
        spool.ack().expect("ack");
    }
    let replay = start.elapsed();
    assert_eq!(replayed, batches * bytes_per_batch, "every byte comes back");

    let total = (batches * points) as f64;
    let mb = (batches * bytes_per_batch) as f64 / 1e6;
    println!(
        "spool: {batches} batches x {points} points ({:.0} B/point), fsync {}",
        bytes_per_batch as f64 / points as f64,
        if fsync { "on" } else { "off" }
    );
    println!(
        "  append: {:>10.0} points/s  ({:.0} MB/s, {:.2?})",
        total / write.as_secs_f64(),
        mb / write.as_secs_f64(),
        write
    );
    println!(
        "  replay: {:>10.0} points/s  ({:.0} MB/s, {:.2?}, reopen included)",
        total / replay.as_secs_f64(),
        mb / replay.as_secs_f64(),
        replay
    );
}
