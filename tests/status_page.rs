//! The status page at `/` of a run's listener, in headless Chromium against a real run
//! (simulated meters → mosquitto → decode → 1 s windows → predict → compare): every
//! node drawn, edge rates where `/metrics` shows flow, the chosen sensor's predicted and
//! actual values as `/api/compare` gives them and as the compare node stored them, and
//! a warning provoked with a malformed payload in the last errors.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use support::echo::echoing_server;
use support::{Run, wait_until, write_pipeline};

/// The nodes of the pipeline and the edges between them.
const NODES: [&str; 7] = [
    "meters",
    "clemap",
    "readings",
    "means",
    "predictions",
    "residuals",
    "store_residuals",
];
const EDGES: [(&str, &str); 6] = [
    ("clemap", "readings"),
    ("readings", "means"),
    ("means", "predictions"),
    ("predictions", "residuals"),
    ("means", "residuals"),
    ("residuals", "store_residuals"),
];

fn pipeline(broker: &str, model: &str) -> String {
    format!(
        r"
pipeline: status-page
nodes:
  meters:
    type: simulate
    sensors: 2
    rate: 12
    publish: {{ url: '{broker}', topic: 'data/realtime/feature/{{sensor}}' }}
  clemap: {{ type: mqtt, url: '{broker}', topics: ['data/realtime/feature/+'], qos: 1 }}
  readings:
    type: decode
    input: clemap
    format: clemap
    dead_letter: {{ file: dead-letters.jsonl }}
  means: {{ type: window_mean, input: readings, size: 1s }}
  predictions:
    type: predict
    input: means
    model: '{model}'
    horizon: 1s
    relative_to: [p_l1, p_l2, p_l3]
    features:
      fields: [p_l1, p_l2, p_l3]
      lags: {{ fields: [p_l1, p_l2, p_l3], count: 5 }}
  residuals:
    type: compare_with_lag
    inputs: [predictions, means]
    actual: [p_l1, p_l2, p_l3]
    emit: residuals
  store_residuals: {{ type: file, input: residuals, path: residuals.jsonl, format: json }}
"
    )
}

fn get(addr: SocketAddr, path: &str) -> String {
    let (status, body) = testkit::http("GET", addr, path, b"");
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let body = get(addr, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
}

/// `smartgrid_records_out_total` of every node, and `smartgrid_errors_total` of
/// `readings`, as `/metrics` says now.
fn outputs(addr: SocketAddr) -> (BTreeMap<String, u64>, u64) {
    let body = get(addr, "/metrics");
    let value = |line: &str, family: &str| -> Option<(String, u64)> {
        let rest = line.strip_prefix(family)?.strip_prefix("{node=\"")?;
        let (node, value) = rest.split_once("\"} ")?;
        Some((node.to_owned(), value.parse().ok()?))
    };
    let outputs = body
        .lines()
        .filter_map(|l| value(l, "smartgrid_records_out_total"))
        .collect();
    let errors = body
        .lines()
        .filter_map(|l| value(l, "smartgrid_errors_total"))
        .find(|(node, _)| node == "readings")
        .map_or(0, |(_, n)| n);
    (outputs, errors)
}

/// The value of attribute `name` in an element's start tag `tag`.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = tag[start..].find('"')?;
    Some(&tag[start..start + len])
}

/// The start tags in `dom` that contain `marker` (e.g. `class="point"`).
fn tags<'a>(dom: &'a str, marker: &str) -> Vec<&'a str> {
    dom.match_indices(marker)
        .filter_map(|(at, _)| {
            let open = dom[..at].rfind('<')?;
            let close = at + dom[at..].find('>')?;
            Some(&dom[open..=close])
        })
        .collect()
}

fn number(text: Option<&str>) -> f64 {
    text.and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {text:?}"))
}

#[test]
fn the_status_page_shows_graph_rates_predictions_and_errors() {
    testkit::require_binary("mosquitto");
    testkit::require_binary("mosquitto_pub");
    testkit::require_binary("chromium");
    let broker = testkit::Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/default/model.txt");
    let pipeline = write_pipeline(dir.path(), &pipeline(&broker.url(), model));
    let addr = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let run = Run::start(&pipeline, &["--http", &addr.to_string()]);
    run.wait_for("subscribed");

    // The collector of comparisons starts with the first request: ask until some came.
    let sensor = wait_until("comparisons at /api/compare", || {
        let compare = get_json(addr, "/api/compare");
        assert_eq!(compare["node"], "residuals", "{compare}");
        let points = compare["points"].as_array()?;
        (points.len() >= 2).then(|| compare["sensor"].as_str().map(str::to_owned))?
    });

    // One payload that is not Clemap: decode counts it, dead-letters it and warns.
    let status = broker
        .publisher("data/realtime/feature/bogus")
        .args(["-m", "not a payload"])
        .status()
        .expect("mosquitto_pub");
    assert!(status.success());
    wait_until("/metrics counts the undecodable payload", || {
        (outputs(addr).1 == 1).then_some(())
    });

    let url = format!("http://{addr}/");
    let (before, _) = outputs(addr);
    let dom = testkit::chromium::dump_dom(&url);
    let compare = get_json(
        addr,
        &format!("/api/compare?node=residuals&sensor={sensor}"),
    );
    let (after, _) = outputs(addr);
    let png = dir.path().join("status.png");
    testkit::chromium::screenshot(&url, &png, 1280, 900);

    let image = std::fs::read(&png).expect("the screenshot");
    assert!(image.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(image.len() > 10_000, "a {} byte screenshot", image.len());
    // The page's own status: its last poll got every answer.
    assert!(dom.contains("<span id=\"updated\">updated "), "{dom}");

    // Every node drawn, every edge listed; a rate where /metrics shows flow.
    for node in NODES {
        assert!(
            dom.contains(&format!("data-node=\"{node}\"")),
            "no node {node}:\n{dom}"
        );
    }
    // The simulator reaches the source through the broker, drawn between them.
    assert_eq!(tags(&dom, "class=\"broker\"").len(), 1, "{dom}");
    let rows = tags(&dom, "class=\"edge-row\"");
    assert_eq!(rows.len(), EDGES.len(), "{rows:?}");
    for (from, to) in EDGES {
        let row = rows
            .iter()
            .find(|r| {
                attribute(r, "data-from") == Some(from) && attribute(r, "data-to") == Some(to)
            })
            .unwrap_or_else(|| panic!("no edge {from} → {to} in {rows:?}"));
        let flowed = after.get(from) > before.get(from);
        assert!(
            flowed,
            "{from} did not flow between two scrapes: {before:?} {after:?}"
        );
        let rate = number(attribute(row, "data-rate"));
        assert!(
            rate > 0.0,
            "{from} → {to} shows {rate}/s while /metrics shows flow"
        );
    }

    // The chosen sensor's points: those of /api/compare (taken after the page's, so
    // it may have dropped the page's oldest ones and added newer ones).
    let table = tags(&dom, "<tbody data-sensor=");
    assert_eq!(table.len(), 1, "{table:?}");
    assert_eq!(attribute(table[0], "data-sensor"), Some(sensor.as_str()));
    assert_eq!(compare["sensor"], sensor.as_str());
    let served: Vec<(i64, f64, f64)> = compare["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            let time = p["time_ms"].as_i64().expect("time");
            let predicted = p["predicted"].as_f64().expect("predicted");
            (time, predicted, p["actual"].as_f64().expect("actual"))
        })
        .collect();
    let oldest = served.iter().map(|p| p.0).min().expect("served points");
    let shown: Vec<(i64, f64, f64)> = tags(&dom, "class=\"point\"")
        .into_iter()
        .map(|tag| {
            (
                number(attribute(tag, "data-time")) as i64,
                number(attribute(tag, "data-predicted")),
                number(attribute(tag, "data-actual")),
            )
        })
        .filter(|p| p.0 >= oldest)
        .collect();
    assert!(
        !shown.is_empty(),
        "no point of {sensor} on the page:\n{dom}"
    );
    for point in &shown {
        assert!(served.contains(point), "{point:?} is not among {served:?}");
    }

    // The provoked warning, in the page's last errors.
    assert!(
        dom.contains("undecodable payload on `data/realtime/feature/bogus`"),
        "no warning in:\n{dom}"
    );

    run.terminate();
    // An independent source: what the compare node emitted, as its file sink stored it.
    let stored: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("residuals.jsonl"))
            .expect("the stored residuals")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
    for (time, predicted, actual) in &served {
        let twin = stored.iter().find(|s| {
            s["sensor_id"] == sensor.as_str()
                && s["target_time"].as_f64().map(|t| t as i64) == Some(*time)
        });
        let twin = twin.unwrap_or_else(|| panic!("no stored residual of {sensor} at {time}"));
        assert_eq!(twin["predicted"].as_f64(), Some(*predicted), "{twin}");
        assert_eq!(twin["actual"].as_f64(), Some(*actual), "{twin}");
    }
    let letters = std::fs::read_to_string(dir.path().join("dead-letters.jsonl")).expect("letters");
    assert!(letters.contains("data/realtime/feature/bogus"), "{letters}");
}

#[test]
fn the_last_errors_never_show_a_secret() {
    const TOKEN: &str = "t0ken-Status-Page-5ecret";
    let echo = echoing_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            r"
pipeline: refused
nodes:
  meters: {{ type: simulate, sensors: 2, rate: 12 }}
  readings: {{ type: decode, input: meters, format: clemap }}
  store:
    type: influx
    input: readings
    url: http://127.0.0.1:{echo}
    org: o
    bucket: b
    token: ${{STATUS_PAGE_TOKEN}}
    flush_interval: 100ms
    retry: {{ initial_delay: 10ms, max_delay: 50ms }}
"
        ),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let run = Run::start_with_env(
        &pipeline,
        &["--http", &addr.to_string()],
        &[("STATUS_PAGE_TOKEN", TOKEN)],
    );
    run.wait_for("serving /metrics");
    // The server refuses every write, echoing the token: the sink warns.
    let events = wait_until("a warning of the refusing server at /api/errors", || {
        let errors = get_json(addr, "/api/errors");
        let events: Vec<String> = errors["events"]
            .as_array()?
            .iter()
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect();
        events
            .iter()
            .any(|m| m.contains("store") && m.contains("400"))
            .then_some(events)
    });
    for event in &events {
        assert!(
            !event.contains(TOKEN),
            "the token in the last errors: {event}"
        );
    }
    run.terminate();
}
