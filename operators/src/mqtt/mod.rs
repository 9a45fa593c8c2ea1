//! The `mqtt` node kind, and only it: its YAML settings ([`MqttConfig`]) and the planned
//! node ([`MqttSource`]), which turns them into the typed options of the one MQTT
//! connection layer, [`crate::io::mqtt`], where the subscriber, the publisher and the
//! embedded broker live.

mod config;
mod node;

pub use config::{DEFAULT_TOPIC, MqttConfig, RetryConfig};
pub use node::MqttSource;
