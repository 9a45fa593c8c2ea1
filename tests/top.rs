//! `smartgrid top URL`: its one-frame text output (`--once`, or stdout not a terminal)
//! against a real run, checked against `/metrics` scraped by the test itself before
//! and after; and the error when nothing listens.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use support::{Run, smartgrid, wait_until, write_pipeline};

const PIPELINE: &str = r"
pipeline: watched
nodes:
  meters: { type: simulate, sensors: 3, rate: 12 }
  readings: { type: decode, input: meters, format: clemap }
  means: { type: window_mean, input: readings, size: 1s }
  store: { type: file, input: readings, path: readings.jsonl, format: json }
  store_means: { type: file, input: means, path: means.jsonl, format: json }
";

/// The nodes of [`PIPELINE`] and their kinds.
const NODES: [(&str, &str); 5] = [
    ("meters", "simulate"),
    ("readings", "decode"),
    ("means", "window_mean"),
    ("store", "file"),
    ("store_means", "file"),
];

/// Counter samples of a `/metrics` text, by (family, node).
fn counters(addr: SocketAddr) -> BTreeMap<(String, String), u64> {
    let (status, body) = testkit::http("GET", addr, "/metrics", b"");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, rest) = l.split_once("{node=\"")?;
            let (node, value) = rest.split_once("\"} ")?;
            Some(((name.to_owned(), node.to_owned()), value.parse().ok()?))
        })
        .collect()
}

/// The cells of each row of a `top` frame, by node name and column heading: cells are
/// cut at the columns where the headings start.
fn rows(frame: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let lines: Vec<Vec<char>> = frame
        .lines()
        .map(|l| l.chars().map(|c| if c == '│' { ' ' } else { c }).collect())
        .collect();
    let heading = lines
        .iter()
        .find(|l| String::from_iter(l.iter()).contains("RATE/s"))
        .unwrap_or_else(|| panic!("no column headings in\n{frame}"));
    let mut starts = Vec::new();
    for (i, c) in heading.iter().enumerate() {
        if *c != ' ' && (i == 0 || heading[i - 1] == ' ') {
            let name: String = heading[i..].iter().take_while(|c| **c != ' ').collect();
            starts.push((i, name));
        }
    }
    let mut rows = BTreeMap::new();
    for line in lines.iter().filter(|l| l.len() > starts[0].0) {
        let cell = |k: usize| -> String {
            let from = starts[k].0.min(line.len());
            let to = starts
                .get(k + 1)
                .map_or(line.len(), |s| s.0)
                .min(line.len());
            line[from..to].iter().collect::<String>().trim().to_owned()
        };
        let name = cell(0);
        if name.is_empty()
            || name == "NODE"
            || name.starts_with('─')
            || name.starts_with('┌')
            || name.starts_with('└')
        {
            continue;
        }
        let cells = starts
            .iter()
            .enumerate()
            .map(|(k, (_, heading))| (heading.clone(), cell(k)))
            .collect();
        rows.insert(name, cells);
    }
    rows
}

#[test]
fn top_once_shows_every_node_with_what_metrics_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = write_pipeline(dir.path(), PIPELINE);
    let addr = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let run = Run::start(&pipeline, &["--http", &addr.to_string()]);
    run.wait_for("serving /metrics");
    let out = |c: &BTreeMap<(String, String), u64>, family: &str, node: &str| {
        c.get(&(family.to_owned(), node.to_owned())).copied()
    };
    wait_until("the means flow", || {
        (out(&counters(addr), "smartgrid_records_out_total", "means")? > 0).then_some(())
    });

    let url = format!("http://{addr}");
    let before = counters(addr);
    let output = smartgrid()
        .args(["top", &url, "--once", "--interval", "2s"])
        .output()
        .expect("run smartgrid top");
    let after = counters(addr);
    let frame = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        frame.starts_with(&format!("smartgrid top  {url}  every 2s")),
        "{frame}"
    );
    let rows = rows(&frame);
    for (node, kind) in NODES {
        let row = rows
            .get(node)
            .unwrap_or_else(|| panic!("no row for {node} in\n{frame}"));
        assert_eq!(row["KIND"], kind, "{frame}");
        // The node's throughput counter: its output, or what a sink wrote.
        let family = if kind == "file" {
            "smartgrid_written_total"
        } else {
            "smartgrid_records_out_total"
        };
        let (Some(low), Some(high)) = (out(&before, family, node), out(&after, family, node))
        else {
            panic!("no {family} of {node} in /metrics");
        };
        // top scraped between the test's two scrapes, and counters only go up.
        let total: u64 = row["TOTAL"].parse().unwrap_or_else(|_| panic!("{frame}"));
        assert!(
            (low..=high).contains(&total),
            "{node}: {low} ≤ {total} ≤ {high}\n{frame}"
        );
        // Its rate is over at least the 2 s interval, within the test's two scrapes;
        // shown rounded to 0.1.
        let rate: f64 = row["RATE/s"].parse().unwrap_or_else(|_| panic!("{frame}"));
        assert!(
            rate * 2.0 <= (high - low) as f64 + 0.1,
            "{node}: {rate}/s, {low}..{high}\n{frame}"
        );
    }
    // A live simulator's readings flow all the time.
    let readings: f64 = rows["readings"]["RATE/s"].parse().expect("a rate");
    assert!(readings > 0.0, "{frame}");
    assert!(rows["readings"]["LAG"].ends_with('s'), "{frame}");
    assert!(!rows["means"]["OPEN"].is_empty(), "{frame}");

    // Without --once, on a pipe: the same frame, and why.
    let piped = smartgrid()
        .args(["top", &url, "--interval", "200ms"])
        .output()
        .expect("run smartgrid top");
    assert!(piped.status.success());
    assert!(
        String::from_utf8_lossy(&piped.stderr).contains("stdout is not a terminal"),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let piped = String::from_utf8_lossy(&piped.stdout);
    for (node, _) in NODES {
        assert!(rows_have(&piped, node), "{node} in\n{piped}");
    }
    run.terminate();
}

fn rows_have(frame: &str, node: &str) -> bool {
    rows(frame).contains_key(node)
}

#[test]
fn top_where_nothing_listens_is_a_clear_error() {
    // A port that was free a moment ago, and nothing listens on it.
    let url = format!("http://127.0.0.1:{}", testkit::free_port());
    let output = smartgrid()
        .args(["top", &url, "--once", "--interval", "100ms"])
        .output()
        .expect("run smartgrid top");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("error: cannot reach {url}")),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let output = smartgrid()
        .args(["top", "127.0.0.1:9898", "--once"])
        .output()
        .expect("run smartgrid top");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is not the address of a run's listener")
    );
}
