//! The subscriber against the embedded broker and scripted fake brokers on loopback.

use super::*;
use crate::io::mqtt::embedded::start_embedded_broker;
use crate::io::mqtt::options::{ClientIdentity, Endpoint, Retry};
use crate::io::mqtt::publisher::{Publisher, PublisherOptions};

const WAIT: Duration = Duration::from_secs(10);

fn connect(url: &str, client_id: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(
        Endpoint::parse(url).expect("valid url"),
        ClientIdentity::new(client_id),
    );
    options.retry = Retry::new(Duration::from_secs(1), Duration::from_secs(5));
    options
}

#[test]
fn topics_are_shared() {
    let mut cache = HashMap::new();
    let a = intern(&mut cache, "data/realtime/feature/1");
    let b = intern(&mut cache, "data/realtime/feature/1");
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(&*a, "data/realtime/feature/1");
}

/// Publisher → embedded broker → subscriber, with the wake callback and a clean
/// stop that closes the channel.
#[test]
fn embedded_round_trip() {
    let broker = start_embedded_broker(0).expect("embedded broker");
    let shutdown = Arc::new(AtomicBool::new(false));
    let mut sub = spawn_subscriber(
        &connect(&broker.url(), "rt-sub"),
        &SubscribeOptions::new(["test/roundtrip/+"]),
        Arc::clone(&shutdown),
    )
    .expect("spawn");
    let wakes = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&wakes);
    sub.set_wake(Box::new(move || {
        counter.fetch_add(1, Ordering::Relaxed);
    }));
    sub.wait_subscribed(WAIT).expect("subscribed");

    let publisher = Publisher::connect(&broker.url(), "rt-pub", PublisherOptions::default())
        .expect("publisher");
    for i in 0..20u8 {
        publisher
            .publish(
                &format!("test/roundtrip/{}", i % 3),
                vec![i],
                Qos::AtLeastOnce,
            )
            .expect("publish");
    }
    publisher.flush_and_close(WAIT).expect("all acknowledged");

    for i in 0..20u8 {
        let message = sub.recv_timeout(WAIT).expect("message");
        assert_eq!(&*message.topic, format!("test/roundtrip/{}", i % 3));
        assert_eq!(message.payload.as_ref(), &[i]);
    }
    assert!(wakes.load(Ordering::Relaxed) >= 20);
    let stats = sub.stats();
    assert!(stats.connected);
    assert_eq!(stats.messages, 20);

    shutdown.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + WAIT;
    while !sub.is_finished() {
        assert!(Instant::now() < deadline, "thread did not stop");
        thread::sleep(Duration::from_millis(10));
    }
    sub.stop();
    assert_eq!(sub.try_recv(), Err(TryRecvError::Disconnected));
    assert!(!sub.stats().connected);
}

/// The shared embedded broker via `url: embedded`.
#[test]
fn url_embedded_uses_the_shared_broker() {
    let mut subscribe = SubscribeOptions::new(["test/shared/#"]);
    subscribe.qos = Qos::AtMostOnce;
    let mut sub = spawn_subscriber(
        &connect("embedded", "shared-sub"),
        &subscribe,
        Arc::default(),
    )
    .expect("spawn");
    sub.wait_subscribed(WAIT).expect("subscribed");
    let publisher =
        Publisher::connect("embedded", "shared-pub", PublisherOptions::default()).expect("pub");
    publisher
        .publish(
            "test/shared/a/b",
            Bytes::from_static(b"hello"),
            Qos::AtMostOnce,
        )
        .expect("publish");
    publisher.flush_and_close(WAIT).expect("flushed");
    let message = sub.recv_timeout(WAIT).expect("message");
    assert_eq!(&*message.topic, "test/shared/a/b");
    assert_eq!(message.payload.as_ref(), b"hello");
    sub.stop();
}

/// Reads one MQTT packet: the first header byte and the body.
fn read_packet(stream: &mut std::net::TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    use std::io::Read;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte)?;
    let header = byte[0];
    let (mut length, mut shift) = (0usize, 0);
    loop {
        stream.read_exact(&mut byte)?;
        length |= usize::from(byte[0] & 0x7f) << shift;
        shift += 7;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((header, body))
}

/// A broker that refuses the second of two subscriptions (mosquitto grants every
/// subscription and applies its ACL on delivery, so it cannot show this).
#[test]
fn refused_subscription_is_reported() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let broker = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let (connect, _) = read_packet(&mut stream).expect("CONNECT");
        assert_eq!(connect >> 4, 1);
        stream
            .write_all(&[0x20, 0x02, 0x00, 0x00])
            .expect("CONNACK");
        let (subscribe, body) = read_packet(&mut stream).expect("SUBSCRIBE");
        assert_eq!(subscribe >> 4, 8);
        // Packet id, then granted QoS 1 for the first filter, failure for the second.
        stream
            .write_all(&[0x90, 0x04, body[0], body[1], 0x01, 0x80])
            .expect("SUBACK");
        // Serve until the client disconnects.
        while read_packet(&mut stream).is_ok() {}
    });

    let mut sub = spawn_subscriber(
        &connect(&format!("mqtt://127.0.0.1:{port}"), "refused"),
        &SubscribeOptions::new(["allowed/+", "denied/+"]),
        Arc::default(),
    )
    .expect("spawn");
    let err = sub.wait_subscribed(WAIT).expect_err("refused");
    match err {
        MqttError::SubscriptionRefused { filter } => assert_eq!(filter, "denied/+"),
        other => panic!("unexpected: {other}"),
    }
    assert!(sub.stats().connected);
    sub.stop();
    broker.join().expect("fake broker");
}

/// An unreachable broker: the subscriber keeps retrying with backoff, reports the
/// error, and still stops promptly.
#[test]
fn unreachable_broker_is_retried_and_stop_is_prompt() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut sub = spawn_subscriber(
        &connect(&format!("mqtt://127.0.0.1:{port}"), "nobody"),
        &SubscribeOptions::new(["a/+"]),
        Arc::default(),
    )
    .expect("spawn");
    let err = sub
        .wait_subscribed(Duration::from_millis(500))
        .expect_err("nothing listens");
    assert!(matches!(err, MqttError::Connection { .. }), "{err}");
    let stats = sub.stats();
    assert!(!stats.connected);
    assert!(stats.connection_errors >= 1);
    let started = Instant::now();
    sub.stop();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sub.try_recv(), Err(TryRecvError::Disconnected));
}

/// What a scripted broker saw of one connection.
struct Seen {
    /// The CONNECT flags byte (0x02: clean session).
    connect_flags: u8,
    subscribes: usize,
}

/// A broker for two connections: the first gets no session and one SUBACK, then is
/// closed as a restart would; the second gets `session_present` as asked, and SUBACKs
/// for whatever it subscribes, until the client disconnects.
fn broker_that_restarts(session_present: bool) -> (u16, JoinHandle<Vec<Seen>>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let broker = thread::spawn(move || {
        let mut seen = Vec::new();
        for (restarted, present) in [(false, false), (true, session_present)] {
            let (mut stream, _) = listener.accept().expect("accept");
            let (connect, body) = read_packet(&mut stream).expect("CONNECT");
            assert_eq!(connect >> 4, 1);
            // Protocol name (2 + 4 bytes) and level, then the flags.
            let mut connection = Seen {
                connect_flags: body[7],
                subscribes: 0,
            };
            stream
                .write_all(&[0x20, 0x02, u8::from(present), 0x00])
                .expect("CONNACK");
            while let Ok((header, body)) = read_packet(&mut stream) {
                match header >> 4 {
                    8 => {
                        connection.subscribes += 1;
                        stream
                            .write_all(&[0x90, 0x03, body[0], body[1], 0x01])
                            .expect("SUBACK");
                        if !restarted {
                            // Give the client time to read the SUBACK before the
                            // connection drops.
                            thread::sleep(Duration::from_millis(200));
                            break;
                        }
                    }
                    12 => stream.write_all(&[0xd0, 0x00]).expect("PINGRESP"),
                    _ => {}
                }
            }
            seen.push(connection);
        }
        seen
    });
    (port, broker)
}

/// The subscriber's counters after the broker of [`broker_that_restarts`] took it back
/// (with or without its session), and what the broker saw.
fn after_a_restart(clean_session: bool, session_present: bool) -> (SubscriberStats, Vec<Seen>) {
    let (port, broker) = broker_that_restarts(session_present);
    let mut options = connect(&format!("mqtt://127.0.0.1:{port}"), "restarted");
    options.clean_session = clean_session;
    options.retry = Retry::new(Duration::from_millis(50), Duration::from_millis(100));
    let mut sub = spawn_subscriber(
        &options,
        &SubscribeOptions::new(["meters/+"]),
        Arc::default(),
    )
    .expect("spawn");
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = sub.stats();
        if stats.reconnects == 1 && stats.subscribed {
            break;
        }
        assert!(Instant::now() < deadline, "never back: {stats:?}");
        thread::sleep(Duration::from_millis(10));
    }
    let stats = sub.stats();
    sub.stop();
    (stats, broker.join().expect("fake broker"))
}

#[test]
fn a_persistent_session_the_broker_forgot_is_counted() {
    let (stats, seen) = after_a_restart(false, false);
    assert_eq!(seen[0].connect_flags & 0x02, 0, "a persistent session");
    assert_eq!(stats.sessions_lost, 1, "{stats:?}");
    assert_eq!(seen[1].subscribes, 1, "subscribed again");
}

#[test]
fn a_session_the_broker_kept_is_not_a_loss() {
    let (stats, seen) = after_a_restart(false, true);
    assert_eq!(stats.sessions_lost, 0, "{stats:?}");
    assert_eq!(seen[1].subscribes, 0, "the session kept the subscriptions");
}

/// With `clean_session` a fresh session on every connect is what was asked for.
#[test]
fn a_clean_session_is_never_lost() {
    let (stats, seen) = after_a_restart(true, false);
    assert_eq!(seen[1].connect_flags & 0x02, 0x02, "a clean session");
    assert_eq!(stats.sessions_lost, 0, "{stats:?}");
    assert_eq!(seen[1].subscribes, 1, "subscribed again");
}
