//! The `mqtt` node kind, and only it: its YAML settings ([`MqttConfig`]) and the planned
//! node ([`MqttSource`]), which turns them into the typed options of the one MQTT
//! connection layer, [`crate::io::mqtt`], where the subscriber, the publisher and the
//! embedded broker live; `wal.rs` is the node's side of its write-ahead log.

mod cluster;
mod config;
mod node;
mod wal;

pub use config::{
    ClusterConfig, ClusterSubscribe, DEFAULT_TOPIC, DEFAULT_WAL_SIZE, MqttConfig, RetryConfig,
    WalConfig, WalFsync,
};
pub use node::MqttSource;
