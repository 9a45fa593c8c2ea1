//! The `mqtt` node kind, and only it: its YAML settings ([`MqttConfig`]) and the planned
//! node ([`MqttSource`]), which turns them into the typed options of the one MQTT
//! connection layer, [`crate::io::mqtt`], where the subscriber, the publisher and the
//! embedded broker live.

mod config;
mod node;

pub use config::{DEFAULT_TOPIC, MqttConfig, RetryConfig};
pub use node::MqttSource;

/// One problem of a config check: the key at fault, what is wrong, and a hint. The
/// `mqtt` kind reports through its `PlanContext`; only the `iothub` kind's settings
/// check (`iothub/config.rs`) still returns these.
pub type ConfigIssue = (&'static str, String, String);

// The dead-letter publisher of `decode` imports these from here.
pub(crate) use crate::io::mqtt::{Publisher, PublisherOptions, Qos};
