//! The MQTT client layer against a real mosquitto on a free loopback port.
//!
//! A test fails, naming the program, when mosquitto is missing (`bash scripts/test.sh`
//! installs it).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread;
use std::time::{Duration, Instant};

use smartgrid_operators::io::TlsConfig;
use smartgrid_operators::io::mqtt::{
    ClientIdentity, ConnectOptions, Endpoint, MqttError, Password, Publisher, PublisherOptions,
    Qos, Retry, SubscribeOptions, Subscriber, TlsOptions, spawn_subscriber,
};
use smartgrid_runtime::record::Message;
use testkit::Mosquitto;

mod common;
use common::{make_certificates, make_password_file};

const WAIT: Duration = Duration::from_secs(15);

/// A subscriber's settings, with quick reconnects so tests do not wait for the
/// defaults; the client id is set by [`subscribe`].
fn config(url: &str, topic: &str) -> (ConnectOptions, SubscribeOptions) {
    let mut connect = ConnectOptions::new(
        Endpoint::parse(url).expect("valid url"),
        ClientIdentity::new("unnamed"),
    );
    connect.retry = Retry::new(Duration::from_millis(100), Duration::from_millis(800));
    (connect, SubscribeOptions::new([topic]))
}

fn spawn(cfg: &(ConnectOptions, SubscribeOptions), client_id: &str) -> Subscriber {
    let mut connect = cfg.0.clone();
    connect.identity.client_id = client_id.to_string();
    spawn_subscriber(&connect, &cfg.1, Arc::new(AtomicBool::new(false))).expect("spawn subscriber")
}

fn subscribe(cfg: &(ConnectOptions, SubscribeOptions), client_id: &str) -> Subscriber {
    let sub = spawn(cfg, client_id);
    sub.wait_subscribed(WAIT).expect("subscribed");
    sub
}

fn publisher(url: &str, client_id: &str) -> Publisher {
    let publisher =
        Publisher::connect(url, client_id, PublisherOptions::default()).expect("publisher");
    publisher.wait_connected(WAIT).expect("publisher connected");
    publisher
}

fn publish_numbered(url: &str, topic: &str, range: std::ops::Range<u32>) {
    let publisher = publisher(url, "test-publisher");
    for i in range {
        publisher
            .publish(topic, i.to_be_bytes().to_vec(), Qos::AtLeastOnce)
            .expect("publish");
    }
    publisher.flush_and_close(WAIT).expect("all acknowledged");
}

fn number(message: &Message) -> u32 {
    let bytes: [u8; 4] = message.payload.as_ref().try_into().expect("4-byte payload");
    u32::from_be_bytes(bytes)
}

fn receive(sub: &Subscriber, count: usize) -> Vec<u32> {
    (0..count)
        .map(|i| {
            let message = sub
                .recv_timeout(WAIT)
                .unwrap_or_else(|e| panic!("message {i} of {count}: {e:?}; {:?}", sub.stats()));
            number(&message)
        })
        .collect()
}

fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn subscribe_and_receive() {
    testkit::require_binary("mosquitto");
    let broker = Mosquitto::start();
    let sub = subscribe(&config(&broker.url(), "data/realtime/feature/+"), "receive");
    let publisher = publisher(&broker.url(), "receive-pub");
    publisher
        .publish(
            "data/realtime/feature/meter-1",
            b"\x01\x02".to_vec(),
            Qos::AtLeastOnce,
        )
        .expect("publish");
    publisher
        .publish("data/other", b"ignored".to_vec(), Qos::AtLeastOnce)
        .expect("publish");
    publisher
        .publish(
            "data/realtime/feature/meter-2",
            b"\x03".to_vec(),
            Qos::AtMostOnce,
        )
        .expect("publish");
    publisher.flush_and_close(WAIT).expect("flushed");

    let first = sub.recv_timeout(WAIT).expect("first");
    assert_eq!(&*first.topic, "data/realtime/feature/meter-1");
    assert_eq!(first.payload.as_ref(), b"\x01\x02");
    let second = sub.recv_timeout(WAIT).expect("second");
    assert_eq!(&*second.topic, "data/realtime/feature/meter-2");
    assert!(
        sub.recv_timeout(Duration::from_millis(200)).is_err(),
        "nothing else"
    );
    let stats = sub.stats();
    assert!(stats.connected && stats.subscribed);
    assert_eq!(stats.messages, 2);
}

#[test]
fn persistent_session_keeps_messages_published_while_down() {
    testkit::require_binary("mosquitto");
    let broker = Mosquitto::start();
    let cfg = config(&broker.url(), "meters/#");
    assert!(!cfg.0.clean_session, "persistent session is the default");

    let mut sub = subscribe(&cfg, "persistent-1");
    publish_numbered(&broker.url(), "meters/a", 0..10);
    assert_eq!(receive(&sub, 10), (0..10).collect::<Vec<_>>());
    sub.stop();

    // Published while the subscriber is down: the broker queues them for its session.
    publish_numbered(&broker.url(), "meters/a", 10..60);

    let sub = subscribe(&cfg, "persistent-1");
    assert_eq!(receive(&sub, 50), (10..60).collect::<Vec<_>>());
    assert!(
        sub.recv_timeout(Duration::from_millis(300)).is_err(),
        "no duplicates"
    );
}

#[test]
fn reconnects_and_resubscribes_after_broker_restart() {
    testkit::require_binary("mosquitto");
    let mut broker = Mosquitto::start();
    let sub = subscribe(&config(&broker.url(), "meters/+"), "restart");
    publish_numbered(&broker.url(), "meters/x", 0..5);
    assert_eq!(receive(&sub, 5), (0..5).collect::<Vec<_>>());

    broker.stop();
    wait_for("the subscriber to notice", || !sub.stats().connected);
    // Stay down for a few backoff rounds.
    thread::sleep(Duration::from_millis(600));
    assert!(sub.stats().connection_errors >= 2, "{:?}", sub.stats());

    // Without persistence the restarted broker has no session for us
    // (session_present = false), so the subscriber must subscribe again.
    broker.restart();
    sub.wait_subscribed(WAIT).expect("resubscribed");
    publish_numbered(&broker.url(), "meters/x", 5..15);
    assert_eq!(receive(&sub, 10), (5..15).collect::<Vec<_>>());
    let stats = sub.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert!(stats.last_error.is_some());
    // The session it had is gone, and it says so.
    assert_eq!(stats.sessions_lost, 1, "{stats:?}");
}

/// Messages queued or unacknowledged when the broker dies are sent again after it
/// comes back (as a new session), so `flush_and_close` sees every one acknowledged.
#[test]
fn publisher_resends_unconfirmed_messages_after_broker_restart() {
    testkit::require_binary("mosquitto");
    let mut broker = Mosquitto::start_with("max_queued_messages 10000");
    let sub = subscribe(&config(&broker.url(), "resend/+"), "resend-sub");
    let publisher = Publisher::connect(
        &broker.url(),
        "resend-pub",
        PublisherOptions {
            // Reconnect only after the subscriber is back, so it sees the resends.
            retry: Retry::new(Duration::from_secs(2), Duration::from_secs(2)),
            ..PublisherOptions::default()
        },
    )
    .expect("publisher");
    publisher.wait_connected(WAIT).expect("connected");
    for i in 0..2000u32 {
        publisher
            .publish("resend/1", i.to_be_bytes().to_vec(), Qos::AtLeastOnce)
            .expect("publish");
    }
    broker.stop();
    wait_for("the publisher to notice", || !publisher.stats().connected);
    let unconfirmed = publisher.stats().outstanding();
    assert!(
        unconfirmed > 0,
        "the broker died before acknowledging everything"
    );

    broker.restart();
    sub.wait_subscribed(WAIT).expect("subscriber back");
    publisher
        .flush(WAIT)
        .unwrap_or_else(|e| panic!("{e}: {:?}", publisher.stats()));
    let stats = publisher.stats();
    assert_eq!(stats.completed, 2000, "{stats:?}");
    assert!(stats.reconnects >= 1, "{stats:?}");
    publisher.flush_and_close(WAIT).expect("closed");

    // The resent messages reach the subscriber (the ones the killed broker had
    // acknowledged but not yet forwarded are the broker's loss, not ours).
    let mut received = Vec::new();
    while let Ok(message) = sub.recv_timeout(Duration::from_millis(500)) {
        received.push(number(&message));
    }
    let last_unconfirmed: Vec<u32> = (2000 - unconfirmed as u32..2000).collect();
    for i in &last_unconfirmed {
        assert!(
            received.contains(i),
            "message {i} of the resent tail is missing"
        );
    }
}

#[test]
fn bounded_channel_applies_backpressure_without_loss() {
    testkit::require_binary("mosquitto");
    let broker = Mosquitto::start_with("max_queued_messages 10000");
    let mut cfg = config(&broker.url(), "burst/+");
    cfg.1.channel_capacity = 10;
    let sub = subscribe(&cfg, "slow-consumer");

    let url = broker.url();
    let producer = thread::spawn(move || publish_numbered(&url, "burst/1", 0..1000));

    let mut received = Vec::with_capacity(1000);
    let mut max_queued = 0;
    while received.len() < 1000 {
        max_queued = max_queued.max(sub.receiver().len());
        let message = sub
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("after {} messages: {e:?}", received.len()));
        received.push(number(&message));
        if received.len() % 10 == 0 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    producer.join().expect("producer");
    assert_eq!(received, (0..1000).collect::<Vec<_>>());
    assert!(max_queued <= 10, "channel held {max_queued}");
    assert!(
        max_queued >= 5,
        "the consumer was slow enough to fill the channel"
    );
}

#[test]
fn mqtts_with_password() {
    testkit::require_binary("mosquitto");
    testkit::require_binary("mosquitto_passwd");
    let dir = tempfile::tempdir().expect("tempdir");
    make_certificates(dir.path());
    let passwd = dir.path().join("passwd");
    make_password_file(&passwd, "meter", "s3cret");
    let broker = Mosquitto::start_with(&format!(
        "cafile {}\ncertfile {}\nkeyfile {}\npassword_file {}\nallow_anonymous false\n",
        dir.path().join("ca.pem").display(),
        dir.path().join("server.pem").display(),
        dir.path().join("server.key").display(),
        passwd.display(),
    ));
    let url = format!("mqtts://127.0.0.1:{}", broker.port());

    let tls = TlsConfig {
        ca_file: Some(dir.path().join("ca.pem")),
        ..TlsConfig::default()
    };
    let mut cfg = config(&url, "secure/+");
    cfg.0.tls = TlsOptions::load_first(&tls).expect("the test CA");
    cfg.0.identity =
        ClientIdentity::new("unnamed").with_login("meter", Some(Password::new("s3cret")));
    let sub = spawn(&cfg, "tls-sub");
    sub.wait_subscribed(WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", broker.log_tail()));

    let publisher = Publisher::connect(
        &url,
        "tls-pub",
        PublisherOptions {
            tls: tls.clone(),
            username: Some("meter".into()),
            password: Some(Password::new("s3cret")),
            ..PublisherOptions::default()
        },
    )
    .expect("publisher");
    publisher
        .publish("secure/1", 7u32.to_be_bytes().to_vec(), Qos::AtLeastOnce)
        .expect("publish");
    publisher
        .flush_and_close(WAIT)
        .expect("acknowledged over TLS");
    assert_eq!(receive(&sub, 1), vec![7]);

    // Wrong password: the broker's refusal comes back with its reason.
    let mut wrong = cfg.clone();
    wrong.0.identity =
        ClientIdentity::new("unnamed").with_login("meter", Some(Password::new("guess")));
    let sub = spawn(&wrong, "tls-wrong");
    // The password shows in no error and no stats.
    assert!(!format!("{:?} {:?}", sub.stats(), wrong.0).contains("guess"));
    let err = sub
        .wait_subscribed(Duration::from_secs(3))
        .expect_err("refused");
    assert!(
        matches!(err, MqttError::Refused { code: 4 | 5, .. }),
        "unexpected: {err}"
    );

    // A CA that did not sign the server's certificate: the handshake fails.
    let mut untrusted = cfg.clone();
    untrusted.0.tls = TlsOptions::load_first(&TlsConfig {
        ca_file: Some(dir.path().join("other-ca.pem")),
        ..TlsConfig::default()
    })
    .expect("the other CA");
    let sub = spawn(&untrusted, "tls-untrusted");
    let err = sub
        .wait_subscribed(Duration::from_secs(3))
        .expect_err("untrusted");
    assert!(matches!(err, MqttError::Tls(_)), "unexpected: {err}");
}
