//! Starters for the servers the tests use, each a thin wrapper over [`crate::Server`].

mod influxd;
mod mosquitto;
mod victoria_metrics;

pub use influxd::Influxd;
pub use mosquitto::Mosquitto;
pub use victoria_metrics::VictoriaMetrics;
