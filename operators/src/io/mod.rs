//! What the connectors share, beside the node kinds: how to wait between attempts and
//! how TLS is configured (and checked while planning). The MQTT and HTTP layers build
//! on it; no timely code lives here.

mod backoff;
mod tls;

pub use backoff::Backoff;
pub use tls::{TlsConfig, nested_key_at, plan_tls};
