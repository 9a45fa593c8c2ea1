//! What the connectors share, beside the node kinds: how to wait between attempts and
//! how TLS is configured, and the one MQTT connection layer ([`mqtt`]). The HTTP
//! sinks build on the first two; no timely code lives
//! here.

mod backoff;
pub mod mqtt;
mod tls;

pub use backoff::Backoff;
pub use tls::TlsConfig;
