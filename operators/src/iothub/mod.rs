//! The `iothub` sink and an Azure IoT Hub device client on the MQTT connection layer
//! (`crate::io::mqtt`).
//!
//! * [`ConnectionString`]: `HostName=…;DeviceId=…;SharedAccessKey=…` (or `x509=true`).
//! * [`sas`]: SAS tokens (HMAC-SHA256 of the resource and expiry with the device key).
//! * [`DeviceClient`]: QoS 1 telemetry from an [`Outbox`], C2D messages, twin desired
//!   patches, reported properties, token renewal, reconnect with backoff. The handle
//!   (`client.rs`) and the connection thread (`session.rs`) share `options.rs` and
//!   `shared.rs`, not each other.
//! * [`batch`]: records packed into JSON arrays that fit IoT Hub's 4 KB billing block.
//! * [`IotHubSink`]: the `iothub` node kind.
//!
//! Why not the `azure_iot_sdk` crate: it publishes at QoS 0, panics when the connection
//! drops, hard-codes port 8883 and the system trust store, and never renews its token.

pub mod batch;
mod client;
mod config;
mod connection_string;
mod events;
mod node;
mod options;
pub mod outbox;
pub mod sas;
mod session;
mod shared;

pub use client::{
    API_VERSION, DEFAULT_PORT, DeviceClient, DeviceClientOptions, DeviceClientStats, IotHubError,
    JSON_PROPERTIES, X509Files,
};
pub use config::{IotHubConfig, X509Config};
pub(crate) use config::{default_keep_alive, default_port, default_token_ttl, port as tcp_port};
pub use connection_string::{ConnectionString, ConnectionStringError, Credential, SharedAccessKey};
pub use events::{CloudEvent, CloudMessage, DesiredPatch, TwinResponse};
pub use node::IotHubSink;
pub(crate) use node::{device_claim, device_files};
pub use outbox::{MemoryStore, Outbox, OutboxError, OutboxStore};
