//! Watching a run: the `--http` listener (`/metrics` scraped by a real Prometheus,
//! checked by `promtool`; `/health`, `/ready` following a real broker), the status
//! line, and the log's format (no colour on a pipe, JSON lines, no secrets).

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;

use support::{Run, counter, smartgrid, wait_until, write_pipeline};

/// An MQTT source on `url`, decoded, windowed and stored; `top` goes before `nodes:`.
fn mqtt_pipeline(url: &str, top: &str) -> String {
    format!(
        r"
pipeline: observe
{top}
nodes:
  clemap:
    type: mqtt
    url: '{url}'
    qos: 1
    retry: {{ initial_delay: 100ms, max_delay: 500ms }}
  readings: {{ type: decode, input: clemap, format: clemap }}
  means: {{ type: window_mean, input: readings, size: 10s }}
  store: {{ type: file, input: readings, path: readings.jsonl, format: json }}
"
    )
}

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], testkit::free_port()))
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    testkit::http("GET", addr, path, b"")
}

/// Publishes simulated readings to `broker` with `smartgrid simulate` (QoS 1, every one
/// acknowledged when it returns); how many it says it published.
fn publish(broker: &testkit::Mosquitto, sensors: u32, duration: &str) -> u64 {
    let output = smartgrid()
        .args(["simulate", "--broker", &broker.url(), "--fast"])
        .args(["--sensors", &sensors.to_string(), "--duration", duration])
        .output()
        .expect("run smartgrid simulate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "simulate failed: {stderr}");
    stderr
        .lines()
        .find_map(|line| line.strip_prefix("published ")?.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `published N readings` line: {stderr}"))
}

/// The value of an instant query that selects one series, as Prometheus has it now.
fn prometheus_value(prometheus: &testkit::Prometheus, promql: &str) -> Option<f64> {
    let body = prometheus.query(promql);
    let answer: serde_json::Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
    assert_eq!(answer["status"], "success", "{body}");
    let result = answer["data"]["result"].as_array()?;
    assert!(result.len() <= 1, "{promql} selects one series: {body}");
    result.first()?["value"][1].as_str()?.parse().ok()
}

fn promtool_check(metrics: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(
        testkit::find_binary("promtool").expect("promtool is installed"),
    )
    .args(["check", "metrics"])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool");
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn prometheus_scrapes_the_counters_the_run_prints() {
    testkit::require_binary("mosquitto");
    testkit::require_binary("prometheus");
    testkit::require_binary("promtool");
    let broker = testkit::Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(dir.path(), &mqtt_pipeline(&broker.url(), ""));
    let addr = free_addr();
    // Two workers: the gauges that sum or take the minimum over workers are shown once.
    let run = Run::start(&pipeline, &["--http", &addr.to_string(), "--workers", "2"]);
    run.wait_for("subscribed");
    let prometheus = testkit::Prometheus::start(&[addr]);

    let published = publish(&broker, 3, "10s");
    assert!(published > 0);
    // Prometheus itself must have scraped the final values.
    let readings = r#"smartgrid_readings_total{job="smartgrid",node="readings"}"#;
    let messages = r#"smartgrid_messages_total{job="smartgrid",node="clemap"}"#;
    wait_until("Prometheus scrapes every published reading", || {
        (prometheus_value(&prometheus, readings)? == published as f64).then_some(())
    });
    assert_eq!(
        prometheus_value(&prometheus, messages),
        Some(published as f64)
    );
    assert_eq!(
        prometheus_value(&prometheus, r#"smartgrid_subscribed{node="clemap"}"#),
        Some(1.0)
    );

    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    promtool_check(&body);
    for gauge in [
        "# TYPE smartgrid_watermark_lag_seconds gauge",
        "smartgrid_watermark_lag_seconds{node=\"readings\"} ",
        "smartgrid_open_windows{node=\"means\"} ",
        "smartgrid_connected{node=\"clemap\"} 1\n",
        "# TYPE smartgrid_readings_per_second gauge",
        "# HELP smartgrid_readings_total ",
    ] {
        assert!(body.contains(gauge), "no {gauge:?} in\n{body}");
    }

    let counters = run.terminate();
    assert_eq!(counter(&counters, "readings.readings"), Some(published));
    assert_eq!(counter(&counters, "clemap.messages"), Some(published));
}

#[test]
fn ready_is_503_while_the_broker_is_down_and_200_when_it_is_back() {
    testkit::require_binary("mosquitto");
    let mut broker = testkit::Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    // The listener from the pipeline file this time.
    let top = format!("http: {{ listen: '{addr}' }}");
    let pipeline = write_pipeline(dir.path(), &mqtt_pipeline(&broker.url(), &top));
    let run = Run::start(&pipeline, &[]);
    run.wait_for("serving /metrics");
    wait_until("/ready says 200", || {
        (get(addr, "/ready").0 == 200).then_some(())
    });

    broker.stop();
    let reason = wait_until("/ready says 503 with the broker down", || {
        let (status, body) = get(addr, "/ready");
        (status == 503).then_some(body)
    });
    assert!(reason.contains("`clemap`"), "{reason}");
    assert_eq!(get(addr, "/health").0, 200, "alive while not ready");

    broker.restart();
    wait_until("/ready says 200 with the broker back", || {
        (get(addr, "/ready").0 == 200).then_some(())
    });
    run.terminate();
}

#[test]
fn json_logs_parse_and_never_show_the_password() {
    testkit::require_binary("mosquitto");
    let broker = testkit::Mosquitto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    const SECRET: &str = "s3cret-Observe-Pa55";
    let pipeline = write_pipeline(
        dir.path(),
        &mqtt_pipeline(&broker.url(), "status_interval: 1s").replace(
            "    qos: 1\n",
            "    qos: 1\n    username: watcher\n    password: ${OBSERVE_TEST_PASSWORD}\n",
        ),
    );
    let addr = free_addr();
    let run = Run::start_with_env(
        &pipeline,
        &["--http", &addr.to_string()],
        &[
            ("SMARTGRID_LOG_FORMAT", "json"),
            ("OBSERVE_TEST_PASSWORD", SECRET),
        ],
    );
    run.wait_for("subscribed");
    let published = publish(&broker, 2, "5s");
    wait_until("the status line shows the readings", || {
        run.log()
            .iter()
            .any(|l| l.contains(&format!("messages={published}")))
            .then_some(())
    });
    let (_, metrics) = get(addr, "/metrics");
    assert!(!metrics.contains(SECRET));
    run.signal("TERM");
    wait_until("the run stops", || {
        run.log()
            .iter()
            .any(|l| l.contains("stopped;"))
            .then_some(())
    });
    let log = run.log();
    let counters = run.counters();
    assert_eq!(counter(&counters, "readings.readings"), Some(published));
    let mut status_lines = 0;
    for line in &log {
        assert!(!line.contains(SECRET), "the password in the log: {line}");
        assert!(!line.contains("\x1b["), "a colour code: {line:?}");
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(value["level"].is_string(), "{line}");
        let message = value["fields"]["message"].as_str().unwrap_or_default();
        if message.starts_with("status: ") {
            status_lines += 1;
            assert!(message.contains("readings/s"), "{message}");
            assert!(message.contains("| clemap: "), "{message}");
        }
    }
    assert!(status_lines > 0, "no status line in {log:?}");
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(
        dir.path(),
        r"
pipeline: colours
nodes:
  meters: { type: simulate, sensors: 2, realtime: false, duration: 1m }
  readings: { type: decode, input: meters, format: clemap }
  store: { type: file, input: readings, path: readings.jsonl, format: json }
",
    );
    let addr = free_addr();
    let output = smartgrid()
        .arg("run")
        .arg(&pipeline)
        .args(["--http", &addr.to_string()])
        .output()
        .expect("run smartgrid");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(stderr.contains("stopped;"), "{stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "colour codes on a pipe: {stderr:?}"
    );
}

#[test]
fn a_port_in_use_stops_the_run_before_anything_starts() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            r"
pipeline: busy
http: {{ listen: '{addr}' }}
nodes:
  meters: {{ type: simulate, sensors: 2, realtime: false, duration: 1m }}
  readings: {{ type: decode, input: meters, format: clemap }}
  store: {{ type: file, input: readings, path: readings.jsonl, format: json }}
"
        ),
    );
    let output = smartgrid()
        .arg("run")
        .arg(&pipeline)
        .output()
        .expect("run smartgrid");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(!stderr.contains("running"), "{stderr}");
    assert!(
        !dir.path().join("readings.jsonl").exists(),
        "a node started"
    );
    drop(taken);
}

#[test]
fn a_bad_listen_address_is_a_pipeline_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(
        dir.path(),
        r"
pipeline: bad
http: { listen: 'example.com:80' }
status_interval: soon
nodes:
  meters: { type: simulate, sensors: 2, realtime: false, duration: 1m }
",
    );
    let output = smartgrid()
        .arg("validate")
        .arg(&pipeline)
        .output()
        .expect("run smartgrid");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`example.com:80` is not a listen address"),
        "{stderr}"
    );
    assert!(stderr.contains("2 problems found"), "{stderr}");
}

#[test]
fn ready_is_503_while_a_sink_spools_past_its_retries() {
    testkit::require_binary("victoria-metrics");
    let mut server = testkit::VictoriaMetrics::start();
    server.stop();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = free_addr();
    let pipeline = write_pipeline(
        dir.path(),
        &format!(
            r"
pipeline: spooling
http: {{ listen: '{addr}' }}
nodes:
  meters: {{ type: simulate, sensors: 1, rate: 12 }}
  readings: {{ type: decode, input: meters, format: clemap }}
  store:
    type: influx
    input: readings
    url: {url}
    org: o
    bucket: b
    precision: ms
    flush_interval: 100ms
    retry: {{ initial_delay: 10ms, max_delay: 200ms, attempts_before_spool: 1 }}
    spool: {{ dir: spool, fsync: false }}
    drain_timeout: 1s
",
            url = server.url()
        ),
    );
    let run = Run::start(&pipeline, &[]);
    run.wait_for("serving /metrics");
    let reason = wait_until("/ready says 503 while the server is down", || {
        let (status, body) = get(addr, "/ready");
        (status == 503 && body.contains("sink")).then_some(body)
    });
    assert!(
        reason.contains("sink `store` fails past its retries"),
        "{reason}"
    );
    let (_, metrics) = get(addr, "/metrics");
    assert!(
        metrics.contains("smartgrid_failing{node=\"store\"} 1\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("smartgrid_spool_records{node=\"store\"} 0\n"),
        "{metrics}"
    );

    server.restart();
    wait_until("/ready says 200 once the server takes the writes", || {
        (get(addr, "/ready").0 == 200).then_some(())
    });
    wait_until("the spool drains", || {
        let (_, metrics) = get(addr, "/metrics");
        metrics
            .contains("smartgrid_spool_records{node=\"store\"} 0\n")
            .then_some(())
    });
    let counters = run.terminate();
    assert!(
        counter(&counters, "store.spooled").is_some_and(|n| n > 0),
        "{counters}"
    );
}

#[test]
fn tap_shows_records_the_sink_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(
        dir.path(),
        r"
pipeline: tapped
nodes:
  meters: { type: simulate, sensors: 3, rate: 12 }
  readings: { type: decode, input: meters, format: clemap }
  store: { type: file, input: readings, path: readings.jsonl, format: json }
",
    );
    let addr = free_addr();
    let run = Run::start(&pipeline, &["--http", &addr.to_string()]);
    run.wait_for("serving /metrics");
    let url = format!("http://{addr}");
    let output = smartgrid()
        .args(["tap", &url, "readings", "--count", "5"])
        .output()
        .expect("run smartgrid tap");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tapped: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(tapped.len(), 5, "{stdout}");

    let unknown = smartgrid()
        .args(["tap", &url, "nope", "--count", "1"])
        .output()
        .expect("run smartgrid tap");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no node `nope`"));

    run.terminate();
    // Every tapped record is one the sink stored, field for field.
    let stored: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("readings.jsonl"))
        .expect("the stored readings")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    for record in &tapped {
        assert_eq!(record["node"], "readings");
        let twin = stored
            .iter()
            .find(|s| s["sensor_id"] == record["sensor"] && s["time_ms"] == record["time_ms"])
            .unwrap_or_else(|| panic!("{record} is not among the stored readings"));
        for field in ["p_l1", "p_l2", "p_l3", "q_l1", "q_l2", "q_l3"] {
            assert_eq!(twin[field], record[field], "{field} of {record}");
        }
    }
}
