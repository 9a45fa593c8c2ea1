//! Starters for the servers the tests use, each a thin wrapper over [`crate::Server`].

mod influxd;
mod mosquitto;
mod prometheus;
mod victoria_metrics;

pub use influxd::Influxd;
pub use mosquitto::Mosquitto;
pub use prometheus::Prometheus;
pub use victoria_metrics::VictoriaMetrics;
