//! The one MQTT connection layer: every MQTT connection of smartgrid — the `mqtt`
//! source's subscriber, every publisher (simulator, dead letters) and the IoT Hub
//! device client — runs on the same [`Driver`](driver) around rumqttc's event loop,
//! with the same typed options, backoff, TLS and error logging. No timely code and no
//! node settings live here; the `mqtt` node kind (`crate::mqtt`) plans its YAML into
//! these types once.
//!
//! * [`ConnectOptions`]: [`Endpoint`], [`ClientIdentity`], [`TlsOptions`] (parsed from a
//!   [`TlsConfig`](crate::io::TlsConfig)), keep-alive, session, [`Retry`].
//! * [`spawn_subscriber`] → [`Subscriber`]: subscribe, QoS 1 acks only after a message
//!   is in the bounded channel, resubscribe when the broker lost the session (and
//!   count and warn about it, for a persistent session).
//! * [`spawn_logged_subscriber`]: the same with a write-ahead log ([`Journal`]): a
//!   message is synced to disk before it is acknowledged (group commit), and replayed
//!   after a crash.
//! * [`Publisher`]: queue messages, resend after a lost session,
//!   [`Publisher::flush_and_close`].
//! * [`embedded_broker`]: the in-process broker behind `url: embedded`.
//! * The driver (crate-internal): connect, reconnect with
//!   [`Backoff`](crate::io::Backoff) (jittered, capped, reset after a connection), stop
//!   flags, connection state, one throttled log of connection errors.
//!
//! TLS uses rustls with the `ring` provider.

pub(crate) mod driver;
mod embedded;
mod error;
mod journal;
mod options;
mod publisher;
mod subscriber;
mod tls;

pub use crossbeam_channel::{RecvTimeoutError, TryRecvError};
pub use embedded::{EmbeddedBroker, embedded_broker, start_embedded_broker};
pub use error::MqttError;
pub use journal::{Fsync, Journal, JournalCounters, JournalHandle, JournalOptions, Replayed};
pub use options::{
    ClientIdentity, ConnectOptions, DEFAULT_PORT, DEFAULT_TLS_PORT, Endpoint, MAX_PACKET_SIZE,
    Password, Qos, Retry,
};
pub use publisher::{Publisher, PublisherOptions, PublisherStats};
pub use subscriber::{
    Refused, SubscribeOptions, Subscriber, SubscriberStats, spawn_logged_subscriber,
    spawn_subscriber,
};
pub use tls::TlsOptions;
