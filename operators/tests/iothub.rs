//! The IoT Hub device client against a real mosquitto standing in for the hub: TLS with
//! a test CA, logins checked against a password file holding the SAS token computed
//! here independently (openssl), QoS 1 delivery counted exactly, broker restarts, token
//! renewal, cloud-to-device messages and the twin.
//!
//! A test fails, naming the program, when mosquitto or openssl is missing
//! (`bash scripts/test.sh` installs them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use smartgrid_operators::io::TlsConfig;
use smartgrid_operators::io::mqtt::{
    ClientIdentity, ConnectOptions, Endpoint, MqttError, Password, Publisher, PublisherOptions,
    Qos, Retry, SubscribeOptions, Subscriber, TlsOptions, spawn_subscriber,
};
use smartgrid_operators::iothub::sas::Clock;
use smartgrid_operators::iothub::{
    CloudEvent, ConnectionString, DeviceClient, DeviceClientOptions, IotHubError, MemoryStore,
    Outbox, X509Files,
};
use smartgrid_runtime::record::Message;
use testkit::Mosquitto;

mod common;
use common::{add_password, make_certificates, make_password_file};

const WAIT: Duration = Duration::from_secs(20);
const HUB: &str = "smartgrid-test.azure-devices.net";
const DEVICE: &str = "meter-7";
/// 32 bytes `0123456789abcdef0123456789abcdef`, base64.
const KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY_HEX: &str = "3031323334353637383961626364656630313233343536373839616263646566";
const T0: u64 = 1_700_000_000;
/// The user the test itself uses to watch the broker (plays the hub's back end).
const OBSERVER: (&str, &str) = ("observer", "observer-pw");

/// A clock the test sets.
#[derive(Clone, Default)]
struct TestClock(Arc<AtomicU64>);

impl TestClock {
    fn at(t: u64) -> Self {
        TestClock(Arc::new(AtomicU64::new(t)))
    }
    fn set(&self, t: u64) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn unix_seconds(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The user name IoT Hub expects, written out.
fn username() -> String {
    format!("{HUB}/{DEVICE}/?api-version=2021-04-12")
}

/// The SAS token for the device and `expiry`, by openssl and by hand-written encoding.
fn sas_by_openssl(key_hex: &str, expiry: u64) -> String {
    let resource = format!("{HUB}%2Fdevices%2F{DEVICE}");
    let openssl = testkit::find_binary("openssl").expect("openssl");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s' \"$1\" | {0} dgst -sha256 -mac HMAC -macopt hexkey:{key_hex} -binary | {0} base64 -A",
            openssl.display()
        ))
        .arg("sh")
        .arg(format!("{resource}\n{expiry}"))
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{out:?}");
    let signature = String::from_utf8(out.stdout)
        .expect("base64")
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    format!("SharedAccessSignature sr={resource}&sig={signature}&se={expiry}")
}

struct Hub {
    broker: Mosquitto,
    dir: tempfile::TempDir,
    passwd: PathBuf,
}

impl Hub {
    /// mosquitto with TLS and a password file accepting the device with `token`.
    fn start(token: &str) -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        make_certificates(dir.path());
        let passwd = dir.path().join("passwd");
        make_password_file(&passwd, &username(), token);
        add_password(&passwd, OBSERVER.0, OBSERVER.1);
        let broker = Mosquitto::start_with(&format!(
            "cafile {}\ncertfile {}\nkeyfile {}\npassword_file {}\nallow_anonymous false\nmax_queued_messages 100000\n",
            dir.path().join("ca.pem").display(),
            dir.path().join("server.pem").display(),
            dir.path().join("server.key").display(),
            passwd.display(),
        ));
        Hub {
            broker,
            dir,
            passwd,
        }
    }

    fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.broker.port())
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn tls(&self) -> TlsConfig {
        TlsConfig {
            ca_file: Some(self.ca()),
            ..TlsConfig::default()
        }
    }

    /// The test's own subscriber (persistent session, quick reconnects).
    fn observe(&self, topics: &[&str], client_id: &str) -> Subscriber {
        let identity =
            ClientIdentity::new(client_id).with_login(OBSERVER.0, Some(Password::new(OBSERVER.1)));
        let mut connect = ConnectOptions::new(Endpoint::parse(&self.url()).expect("url"), identity);
        connect.tls = TlsOptions::load_first(&self.tls()).expect("the test CA");
        connect.retry = Retry::new(Duration::from_millis(50), Duration::from_millis(200));
        let sub = spawn_subscriber(
            &connect,
            &SubscribeOptions::new(topics.iter().copied()),
            Arc::default(),
        )
        .expect("spawn");
        sub.wait_subscribed(WAIT)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.broker.log_tail()));
        sub
    }

    /// A publisher playing the hub's side.
    fn backend(&self) -> Publisher {
        let publisher = Publisher::connect(
            &self.url(),
            "backend",
            PublisherOptions {
                tls: self.tls(),
                username: Some(OBSERVER.0.into()),
                password: Some(Password::new(OBSERVER.1)),
                ..PublisherOptions::default()
            },
        )
        .expect("publisher");
        publisher.wait_connected(WAIT).expect("backend connected");
        publisher
    }

    /// Restarts the stopped broker so that the observer is subscribed again before the
    /// device may connect (the broker refuses the device until then): the restarted
    /// broker has no sessions, so anything the device sent earlier would reach nobody.
    fn restart_observer_first(&mut self, observer: &Subscriber, token: &str) {
        wait_for("the observer to notice the broker is gone", || {
            !observer.stats().subscribed
        });
        add_password(&self.passwd, &username(), "not-the-token");
        self.broker.restart();
        observer.wait_subscribed(WAIT).expect("observer back");
        add_password(&self.passwd, &username(), token);
        self.broker.reload();
    }

    fn options(&self, key_b64: &str, clock: &TestClock) -> DeviceClientOptions {
        let cs: ConnectionString =
            format!("HostName={HUB};DeviceId={DEVICE};SharedAccessKey={key_b64}")
                .parse()
                .expect("valid connection string");
        let mut options = DeviceClientOptions::new(cs);
        options.host = Some("127.0.0.1".into());
        options.port = self.broker.port();
        options.ca_file = Some(self.ca());
        options.clock = Arc::new(clock.clone());
        options.reconnect_min = Duration::from_millis(200);
        options.reconnect_max = Duration::from_secs(1);
        options
    }
}

fn memory_outbox() -> Outbox {
    Outbox::new(Box::new(MemoryStore::new(64 << 20)))
}

fn number(message: &Message) -> u32 {
    std::str::from_utf8(&message.payload)
        .expect("text")
        .trim_start_matches("{\"n\":")
        .trim_end_matches('}')
        .parse()
        .expect("a numbered payload")
}

fn payload(i: u32) -> Vec<u8> {
    format!("{{\"n\":{i}}}").into_bytes()
}

/// Receives until `count` messages came or nothing comes for a second; then checks
/// that nothing more arrives.
fn receive(sub: &Subscriber, count: usize) -> Vec<Message> {
    let mut out = Vec::new();
    while out.len() < count {
        match sub.recv_timeout(WAIT) {
            Ok(m) => out.push(m),
            Err(e) => panic!("after {} of {count} messages: {e:?}", out.len()),
        }
    }
    if let Ok(extra) = sub.recv_timeout(Duration::from_millis(300)) {
        panic!("an unexpected extra message: {extra:?}");
    }
    out
}

fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// The hub stand-in: mosquitto with password checking, and openssl for certificates and
/// reference SAS signatures.
fn require_servers() {
    testkit::require_binary("mosquitto");
    testkit::require_binary("mosquitto_passwd");
    testkit::require_binary("openssl");
}

#[test]
fn telemetry_at_qos1_with_the_hubs_login_topic_and_properties() {
    require_servers();
    let token = sas_by_openssl(KEY_HEX, T0 + 3600);
    let hub = Hub::start(&token);
    let events = format!("devices/{DEVICE}/messages/events/#");
    let sub = hub.observe(&[&events], "observer-telemetry");

    let clock = TestClock::at(T0);
    let client =
        DeviceClient::connect(hub.options(KEY_B64, &clock), memory_outbox()).expect("client");
    client
        .wait_connected(WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", hub.broker.log_tail()));
    assert_eq!(client.stats().token_expiry, Some(T0 + 3600));
    for i in 0..300 {
        client
            .send_event(
                &payload(i),
                &[("type", "prediction_error"), ("site", "a b/c")],
            )
            .expect("queued");
    }
    client.flush(WAIT).expect("all acknowledged");
    let stats = client.stats();
    assert_eq!(
        (stats.acknowledged, stats.outbox_pending),
        (300, 0),
        "{stats:?}"
    );

    let received = receive(&sub, 300);
    let topic = format!(
        "devices/{DEVICE}/messages/events/$.ct=application%2Fjson&$.ce=utf-8&type=prediction_error&site=a%20b%2Fc"
    );
    for (i, message) in received.iter().enumerate() {
        assert_eq!(&*message.topic, topic);
        assert_eq!(number(message), i as u32, "in order, each once");
    }
    client.close(WAIT).expect("closed");

    // The same device with another key: its signature does not match the password.
    let other_key = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktISE=";
    let wrong =
        DeviceClient::connect(hub.options(other_key, &clock), memory_outbox()).expect("client");
    let err = wrong
        .wait_connected(Duration::from_secs(3))
        .expect_err("refused");
    assert!(
        matches!(
            err,
            IotHubError::Mqtt(MqttError::Refused { code: 4 | 5, .. })
        ),
        "{err}"
    );
    // And the right key with another expiry signs another token: refused too.
    let late = DeviceClient::connect(
        hub.options(KEY_B64, &TestClock::at(T0 + 1)),
        memory_outbox(),
    )
    .expect("client");
    assert!(late.wait_connected(Duration::from_secs(3)).is_err());
}

#[test]
fn nothing_is_lost_across_a_broker_restart() {
    require_servers();
    let token = sas_by_openssl(KEY_HEX, T0 + 3600);
    let mut hub = Hub::start(&token);
    let events = format!("devices/{DEVICE}/messages/events/#");
    let sub = hub.observe(&[&events], "observer-restart");
    let clock = TestClock::at(T0);
    let client =
        DeviceClient::connect(hub.options(KEY_B64, &clock), memory_outbox()).expect("client");
    client.wait_connected(WAIT).expect("connected");
    for i in 0..100 {
        client.send_event(&payload(i), &[]).expect("queued");
    }
    client.flush(WAIT).expect("acknowledged");
    let mut got: Vec<u32> = receive(&sub, 100).iter().map(number).collect();

    hub.broker.stop();
    wait_for("the client to notice", || !client.stats().connected);
    // Sent while the hub is away: they wait in the outbox.
    for i in 100..400 {
        client.send_event(&payload(i), &[]).expect("queued");
    }
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(client.stats().outbox_pending, 300);
    hub.restart_observer_first(&sub, &token);
    client
        .flush(WAIT)
        .unwrap_or_else(|e| panic!("{e}: {:?}", client.stats()));
    got.extend(receive(&sub, 300).iter().map(number));
    assert_eq!(got, (0..400).collect::<Vec<_>>());
    let stats = client.stats();
    assert!(
        stats.connections >= 2 && stats.connection_errors >= 1,
        "{stats:?}"
    );
    client.close(WAIT).expect("closed");
}

/// Messages in flight when the broker dies unacknowledged are sent again from the
/// outbox. The broker is frozen first, so it can neither acknowledge nor forward them:
/// they reach the observer only through the client's resend, each exactly once.
#[test]
fn unacknowledged_messages_are_resent_after_the_broker_dies() {
    require_servers();
    let token = sas_by_openssl(KEY_HEX, T0 + 3600);
    let mut hub = Hub::start(&token);
    let events = format!("devices/{DEVICE}/messages/events/#");
    let sub = hub.observe(&[&events], "observer-inflight");
    let clock = TestClock::at(T0);
    let options = hub.options(KEY_B64, &clock);
    let window = u64::from(options.max_in_flight);
    let client = DeviceClient::connect(options, memory_outbox()).expect("client");
    client.wait_connected(WAIT).expect("connected");
    for i in 0..50 {
        client.send_event(&payload(i), &[]).expect("queued");
    }
    client.flush(WAIT).expect("acknowledged");
    let mut got: Vec<u32> = receive(&sub, 50).iter().map(number).collect();

    hub.broker.freeze();
    for i in 50..250 {
        client.send_event(&payload(i), &[]).expect("queued");
    }
    wait_for("a full in-flight window", || {
        client.stats().sent == 50 + window
    });
    let stats = client.stats();
    assert_eq!(
        (stats.acknowledged, stats.outbox_pending),
        (50, 200),
        "{stats:?}"
    );

    hub.broker.stop();
    hub.restart_observer_first(&sub, &token);
    client
        .flush(WAIT)
        .unwrap_or_else(|e| panic!("{e}: {:?}", client.stats()));
    got.extend(receive(&sub, 200).iter().map(number));
    assert_eq!(got, (0..250).collect::<Vec<_>>());
    let stats = client.stats();
    // The first window was written twice: once to the frozen broker, once again.
    assert_eq!(
        (stats.sent, stats.acknowledged),
        (250 + window, 250),
        "{stats:?}"
    );
    client.close(WAIT).expect("closed");
}

#[test]
fn the_token_is_renewed_before_it_expires() {
    require_servers();
    // The broker accepts only the token of the current expiry; the test replaces it
    // (and makes mosquitto re-read the file) when the client's clock moves on.
    let hub = Hub::start(&sas_by_openssl(KEY_HEX, T0 + 3));
    let events = format!("devices/{DEVICE}/messages/events/#");
    let sub = hub.observe(&[&events], "observer-renewal");
    let clock = TestClock::at(T0);
    let mut options = hub.options(KEY_B64, &clock);
    options.token_ttl = Duration::from_secs(3);
    let client = DeviceClient::connect(options.clone(), memory_outbox()).expect("client");
    client.wait_connected(WAIT).expect("connected");
    client.send_event(&payload(0), &[]).expect("queued");
    client.flush(WAIT).expect("acknowledged");

    let mut expected = vec![0];
    // Three renewals: 80 % of 3 s is 2 s, so the client renews at T0+2, T0+4, T0+6.
    // mosquitto knows one password per user and, on reload, drops clients whose
    // password no longer matches; so the new token goes into the file first, the
    // clock moves (the client disconnects by itself and presents the new token,
    // refused until the broker re-reads the file), then the broker reloads.
    for (round, now) in [T0 + 2, T0 + 4, T0 + 6].into_iter().enumerate() {
        let round = round as u64 + 1;
        add_password(&hub.passwd, &username(), &sas_by_openssl(KEY_HEX, now + 3));
        clock.set(now);
        wait_for("the client to renew its token", || {
            client.stats().token_renewals == round
        });
        hub.broker.reload();
        wait_for("the reconnection with the new token", || {
            let s = client.stats();
            s.connected && s.connections == round + 1
        });
        assert_eq!(client.stats().token_expiry, Some(now + 3));
        let i = round as u32;
        client.send_event(&payload(i), &[]).expect("queued");
        client
            .flush(WAIT)
            .expect("acknowledged on the renewed connection");
        expected.push(i);
    }
    let got: Vec<u32> = receive(&sub, expected.len()).iter().map(number).collect();
    assert_eq!(got, expected);
    let stats = client.stats();
    assert_eq!(
        (stats.connections, stats.token_renewals),
        (4, 3),
        "{stats:?}"
    );
    // Each renewal began with the client's own DISCONNECT while the broker still
    // accepted the old token (before the reload), and the next session was accepted
    // only after the broker knew the new token.
    let log = std::fs::read_to_string(hub.broker.dir().join("mosquitto.log")).expect("log");
    let steps: Vec<&str> = log
        .lines()
        .filter_map(|line| {
            if line.contains("New client connected") && line.contains(&format!(" as {DEVICE} ")) {
                Some("connect")
            } else if line.ends_with(&format!("Client {DEVICE} disconnected.")) {
                Some("disconnect")
            } else if line.ends_with("Reloading config.") {
                Some("reload")
            } else {
                None
            }
        })
        .collect();
    let mut pattern = vec!["connect"];
    for _ in 0..3 {
        pattern.extend(["disconnect", "reload", "connect"]);
    }
    assert_eq!(steps, pattern, "{log}");

    // The broker now refuses the first token: the renewal was needed to stay in.
    options.clock = Arc::new(TestClock::at(T0));
    let stale = DeviceClient::connect(options, memory_outbox()).expect("client");
    assert!(stale.wait_connected(Duration::from_secs(2)).is_err());
    client.close(WAIT).expect("closed");
}

#[test]
fn cloud_to_device_messages_and_the_twin() {
    require_servers();
    let hub = Hub::start(&sas_by_openssl(KEY_HEX, T0 + 3600));
    let requests = hub.observe(
        &[
            "$iothub/twin/PATCH/properties/reported/#",
            "$iothub/twin/GET/#",
        ],
        "observer-twin",
    );
    let clock = TestClock::at(T0);
    let client =
        DeviceClient::connect(hub.options(KEY_B64, &clock), memory_outbox()).expect("client");
    wait_for("the subscriptions", || client.stats().subscribed);
    let backend = hub.backend();

    backend
        .publish(
            &format!("devices/{DEVICE}/messages/devicebound/%24.mid=42&%24.to=%2Fdevices%2F{DEVICE}%2Fmessages%2Fdevicebound&kind=model%20update"),
            b"new model".to_vec(),
            Qos::AtLeastOnce,
        )
        .expect("publish");
    backend
        .publish(
            "$iothub/twin/PATCH/properties/desired/?$version=7",
            br#"{"threshold":0.25,"$version":7}"#.to_vec(),
            Qos::AtMostOnce,
        )
        .expect("publish");
    backend.flush(WAIT).expect("flushed");

    let event = client.events().recv_timeout(WAIT).expect("a C2D message");
    let CloudEvent::Message(message) = event else {
        panic!("unexpected {event:?}");
    };
    assert_eq!(message.payload.as_ref(), b"new model");
    let properties: BTreeMap<_, _> = message.properties.into_iter().collect();
    assert_eq!(properties.get("$.mid").map(String::as_str), Some("42"));
    assert_eq!(
        properties.get("kind").map(String::as_str),
        Some("model update")
    );
    assert_eq!(
        properties.get("$.to").map(String::as_str),
        Some(format!("/devices/{DEVICE}/messages/devicebound").as_str())
    );
    let event = client.events().recv_timeout(WAIT).expect("a desired patch");
    let CloudEvent::Desired(patch) = event else {
        panic!("unexpected {event:?}");
    };
    assert_eq!(patch.version, Some(7));
    assert_eq!(patch.patch["threshold"], 0.25);

    // Reported properties: a PATCH with a request id; the hub's 204 comes back.
    let reported = serde_json::json!({"smartgrid": {"version": "0.1.0"}});
    let rid = client.report_properties(&reported).expect("queued");
    let request = requests.recv_timeout(WAIT).expect("the PATCH");
    assert_eq!(
        &*request.topic,
        format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
    );
    let body: serde_json::Value = serde_json::from_slice(&request.payload).expect("JSON");
    assert_eq!(body, reported);
    backend
        .publish(
            &format!("$iothub/twin/res/204/?$rid={rid}&$version=3"),
            Vec::new(),
            Qos::AtMostOnce,
        )
        .expect("publish");
    let event = client.events().recv_timeout(WAIT).expect("the response");
    let CloudEvent::TwinResponse(response) = event else {
        panic!("unexpected {event:?}");
    };
    assert_eq!(
        (response.rid.as_str(), response.status, response.version),
        (rid.as_str(), 204, Some(3))
    );

    // GET of the full twin.
    let rid = client.get_twin();
    let request = requests.recv_timeout(WAIT).expect("the GET");
    assert_eq!(&*request.topic, format!("$iothub/twin/GET/?$rid={rid}"));
    let twin = serde_json::json!({"desired": {"threshold": 0.25, "$version": 7}, "reported": {"$version": 3}});
    backend
        .publish(
            &format!("$iothub/twin/res/200/?$rid={rid}"),
            serde_json::to_vec(&twin).expect("json"),
            Qos::AtMostOnce,
        )
        .expect("publish");
    let event = client.events().recv_timeout(WAIT).expect("the twin");
    let CloudEvent::TwinResponse(response) = event else {
        panic!("unexpected {event:?}");
    };
    assert_eq!(
        (response.rid, response.status, response.body),
        (rid, 200, Some(twin))
    );
    backend.flush_and_close(WAIT).expect("closed");
    client.close(WAIT).expect("closed");
}

#[test]
fn x509_devices_present_a_client_certificate() {
    testkit::require_binary("mosquitto");
    let dir = tempfile::tempdir().expect("tempdir");
    make_certificates(dir.path());
    let broker = Mosquitto::start_with(&format!(
        "cafile {0}\ncertfile {1}\nkeyfile {2}\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous false\n",
        dir.path().join("ca.pem").display(),
        dir.path().join("server.pem").display(),
        dir.path().join("server.key").display(),
    ));
    let cs: ConnectionString = format!("HostName={HUB};DeviceId=device-x509;x509=true")
        .parse()
        .expect("valid");
    let mut options = DeviceClientOptions::new(cs);
    options.host = Some("127.0.0.1".into());
    options.port = broker.port();
    options.ca_file = Some(dir.path().join("ca.pem"));
    options.reconnect_min = Duration::from_millis(200);
    let with_cert = |options: &DeviceClientOptions, cert: &Path| {
        let mut options = options.clone();
        options.x509 = Some(X509Files {
            cert: cert.to_path_buf(),
            key: dir.path().join("device.key"),
        });
        options
    };
    let client = DeviceClient::connect(
        with_cert(&options, &dir.path().join("device.pem")),
        memory_outbox(),
    )
    .expect("client");
    client
        .wait_connected(WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", broker.log_tail()));
    client.send_event(b"[]", &[]).expect("queued");
    client.flush(WAIT).expect("acknowledged");
    client.close(WAIT).expect("closed");

    // Without the certificate the connection string alone is refused before connecting.
    let err = DeviceClient::connect(options, memory_outbox()).expect_err("needs x509 files");
    assert!(err.to_string().contains("x509"), "{err}");
}

/// Closing without a hub: at once when nothing is pending; after the timeout, with
/// an error naming what is left, when something is.
#[test]
fn closing_without_a_hub() {
    let cs: ConnectionString =
        format!("HostName={HUB};DeviceId={DEVICE};SharedAccessKey={KEY_B64}")
            .parse()
            .expect("valid");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), "").expect("write");
    let mut options = DeviceClientOptions::new(cs);
    options.host = Some("127.0.0.1".into());
    options.port = testkit::free_port();
    options.reconnect_min = Duration::from_millis(100);
    // An empty CA file is refused before anything starts, naming the key.
    options.ca_file = Some(dir.path().join("ca.pem"));
    let err = DeviceClient::connect(options.clone(), memory_outbox()).expect_err("no CA");
    assert!(err.to_string().contains("ca_file"), "{err}");
    make_certificates(dir.path());

    let idle = DeviceClient::connect(options.clone(), memory_outbox()).expect("client");
    let started = Instant::now();
    idle.close(Duration::from_secs(10))
        .expect("nothing to send");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let busy = DeviceClient::connect(options, memory_outbox()).expect("client");
    busy.send_event(b"[1]", &[]).expect("queued");
    let started = Instant::now();
    let err = busy.close(Duration::from_secs(1)).expect_err("unsent");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    match &err {
        IotHubError::Unsent {
            pending: 1,
            last_error: Some(last),
        } => assert!(
            matches!(**last, IotHubError::Mqtt(MqttError::Connection { .. })),
            "{err}"
        ),
        other => panic!("unexpected {other}"),
    }
    assert!(
        err.to_string().starts_with("1 message(s) not acknowledged"),
        "{err}"
    );
}
