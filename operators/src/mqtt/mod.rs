//! The MQTT client layer: the `mqtt` source's settings, a subscriber thread feeding a
//! bounded channel, a blocking publisher, and an embedded broker. No timely code lives
//! here; the source operator drains [`Subscriber`] without blocking.
//!
//! * [`MqttConfig`]: the node's settings, with [`MqttConfig::validate`].
//! * [`spawn_subscriber`] → [`Subscriber`]: connect, subscribe, reconnect with backoff,
//!   QoS 1 acks only after a message is in the channel.
//! * [`Publisher`]: queue messages, reconnect, [`Publisher::flush_and_close`].
//! * [`embedded_broker`]: the in-process broker behind `url: embedded`.
//!
//! TLS uses rustls with the `ring` provider; every connection is built by
//! [`mqtt_options`].

mod client;
mod config;
mod embedded;
mod error;
mod node;
mod options;
mod publisher;

pub(crate) use client::{StopFlags, lock, next_backoff};
pub use client::{Subscriber, SubscriberStats, spawn_subscriber};
pub use config::{ConfigIssue, DEFAULT_PORT, DEFAULT_TLS_PORT, DEFAULT_TOPIC, MqttConfig, Qos};
pub use crossbeam_channel::{RecvTimeoutError, TryRecvError};
pub use embedded::{EmbeddedBroker, embedded_broker, start_embedded_broker};
pub use error::MqttError;
pub use node::MqttSource;
pub use options::{MAX_PACKET_SIZE, mqtt_options, tls_client_config};
pub use publisher::{Publisher, PublisherOptions, PublisherStats};
