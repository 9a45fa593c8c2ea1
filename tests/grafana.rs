//! The Grafana dashboards in `deploy/grafana` query what the production pipeline
//! (`deploy/pipeline.yaml`) really writes: every measurement a query names is an
//! `influx` node's measurement, and every field it names is in that node's input schema.
//! The pipeline is planned here with the real registry, so its schemas are the ones the
//! runtime would write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use smartgrid_runtime::spec::{Env, parse_file};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// measurement → fields, for every `influx` node of the production pipeline.
fn written() -> BTreeMap<String, BTreeSet<String>> {
    let env: BTreeMap<String, String> = [
        ("INFLUX_URL", "http://127.0.0.1:8086"),
        ("INFLUX_ORG", "home"),
        ("INFLUX_BUCKET", "energy"),
        ("INFLUX_TOKEN", "test-token"),
        (
            "IOTHUB_CONNECTION_STRING",
            "HostName=hub.azure-devices.net;DeviceId=pi;SharedAccessKey=c2VjcmV0LWtleS1mb3ItdGVzdHM=",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let file = root().join("deploy/pipeline.yaml");
    let spec = parse_file(&file, Env::Fixed(env)).expect("the production pipeline parses");
    let plan = smartgrid_runtime::plan::plan(&spec, &smartgrid::builtin_registry())
        .unwrap_or_else(|e| panic!("the production pipeline plans:\n{e}"));
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for node in plan.nodes.iter().filter(|n| n.kind == "influx") {
        let spec_node = spec
            .nodes
            .iter()
            .find(|s| s.name == node.name)
            .expect("planned from the spec");
        assert_eq!(
            spec_node.key_at("measurement"),
            spec_node.at,
            "{}: the dashboards assume the default measurement (the input's name)",
            node.name
        );
        let input = &plan.nodes[node.inputs[0]];
        let Some(smartgrid_runtime::PortType::Readings(schema)) = &input.output else {
            panic!("{} reads readings", node.name);
        };
        out.entry(input.name.clone())
            .or_default()
            .extend(schema.fields().map(str::to_string));
    }
    out
}

/// (measurement, field) pairs a query names, for Flux and InfluxQL.
fn named(query: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let quoted_after = |text: &str, marker: &str| -> BTreeSet<String> {
        text.match_indices(marker)
            .filter_map(|(i, _)| {
                let rest = &text[i + marker.len()..];
                let rest = rest.trim_start().strip_prefix('"')?;
                rest.split('"').next().map(str::to_string)
            })
            .collect()
    };
    if query.contains("from(bucket") {
        (
            quoted_after(query, "r._measurement =="),
            quoted_after(query, "r._field =="),
        )
    } else {
        let measurements = quoted_after(query, "FROM");
        // Fields are the quoted arguments of aggregates, and `"field" = value` conditions
        // (the sensor tag aside).
        let mut fields: BTreeSet<String> = query
            .match_indices("(\"")
            .filter_map(|(i, _)| query[i + 2..].split('"').next().map(str::to_string))
            .collect();
        fields.remove("sensor_id");
        (measurements, fields)
    }
}

fn dashboard(name: &str) -> serde_json::Value {
    let path = root().join("deploy/grafana/dashboards").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("JSON")
}

fn check(name: &str, datasource: &str) {
    let written = written();
    assert_eq!(
        written.keys().map(String::as_str).collect::<Vec<_>>(),
        ["drift", "means_1m", "residuals"]
    );
    let dash = dashboard(name);
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let panels = dash["panels"].as_array().expect("panels");
    assert_eq!(panels.len(), 5);
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(
                target["datasource"]["uid"], datasource,
                "{}",
                panel["title"]
            );
            let query = target["query"].as_str().expect("query");
            let (measurements, fields) = named(query);
            assert_eq!(measurements.len(), 1, "one measurement per query: {query}");
            let m = measurements.into_iter().next().expect("one");
            let known = written.get(&m).unwrap_or_else(|| {
                panic!("{name}: `{m}` is not written by the pipeline ({query})")
            });
            assert!(!fields.is_empty(), "{query}");
            for f in &fields {
                assert!(
                    known.contains(f),
                    "{name}: `{m}` has no field `{f}`; it has {known:?}"
                );
            }
            used.entry(m).or_default().extend(fields);
        }
    }
    // The panels the dashboard promises: per-phase power and total, predicted vs actual,
    // triplets per hour, the active model version.
    let want = |m: &str, fields: &[&str]| {
        for f in fields {
            assert!(
                used.get(m).is_some_and(|u| u.contains(*f)),
                "{name}: nothing shows {m}.{f}"
            );
        }
    };
    want("means_1m", &["p_l1", "p_l2", "p_l3"]);
    want("residuals", &["predicted", "actual", "model_version"]);
    want("drift", &["flagged"]);
    // The sensor variable reads the tag the sinks always write.
    let variable = dash["templating"]["list"][0]["query"]
        .as_str()
        .expect("variable");
    assert!(variable.contains("sensor_id"));
}

#[test]
fn the_flux_dashboard_queries_what_the_pipeline_writes() {
    check("smartgrid-flux.json", "smartgrid-flux");
}

#[test]
fn the_influxql_dashboard_queries_what_the_pipeline_writes() {
    check("smartgrid-influxql.json", "smartgrid-influxql");
}

#[test]
fn the_provisioned_datasources_are_the_ones_the_dashboards_use() {
    let text = std::fs::read_to_string(
        root().join("deploy/grafana/provisioning/datasources/influxdb.yaml"),
    )
    .expect("datasources");
    for uid in ["smartgrid-flux", "smartgrid-influxql"] {
        assert!(text.contains(&format!("uid: {uid}")), "{uid}");
    }
    assert!(text.contains("version: Flux"));
    assert!(
        !text.contains("token: ") || text.contains("token: $__env{INFLUX_TOKEN}"),
        "no secret in the file"
    );
}
