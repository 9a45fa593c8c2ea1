//! smartgrid's built-in operators, one folder each: settings (serde, documented), the
//! factory that plans a node, and the timely operator that runs it.

pub mod compare_with_lag;
pub mod decode;
pub mod influx;
pub mod iothub;
pub mod mqtt;
pub mod predict;
pub mod simulate;
pub mod sink;
pub mod spool;
pub mod window_mean;

use smartgrid_runtime::Registry;

/// A registry with every built-in node kind.
pub fn builtin_registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register(mqtt::MqttSourceFactory)
        .register(simulate::SimulateFactory)
        .register(decode::node::DecodeFactory)
        .register(window_mean::WindowMeanFactory)
        .register(predict::PredictFactory)
        .register(compare_with_lag::CompareWithLagFactory)
        .register(sink::FileSinkFactory)
        .register(sink::StdoutSinkFactory)
        .register(influx::InfluxSinkFactory)
        .register(iothub::IotHubSinkFactory);
    registry
}
