//! An MQTT broker inside this process (rumqttd), for `url: embedded`: the simulator
//! and the pipeline talk through it without an external broker.
//!
//! It listens on 127.0.0.1 only, without TLS or logins. rumqttd has no way to stop a
//! broker, so once started it lives until the process ends; [`embedded_broker`] starts
//! one per process and hands every caller its address.
//!
//! Memory is bounded per subscription filter: rumqttd keeps the messages matching a
//! filter in an in-memory log of at most `MAX_SEGMENT_COUNT` + 1 segments of
//! `MAX_SEGMENT_SIZE` bytes (about 1.5 MiB of topics and payloads). A subscriber that
//! falls further behind than that is moved forward and misses the oldest messages, even
//! with QoS 1 (rumqttd behaves like a log with retention, not like mosquitto's
//! per-client queue). At 1000 sensors × 12 Hz × ~120 bytes (a type-16 payload and its
//! topic) that is about 1 s of lag. It is the last of three buffers: the broker writes
//! to the subscriber's socket as long as the socket takes it (on loopback the kernel
//! buffers up to a few MiB), and the subscriber hands messages to the pipeline through
//! its own channel (10 000 messages, another 0.8 s); the log is read from only when
//! both are full. Messages on topics that no filter matches are dropped, not stored.
//!
//! The log is the broker's largest allocation and it stays full once filled: each
//! message also costs rumqttd a ~250-byte index entry, and it keeps the read buffer
//! the message was cut from alive, so a log costs about 2.5× its byte size in
//! resident memory (with 4 × 1 MiB segments the embedded default used 33 MB; with
//! 8 × 256 KiB, 27 MB; with 5 × 256 KiB, about 2 MB less again: see BENCHMARKS.md).
//!
//! rumqttd logs through `tracing` at info level for every connection. To keep it
//! quiet, the application's tracing filter should include `rumqttd=warn` (or `off`).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use super::error::MqttError;

/// The largest payload the embedded broker accepts.
pub const MAX_PAYLOAD_SIZE: usize = 1024 * 1024;

/// The most clients connected at once.
pub const MAX_CONNECTIONS: usize = 1000;

/// Each subscription filter's in-memory log keeps at most this many segments …
const MAX_SEGMENT_COUNT: usize = 5;

/// … of at most this many bytes each (topic + payload + 4 per message): 1.25 MiB per
/// filter besides the segment being filled, about 1 s of 1000 sensors at 12 Hz. Many
/// small segments rather than a few large ones: a subscriber that falls behind loses
/// one segment at a time.
const MAX_SEGMENT_SIZE: usize = 256 * 1024;

/// How long to wait for the listener to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// A running embedded broker. It keeps running when this value is dropped (rumqttd
/// cannot be stopped); the value only carries the address.
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

impl EmbeddedBroker {
    /// The address it listens on (127.0.0.1 and a port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }
}

/// The process's shared embedded broker: started on a free port at the first call,
/// then the same address for every call. If starting fails, the next call tries again.
pub fn embedded_broker() -> Result<SocketAddr, MqttError> {
    static BROKER: Mutex<Option<SocketAddr>> = Mutex::new(None);
    // A panic while holding the lock cannot leave a half-written Option behind.
    let mut slot = BROKER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(addr) = *slot {
        return Ok(addr);
    }
    let broker = start_embedded_broker(0)?;
    *slot = Some(broker.addr());
    Ok(broker.addr())
}

/// Starts a new embedded broker on `127.0.0.1:port` (`0`: a free port) and returns once
/// it accepts TCP connections. Most callers want the shared [`embedded_broker`].
pub fn start_embedded_broker(port: u16) -> Result<EmbeddedBroker, MqttError> {
    // rumqttd binds inside its own thread and does not report the bound port, so for
    // port 0 we pick a free port first. Another process may grab it in between; then
    // the listener fails and we try another one.
    let attempts = if port == 0 { 3 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let chosen = if port == 0 { free_port()? } else { port };
        match start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, chosen))) {
            Ok(broker) => return Ok(broker),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| MqttError::Embedded("not started".into())))
}

fn free_port() -> Result<u16, MqttError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| MqttError::Embedded(format!("cannot find a free port on 127.0.0.1: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| MqttError::Embedded(format!("cannot find a free port on 127.0.0.1: {e}")))?
        .port();
    Ok(port)
}

/// rumqttd's configuration, built in code: one MQTT 3.1.1 listener on `addr` and
/// limits sized for a Raspberry Pi.
fn config(addr: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: 5_000,
        max_payload_size: MAX_PAYLOAD_SIZE,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "smartgrid-embedded".to_string(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let router = RouterConfig {
        max_connections: MAX_CONNECTIONS,
        max_outgoing_packet_count: 200,
        max_segment_size: MAX_SEGMENT_SIZE,
        max_segment_count: MAX_SEGMENT_COUNT,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    }
}

fn start_on(addr: SocketAddr) -> Result<EmbeddedBroker, MqttError> {
    // A port someone else listens on would answer our readiness probe although rumqttd
    // failed to bind it, so check that it is free first.
    drop(
        TcpListener::bind(addr)
            .map_err(|e| MqttError::Embedded(format!("cannot listen on {addr}: {e}")))?,
    );
    let (done_tx, done_rx) = mpsc::channel::<String>();
    let config = config(addr);
    thread::Builder::new()
        .name("mqtt-embedded".to_string())
        .spawn(move || {
            let mut broker = Broker::new(config);
            // `start` blocks while the listener runs; it returns only if the listener
            // could not start (e.g. the port is taken) or died.
            let outcome = match broker.start() {
                Ok(()) => "the broker's listener stopped (is the port in use?)".to_string(),
                Err(e) => e.to_string(),
            };
            let _ = done_tx.send(outcome);
        })
        .map_err(|e| MqttError::Spawn(Arc::new(e)))?;

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(reason) = done_rx.try_recv() {
            return Err(MqttError::Embedded(format!(
                "cannot listen on {addr}: {reason}"
            )));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            tracing::info!(%addr, "embedded MQTT broker listening");
            return Ok(EmbeddedBroker { addr });
        }
        if Instant::now() >= deadline {
            return Err(MqttError::Embedded(format!(
                "did not accept connections on {addr} within {READY_TIMEOUT:?}"
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_broker_is_started_once() {
        let a = embedded_broker().expect("starts");
        let b = embedded_broker().expect("already running");
        assert_eq!(a, b);
        assert!(a.ip().is_loopback());
        TcpStream::connect(a).expect("accepts connections");
    }

    #[test]
    fn taken_port_is_reported() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let err = start_embedded_broker(port).expect_err("the port is taken");
        assert!(err.to_string().contains("cannot listen"), "{err}");
    }
}
