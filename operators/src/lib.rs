//! smartgrid's built-in operators, one folder each: settings (serde, documented), the
//! planned node (one type implementing `smartgrid_runtime::Node`), and the timely operator
//! that runs it.

pub mod compare_with_lag;
pub mod decode;
pub mod delivery;
pub mod formats;
pub mod influx;
pub mod io;
pub mod iothub;
pub mod mqtt;
pub mod predict;
pub mod simulate;
pub mod sink;
pub mod spool;
pub mod wal;
pub mod window_mean;
#[cfg(test)]
mod xorshift;

use smartgrid_runtime::Registry;

/// A registry with every built-in node kind.
pub fn builtin_registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register::<mqtt::MqttSource>()
        .register::<simulate::SimulateNode>()
        .register::<decode::node::DecodeNode>()
        .register::<window_mean::WindowMeanNode>()
        .register::<predict::PredictNode>()
        .register::<compare_with_lag::CompareNode>()
        .register::<sink::FileSink>()
        .register::<sink::StdoutSink>()
        .register::<influx::InfluxSink>()
        .register::<iothub::IotHubSink>();
    registry
}

#[cfg(test)]
mod tests {
    use smartgrid_runtime::plan::{Plan, plan};
    use smartgrid_runtime::spec::{Env, parse_str};

    fn planned(text: &str) -> Result<Plan, String> {
        let spec = parse_str(
            text,
            "p.yaml",
            std::path::PathBuf::new(),
            Env::Fixed(Default::default()),
        )
        .map_err(|e| format!("{e:?}"))?;
        plan(&spec, &crate::builtin_registry()).map_err(|e| e.to_string())
    }

    fn partitioned(plan: &Plan, name: &str) -> bool {
        plan.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("a node")
            .partitioned
    }

    #[test]
    fn partitioning_is_inferred_from_sources_and_routing() {
        let plan = planned(
            r"
nodes:
  broker: { type: mqtt, url: 'mqtt://127.0.0.1:1883' }
  decoded: { type: decode, input: broker, format: clemap }
  means: { type: window_mean, input: decoded, size: 10s }
  out: { type: file, input: decoded, path: out.lp }
  meters: { type: simulate, sensors: 2 }
  simulated: { type: decode, input: meters, format: clemap }
",
        )
        .expect("plans");
        // A subscription is on worker 0; decoding keeps records where they are.
        assert!(!partitioned(&plan, "broker"));
        assert!(!partitioned(&plan, "decoded"));
        // A keyed node reads by sensor, so the renderer routes its input.
        assert!(partitioned(&plan, "means"));
        // A simulator's share is partitioned, and decoding it keeps it so.
        assert!(partitioned(&plan, "meters"));
        assert!(partitioned(&plan, "simulated"));
    }

    #[test]
    fn two_nodes_claiming_one_resource_are_refused() {
        let error = planned(
            r"
nodes:
  a: { type: mqtt, url: 'mqtt://127.0.0.1:1883', client_id: same }
  b: { type: mqtt, url: 'mqtt://127.0.0.1:1883', client_id: same }
  c: { type: mqtt, url: 'mqtt://127.0.0.1:1884', client_id: same }
  da: { type: decode, input: a, format: clemap }
  db: { type: decode, input: b, format: clemap }
  dc: { type: decode, input: c, format: clemap }
  one: { type: file, input: da, path: out.lp }
  two: { type: file, input: db, path: out.lp }
  three: { type: file, input: dc, path: other.lp }
",
        )
        .err()
        .expect("refused");
        assert!(
            error.contains(
                "MQTT client id `same` on mqtt://127.0.0.1:1883 is already used by node `a`"
            ),
            "{error}"
        );
        assert!(
            error.contains("output file out.lp is already used by node `one`"),
            "{error}"
        );
        // A different broker and a different file are no conflict.
        assert_eq!(error.matches("already used").count(), 2, "{error}");
    }
}
