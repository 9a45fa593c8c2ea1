//! What the connectors share, beside the node kinds: how to wait between attempts
//! ([`Backoff`]), how TLS is configured ([`TlsConfig`]), and the one MQTT connection
//! layer ([`mqtt`]) every MQTT client runs on. No timely code lives here.

mod backoff;
pub mod mqtt;
mod redact;
mod throttle;
mod tls;

pub use backoff::Backoff;
pub use redact::{redact_url, shown_url};
pub use throttle::ThrottledLog;
pub use tls::{TlsConfig, nested_key_at, plan_tls};
