use std::sync::atomic::AtomicBool;

use super::*;
use crate::io::mqtt::embedded::start_embedded_broker;
use crate::io::mqtt::options::{ClientIdentity, ConnectOptions, Endpoint, Qos, Retry};
use crate::io::mqtt::publisher::{Publisher, PublisherOptions};
use crate::io::mqtt::subscriber::{SubscribeOptions, Subscriber, spawn_logged_subscriber};

const WAIT: Duration = Duration::from_secs(10);

fn options(dir: &std::path::Path, max_bytes: u64, fsync: Fsync) -> JournalOptions {
    JournalOptions {
        dir: dir.to_path_buf(),
        max_bytes,
        fsync,
        commit_interval: Duration::ZERO,
    }
}

fn subscriber(url: &str, id: &str, journal: Journal) -> Subscriber {
    let mut connect = ConnectOptions::new(
        Endpoint::parse(url).expect("valid url"),
        ClientIdentity::new(id),
    );
    connect.retry = Retry::new(Duration::from_secs(1), Duration::from_secs(5));
    let sub = spawn_logged_subscriber(
        &connect,
        &SubscribeOptions::new([format!("{id}/+")]),
        Arc::new(AtomicBool::new(false)),
        journal,
    )
    .expect("spawn");
    sub.wait_subscribed(WAIT).expect("subscribed");
    sub
}

/// `count` messages of `size` bytes (their index first) on `prefix/<i % 3>`.
fn publish(url: &str, prefix: &str, count: usize, size: usize) {
    let publisher =
        Publisher::connect(url, format!("{prefix}-pub"), PublisherOptions::default()).expect("pub");
    for i in 0..count {
        let mut payload = format!("{i:08}").into_bytes();
        payload.resize(size.max(8), b'.');
        publisher
            .publish(&format!("{prefix}/{}", i % 3), payload, Qos::AtLeastOnce)
            .expect("publish");
    }
    publisher.flush_and_close(WAIT).expect("all acknowledged");
}

fn index(message: &Message) -> usize {
    std::str::from_utf8(&message.payload[..8])
        .expect("utf-8")
        .parse()
        .expect("an index")
}

fn replayed(dir: &std::path::Path) -> Vec<(u64, Message)> {
    let mut journal = Journal::open(
        options(dir, 1 << 20, Fsync::Group),
        JournalCounters::default(),
    )
    .expect("reopen");
    let from = journal.start();
    journal
        .replay(from)
        .expect("replay")
        .collect::<Result<_, _>>()
        .expect("readable")
}

#[test]
fn records_hold_topic_and_payload() {
    let message = Message {
        topic: Arc::from("data/realtime/feature/42"),
        payload: Bytes::from_static(b"\x00\x01payload"),
    };
    let mut record = Vec::new();
    encode(&message, &mut record);
    assert_eq!(record.len() as u64, encoded_len(&message));
    assert_eq!(decode(record), Some(message));
    assert_eq!(decode(vec![9, 0, b'a']), None);
    assert_eq!(decode(vec![1]), None);
}

/// Every message delivered is in the log first, at the position its order gives.
#[test]
fn messages_are_logged_then_delivered_in_log_order() {
    let broker = start_embedded_broker(0).expect("embedded broker");
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = JournalCounters::default();
    let journal =
        Journal::open(options(dir.path(), 1 << 20, Fsync::Group), counters.clone()).expect("open");
    assert_eq!(journal.end(), 0);
    let mut sub = subscriber(&broker.url(), "logged", journal);
    publish(&broker.url(), "logged", 300, 40);
    let received: Vec<Message> = (0..300)
        .map(|_| sub.recv_timeout(WAIT).expect("message"))
        .collect();
    assert_eq!(
        received.iter().map(index).collect::<Vec<_>>(),
        (0..300).collect::<Vec<_>>()
    );
    sub.stop();
    assert_eq!(counters.appended.get(), 300);
    assert_eq!(counters.bytes.get(), 300 * (8 + 2 + 8 + 40));
    assert!((1..=300).contains(&counters.syncs.get()));
    let logged = replayed(dir.path());
    assert_eq!(
        logged.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        (0..300).collect::<Vec<_>>()
    );
    assert_eq!(
        logged.into_iter().map(|(_, m)| m).collect::<Vec<_>>(),
        received
    );
}

#[test]
fn fsync_always_syncs_each_message() {
    let broker = start_embedded_broker(0).expect("embedded broker");
    let dir = tempfile::tempdir().expect("tempdir");
    let counters = JournalCounters::default();
    let journal = Journal::open(
        options(dir.path(), 1 << 20, Fsync::Always),
        counters.clone(),
    )
    .expect("open");
    let mut sub = subscriber(&broker.url(), "always", journal);
    publish(&broker.url(), "always", 50, 10);
    for _ in 0..50 {
        sub.recv_timeout(WAIT).expect("message");
    }
    sub.stop();
    assert_eq!((counters.appended.get(), counters.syncs.get()), (50, 50));
}

/// A full log stops the subscriber taking messages (the broker holds them) until a
/// checkpoint commits; nothing is dropped, and the order holds.
#[test]
fn a_full_log_holds_messages_back_until_a_commit() {
    let broker = start_embedded_broker(0).expect("embedded broker");
    let dir = tempfile::tempdir().expect("tempdir");
    // One 64 KiB segment: about 60 messages of 1 KiB.
    let journal = Journal::open(
        options(dir.path(), 64 << 10, Fsync::Group),
        JournalCounters::default(),
    )
    .expect("open");
    let handle = journal.handle();
    let mut sub = subscriber(&broker.url(), "full", journal);
    publish(&broker.url(), "full", 200, 1024);
    let mut received = Vec::new();
    let mut stalls = 0;
    while received.len() < 200 {
        match sub.recv_timeout(Duration::from_millis(500)) {
            Ok(message) => received.push(index(&message)),
            Err(_) => {
                stalls += 1;
                assert!(stalls < 20, "stuck at {} messages", received.len());
                assert!(received.len() < 200);
                // Everything received so far is covered by a checkpoint.
                handle.commit(received.len() as u64);
            }
        }
    }
    assert!(stalls >= 3, "the log filled up ({stalls} stalls)");
    assert_eq!(received, (0..200).collect::<Vec<_>>());
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    assert!(on_disk <= (64 << 10) + 64, "{on_disk} bytes on disk");
    sub.stop();
    assert!(handle.failure().is_none());
}
