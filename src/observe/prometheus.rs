//! The Prometheus text exposition format (version 0.0.4) of a run's metrics.
//!
//! The mapping, one rule for every metric (docs/operations.md, "Watching a run"):
//!
//! * counter `<node>.<what>` → `smartgrid_<what>_total{node="<node>"}`;
//! * gauge `<node>.<what>` → `smartgrid_<what>{node="<node>"}`, except that a gauge in
//!   milliseconds, `<what>_ms`, is shown in seconds as `smartgrid_<what>_seconds`;
//! * a name without a node (`started`) → `smartgrid_<name>` with no label;
//!
//! where every character of `<what>` that a Prometheus name cannot hold (the `.` of
//! `errors.truncated`) becomes `_`. One family per `<what>`, so a dashboard sums or
//! compares nodes of a kind with one query. Two values are computed here rather than
//! kept: `smartgrid_watermark_lag_seconds` (how far each decoder's watermark trails
//! the wall clock, from its `watermark_ms` gauge) and `smartgrid_readings_per_second`.

use std::collections::BTreeMap;
use std::fmt::Write;

/// What one scrape shows.
pub(crate) struct Scrape {
    /// Every counter, by its `<node>.<what>` name.
    pub counters: Vec<(String, u64)>,
    /// Every gauge, by its `<node>.<what>` name.
    pub gauges: Vec<(String, i64)>,
    /// The wall clock, ms since the epoch, for the watermark lag.
    pub now_ms: i64,
    /// Readings decoded per second lately, over every decoder.
    pub readings_per_second: f64,
}

/// The content type of [`render`]'s text.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: its samples by node (`None`: no node label).
struct Family {
    kind: &'static str,
    help: String,
    samples: Vec<(Option<String>, String)>,
}

/// The exposition text of `scrape`.
pub(crate) fn render(scrape: &Scrape) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut add = |name: String, kind: &'static str, help: String, node, value: String| {
        families
            .entry(name)
            .or_insert_with(|| Family {
                kind,
                help,
                samples: Vec::new(),
            })
            .samples
            .push((node, value));
    };
    for (name, value) in &scrape.counters {
        let (node, what) = split(name);
        add(
            counter_family(what),
            "counter",
            help(what, true),
            node.map(str::to_owned),
            value.to_string(),
        );
    }
    for (name, value) in &scrape.gauges {
        let (node, what) = split(name);
        // Prometheus keeps time in seconds (and its linter refuses `_ms`).
        let (family, shown) = match what.strip_suffix("_ms") {
            Some(base) => (
                format!("smartgrid_{}_seconds", sanitize(base)),
                format_float(*value as f64 / 1e3),
            ),
            None => (gauge_family(what), value.to_string()),
        };
        add(
            family,
            "gauge",
            help(what, false),
            node.map(str::to_owned),
            shown,
        );
        // A watermark of 0 is one that has not moved yet: no lag to show.
        if what == "watermark_ms" && *value > 0 {
            let lag_ms = scrape.now_ms.saturating_sub(*value).max(0);
            add(
                "smartgrid_watermark_lag_seconds".to_owned(),
                "gauge",
                "How far a decoder's watermark trails the wall clock, in seconds.".to_owned(),
                node.map(str::to_owned),
                format_float(lag_ms as f64 / 1e3),
            );
        }
    }
    add(
        "smartgrid_readings_per_second".to_owned(),
        "gauge",
        "Readings decoded per second over the last seconds, every decoder together.".to_owned(),
        None,
        format_float(scrape.readings_per_second),
    );
    let mut text = String::new();
    for (name, family) in &families {
        // HELP text escapes `\` and newlines only.
        let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} {}", family.kind);
        for (node, value) in &family.samples {
            match node {
                Some(node) => {
                    let _ = writeln!(text, "{name}{{node=\"{}\"}} {value}", escape_label(node));
                }
                None => {
                    let _ = writeln!(text, "{name} {value}");
                }
            }
        }
    }
    text
}

/// The family of counter `<node>.<what>`: `smartgrid_<what>_total`.
pub(crate) fn counter_family(what: &str) -> String {
    format!("smartgrid_{}_total", sanitize(what))
}

/// The family of gauge `<node>.<what>` (not in milliseconds): `smartgrid_<what>`.
pub(crate) fn gauge_family(what: &str) -> String {
    format!("smartgrid_{}", sanitize(what))
}

/// `<node>.<what>` → (`Some(node)`, `what`); a name without a `.` has no node. Node
/// names cannot hold a `.` (the pipeline file refuses them), so the first one splits.
fn split(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((node, what)) => (Some(node), what),
        None => (None, name),
    }
}

/// `what` as a Prometheus name part: `[a-zA-Z0-9_]`, everything else `_`.
pub(crate) fn sanitize(what: &str) -> String {
    what.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A float as Prometheus reads it (`NaN`, `+Inf` spelled its way).
fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

/// The HELP line of a metric: what the common ones mean, a generic line for the rest.
fn help(what: &str, counter: bool) -> String {
    let known = match what {
        "messages" => "Messages received (a source) or sent (an IoT Hub sink).",
        "readings" => "Readings decoded.",
        "skipped" => "Valid payloads of a type the decoder skips.",
        "errors" => "Payloads that could not be decoded, every reason.",
        "windows" => "Window means emitted (one per sensor and window).",
        "late" => "Readings that came past their window's correction horizon.",
        "duplicates" => "Readings dropped as already counted (same sensor and time).",
        "corrections" => "Results emitted again because late readings changed them.",
        "predictions" => "Predictions made.",
        "compared" => "Predictions compared with their actual window.",
        "over_threshold" => "Comparisons whose difference passed the threshold.",
        "written" => "Records or points a sink wrote (and its server accepted).",
        "records" => "Records handed to a sink.",
        "records_out" => "Records a node's output carried (kept while the listener runs).",
        "spooled" => "Batches put in the spool because the server did not take them.",
        "dropped" => "Records or batches dropped unsent.",
        "failures" => "Failed delivery attempts.",
        "dead_letters" => "Records written to the dead-letter file.",
        "watermark_ms" => "A decoder's watermark, seconds since the epoch (its slowest worker's).",
        "open_windows" => "Windows open now (not yet emitted), over every worker.",
        "spool_bytes" => "Bytes waiting in a sink's spool, framing included.",
        "spool_records" => "Batches waiting in a sink's spool.",
        "outbox_bytes" => "Bytes waiting in an IoT Hub sink's outbox.",
        "outbox_records" => "Messages waiting in an IoT Hub sink's outbox.",
        "connected" => "1 while the node's MQTT connection is up, else 0.",
        "subscribed" => "1 while an MQTT source's subscriptions are in place, else 0.",
        "failing" => "1 while a sink's server fails past the retries, else 0.",
        "model_version" => "The active model's version (32 bits of its content hash).",
        "started" => "1 once every node has started.",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    let kind = if counter { "counter" } else { "gauge" };
    if let Some(reason) = what.strip_prefix("errors.") {
        return format!("Payloads that could not be decoded: {reason}.");
    }
    format!("smartgrid's {kind} `<node>.{what}`.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_family_per_what_with_a_node_label() {
        let text = render(&Scrape {
            counters: vec![
                ("a.errors.short".into(), 2),
                ("a.readings".into(), 5),
                ("b.readings".into(), 7),
            ],
            gauges: vec![("a.watermark_ms".into(), 9_000), ("started".into(), 1)],
            now_ms: 10_500,
            readings_per_second: 1.5,
        });
        assert!(text.contains(
            "# TYPE smartgrid_readings_total counter\n\
             smartgrid_readings_total{node=\"a\"} 5\n\
             smartgrid_readings_total{node=\"b\"} 7\n"
        ));
        assert!(text.contains("smartgrid_errors_short_total{node=\"a\"} 2\n"));
        assert!(text.contains("smartgrid_watermark_lag_seconds{node=\"a\"} 1.5\n"));
        assert!(text.contains("# TYPE smartgrid_started gauge\nsmartgrid_started 1\n"));
        assert!(text.contains("smartgrid_readings_per_second 1.5\n"));
    }
}
