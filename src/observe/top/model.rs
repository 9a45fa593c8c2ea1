//! What `smartgrid top` shows, computed from two scrapes of `/metrics`: pure functions,
//! no terminal and no network, so every number on the screen is unit-tested here.
//!
//! The metric names come from the one rule in `observe::prometheus` (counter
//! `<node>.<what>` → `smartgrid_<what>_total{node}`, gauge → `smartgrid_<what>{node}`),
//! through [`counter_family`] and [`gauge_family`]: a renamed metric breaks both sides
//! at once.

use std::collections::BTreeMap;

use crate::observe::prometheus::{counter_family, gauge_family};

/// One scrape: every sample by family name and node label (`None`: no node label).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Scrape {
    samples: BTreeMap<(String, Option<String>), f64>,
}

/// A line of `/metrics` that is not a sample, a comment or blank.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("not Prometheus text at line {line}: {text:?}")]
pub(crate) struct ParseError {
    line: usize,
    text: String,
}

impl Scrape {
    /// Parse the Prometheus text format (as `/metrics` writes it: one `node` label at
    /// most; other labels are read and ignored).
    pub(crate) fn parse(text: &str) -> Result<Self, ParseError> {
        let mut samples = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = || ParseError {
                line: i + 1,
                text: line.to_owned(),
            };
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let close = line.rfind('}').ok_or_else(error)?;
                    (&line[..open], &line[open + 1..close], &line[close + 1..])
                }
                None => {
                    let (name, rest) = line.split_once(' ').ok_or_else(error)?;
                    (name, "", rest)
                }
            };
            // A sample may end in a timestamp: the value is the first field.
            let value = rest.split_whitespace().next().ok_or_else(error)?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().map_err(|_| error())?,
            };
            samples.insert((name.to_owned(), node_label(labels)), value);
        }
        Ok(Scrape { samples })
    }

    /// The value of `family` for `node`.
    pub(crate) fn get(&self, family: &str, node: Option<&str>) -> Option<f64> {
        self.samples
            .get(&(family.to_owned(), node.map(str::to_owned)))
            .copied()
    }

    /// Every node label seen, sorted.
    pub(crate) fn nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self
            .samples
            .keys()
            .filter_map(|(_, node)| node.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }

    fn counter(&self, node: &str, what: &str) -> Option<f64> {
        self.get(&counter_family(what), Some(node))
    }

    fn gauge(&self, node: &str, what: &str) -> Option<f64> {
        self.get(&gauge_family(what), Some(node))
    }
}

/// The value of the `node` label in `a="x",node="y"` (escapes undone).
fn node_label(labels: &str) -> Option<String> {
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        if key.trim_start_matches(',').trim() == "node" {
            return Some(value);
        }
        rest = after[end..].trim_start_matches(',');
    }
    None
}

/// The counter that says how much a node did, in order of preference: what its output
/// carried (every node with an output, while a listener runs), else what a sink wrote,
/// was handed, or a source received.
pub(crate) const THROUGHPUT: [&str; 4] = ["records_out", "written", "records", "messages"];

/// The counters of things that went wrong, shown by name when not zero.
pub(crate) const PROBLEMS: [&str; 4] = ["errors", "dead_letters", "dropped", "failures"];

/// One node's line.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NodeRow {
    pub name: String,
    pub kind: String,
    /// Which [`THROUGHPUT`] counter the rate and total are of.
    pub counted: Option<&'static str>,
    /// Per second between the two scrapes.
    pub rate: Option<f64>,
    pub total: Option<u64>,
    /// Seconds the node's watermark trails the wall clock (a decoder).
    pub lag_s: Option<f64>,
    pub open_windows: Option<i64>,
    /// Bytes and records (batches, messages) in a spool or outbox.
    pub backlog: Option<(i64, i64)>,
    pub connection: Connection,
    /// Non-zero [`PROBLEMS`] counters, with their values.
    pub problems: Vec<(&'static str, u64)>,
}

/// A node's connection, from its `connected`, `subscribed` and `failing` gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Connection {
    /// No such gauge: the node has no connection (a window, a file sink).
    None,
    Up,
    Down,
    /// Connected, not (yet) subscribed.
    Unsubscribed,
    /// A sink failing past its retries.
    Failing,
}

impl Connection {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Connection::None => "",
            Connection::Up => "up",
            Connection::Down => "down",
            Connection::Unsubscribed => "unsubscribed",
            Connection::Failing => "failing",
        }
    }
}

/// The whole screen's numbers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Table {
    /// `smartgrid_readings_per_second`: the run's own decode rate.
    pub readings_per_second: Option<f64>,
    pub rows: Vec<NodeRow>,
}

/// The table from the scrape `now`, taken `seconds` after `before`, for `nodes` (name,
/// kind) in pipeline order; nodes the scrape names but `nodes` does not are added last.
pub(crate) fn table(
    before: &Scrape,
    now: &Scrape,
    seconds: f64,
    nodes: &[(String, String)],
) -> Table {
    let mut listed: Vec<(String, String)> = nodes.to_vec();
    for node in now.nodes() {
        if !listed.iter().any(|(name, _)| *name == node) {
            listed.push((node, String::new()));
        }
    }
    let rows = listed
        .into_iter()
        .map(|(name, kind)| row(before, now, seconds, name, kind))
        .collect();
    Table {
        readings_per_second: now.get(&gauge_family("readings_per_second"), None),
        rows,
    }
}

fn row(before: &Scrape, now: &Scrape, seconds: f64, name: String, kind: String) -> NodeRow {
    let counted = THROUGHPUT
        .into_iter()
        .find(|what| now.counter(&name, what).is_some());
    let total = counted.and_then(|what| now.counter(&name, what));
    let rate = counted.and_then(|what| {
        let then = before.counter(&name, what)?;
        let delta = (total? - then).max(0.0);
        (seconds > 0.0).then(|| delta / seconds)
    });
    let gauge = |what| now.gauge(&name, what);
    let backlog = match (gauge("spool_bytes"), gauge("outbox_bytes")) {
        (None, None) => None,
        (spool, outbox) => {
            let records =
                gauge("spool_records").unwrap_or(0.0) + gauge("outbox_records").unwrap_or(0.0);
            Some((
                (spool.unwrap_or(0.0) + outbox.unwrap_or(0.0)) as i64,
                records as i64,
            ))
        }
    };
    let connection = if gauge("failing") == Some(1.0) {
        Connection::Failing
    } else {
        match (gauge("connected"), gauge("subscribed")) {
            (Some(0.0), _) => Connection::Down,
            (Some(_), Some(0.0)) => Connection::Unsubscribed,
            (Some(_), _) => Connection::Up,
            (None, _) => Connection::None,
        }
    };
    let problems = PROBLEMS
        .into_iter()
        .filter_map(|what| {
            let n = now.counter(&name, what)? as u64;
            (n > 0).then_some((what, n))
        })
        .collect();
    NodeRow {
        lag_s: now.get("smartgrid_watermark_lag_seconds", Some(&name)),
        open_windows: gauge("open_windows").map(|n| n as i64),
        total: total.map(|t| t as u64),
        name,
        kind,
        counted,
        rate,
        backlog,
        connection,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"# HELP smartgrid_records_out_total Records a node's output carried.
# TYPE smartgrid_records_out_total counter
smartgrid_records_out_total{node="readings"} 100
smartgrid_records_out_total{node="means"} 10
smartgrid_written_total{node="store"} 5
smartgrid_messages_total{node="clemap"} 100
smartgrid_readings_per_second 50
"#;

    const NOW: &str = r#"smartgrid_records_out_total{node="readings"} 300
smartgrid_records_out_total{node="means"} 10
smartgrid_written_total{node="store"} 9
smartgrid_messages_total{node="clemap"} 301
smartgrid_connected{node="clemap"} 1
smartgrid_subscribed{node="clemap"} 0
smartgrid_errors_total{node="readings"} 1
smartgrid_errors_truncated_total{node="readings"} 1
smartgrid_dropped_total{node="store"} 0
smartgrid_watermark_lag_seconds{node="readings"} 2.5
smartgrid_watermark_seconds{node="readings"} 1700000000
smartgrid_open_windows{node="means"} 4
smartgrid_spool_bytes{node="store"} 2048
smartgrid_spool_records{node="store"} 3
smartgrid_failing{node="store"} 1
smartgrid_records_out_total{job="x",node="we\"ird"} 7
smartgrid_readings_per_second 100.5
smartgrid_started 1
"#;

    #[test]
    fn parses_samples_labels_and_special_values() {
        let scrape = Scrape::parse(NOW).expect("valid text");
        assert_eq!(scrape.get("smartgrid_started", None), Some(1.0));
        assert_eq!(
            scrape.get("smartgrid_records_out_total", Some("we\"ird")),
            Some(7.0)
        );
        let special = Scrape::parse("a NaN\nb{node=\"x\"} +Inf 1700000000\n").expect("valid");
        assert!(special.get("a", None).is_some_and(f64::is_nan));
        assert_eq!(special.get("b", Some("x")), Some(f64::INFINITY));
        assert_eq!(
            Scrape::parse("ok 1\nbroken\n"),
            Err(ParseError {
                line: 2,
                text: "broken".into()
            })
        );
        assert!(Scrape::parse("x{node=\"a\"} many").is_err());
    }

    #[test]
    fn rates_are_counter_deltas_over_the_seconds_between_scrapes() {
        let before = Scrape::parse(BEFORE).expect("valid");
        let now = Scrape::parse(NOW).expect("valid");
        let nodes = [
            ("clemap", "mqtt"),
            ("readings", "decode"),
            ("means", "window_mean"),
            ("store", "influx"),
            ("show", "stdout"),
        ]
        .map(|(n, k)| (n.to_owned(), k.to_owned()));
        let table = table(&before, &now, 2.0, &nodes);
        assert_eq!(table.readings_per_second, Some(100.5));
        let names: Vec<&str> = table.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["clemap", "readings", "means", "store", "show", "we\"ird"]
        );
        let row = |name: &str| {
            table
                .rows
                .iter()
                .find(|r| r.name == name)
                .expect("a row")
                .clone()
        };

        let readings = row("readings");
        assert_eq!(readings.counted, Some("records_out"));
        assert_eq!(readings.rate, Some(100.0));
        assert_eq!(readings.total, Some(300));
        assert_eq!(readings.lag_s, Some(2.5));
        assert_eq!(readings.problems, vec![("errors", 1)]);

        let clemap = row("clemap");
        assert_eq!(clemap.counted, Some("messages"));
        assert_eq!(clemap.rate, Some(100.5));
        assert_eq!(clemap.connection, Connection::Unsubscribed);

        assert_eq!(row("means").rate, Some(0.0));
        assert_eq!(row("means").open_windows, Some(4));

        let store = row("store");
        assert_eq!(store.counted, Some("written"));
        assert_eq!(store.rate, Some(2.0));
        assert_eq!(store.backlog, Some((2048, 3)));
        assert_eq!(store.connection, Connection::Failing);
        assert!(store.problems.is_empty(), "a zero counter is no problem");

        let show = row("show");
        assert_eq!((show.counted, show.rate, show.total), (None, None, None));
        assert_eq!(show.connection, Connection::None);

        // A counter new since the first scrape has no rate yet; no time, no rate.
        assert_eq!(row("we\"ird").rate, None);
        let same = super::table(&now, &now, 0.0, &nodes);
        assert_eq!(same.rows[1].rate, None);
    }
}
