//! A test's expectations against what the nodes emitted; each failure says which node,
//! which condition, and shows the records seen.

use std::fmt::Write as _;

use smartgrid_operators::formats::rfc3339;
use smartgrid_runtime::Location;
use smartgrid_runtime::harness::{Captured, NodeRecords};
use smartgrid_runtime::record::Reading;

use super::config::{RecordCondition, TestCase, Tolerance, ValueCondition};

/// Records shown under a failure; more are counted, not listed.
const SHOWN: usize = 12;

/// One expectation the run did not meet.
#[derive(Debug)]
pub struct Failure {
    /// Where the expectation is written.
    pub at: Location,
    /// The node it is about (or the counter).
    pub subject: String,
    /// What was expected and what came instead, possibly over several lines.
    pub message: String,
}

/// Every expectation of `case` that `captured` does not meet, in file order.
pub fn check(case: &TestCase, captured: &Captured) -> Vec<Failure> {
    let mut failures = Vec::new();
    let empty = NodeRecords::default();
    let records_of = |node: &str| captured.nodes.get(node).unwrap_or(&empty);
    for output in &case.outputs {
        let node = &output.extract_from;
        let records = records_of(node);
        let subject = format!("node `{}`", node.value);
        if let Some(count) = &output.count
            && records.len() != count.value
        {
            failures.push(Failure {
                at: count.at,
                subject: subject.clone(),
                message: format!(
                    "expected {} record{}, got {}{}",
                    count.value,
                    plural(count.value),
                    records.len(),
                    listing(records)
                ),
            });
        }
        let mut used = vec![false; records.readings.len()];
        for (k, condition) in output.records.iter().enumerate() {
            let found = records
                .readings
                .iter()
                .enumerate()
                .find(|(i, r)| !used[*i] && matches(condition, r, &records.fields));
            match found {
                Some((i, _)) => used[i] = true,
                None => failures.push(Failure {
                    at: condition.at,
                    subject: subject.clone(),
                    message: format!(
                        "expected record #{} {} matches none of the {} record{} left unmatched{}",
                        k + 1,
                        describe(condition),
                        used.iter().filter(|u| !**u).count(),
                        plural(used.iter().filter(|u| !**u).count()),
                        listing(records)
                    ),
                }),
            }
        }
    }
    for node in &case.no_outputs_from {
        let records = records_of(node);
        if !records.is_empty() {
            failures.push(Failure {
                at: node.at,
                subject: format!("node `{}`", node.value),
                message: format!(
                    "expected no records, got {}{}",
                    records.len(),
                    listing(records)
                ),
            });
        }
    }
    for (name, expected) in &case.counters {
        if !is_counter(name, captured) {
            failures.push(Failure {
                at: expected.at,
                subject: format!("counter `{name}`"),
                message: format!(
                    "the run has no such counter{}",
                    counters_like(name, captured)
                ),
            });
            continue;
        }
        let got = captured.counters.get(name).copied().unwrap_or(0);
        if got != expected.value {
            failures.push(Failure {
                at: expected.at,
                subject: format!("counter `{name}`"),
                message: format!("expected {}, got {got}", expected.value),
            });
        }
    }
    failures
}

/// Whether the run has counter `name`. Some are made at their first count: one per
/// reason under a family that exists from the start (`readings.errors.truncated` under
/// `readings.errors`), so those are taken as 0. Any other unknown name is a typo, which
/// must not pass as "0 as expected".
fn is_counter(name: &str, captured: &Captured) -> bool {
    captured.counters.contains_key(name)
        || name
            .rsplit_once('.')
            .is_some_and(|(family, _)| captured.counters.contains_key(family))
}

/// The run's counters of the node `name` starts with, for a failure's message.
fn counters_like(name: &str, captured: &Captured) -> String {
    let node = name.split('.').next().unwrap_or(name);
    let same_node: Vec<&str> = captured
        .counters
        .keys()
        .filter(|k| k.split('.').next() == Some(node))
        .map(String::as_str)
        .collect();
    if same_node.is_empty() {
        String::new()
    } else {
        format!("; those of `{node}`: {}", same_node.join(", "))
    }
}

/// Whether `reading` (whose values are named `fields`) meets every part of `condition`.
fn matches(condition: &RecordCondition, reading: &Reading, fields: &[String]) -> bool {
    if condition
        .sensor
        .as_ref()
        .is_some_and(|s| s != reading.sensor.as_str())
    {
        return false;
    }
    if condition.time.is_some_and(|t| t.0 != reading.time_ms) {
        return false;
    }
    condition.fields.iter().all(|(name, want)| {
        fields
            .iter()
            .position(|f| *f == name.value)
            .and_then(|i| reading.values.get(i))
            .is_some_and(|&value| holds(want, value))
    })
}

/// Whether `value` meets `condition`.
pub fn holds(condition: &ValueCondition, value: f64) -> bool {
    match condition {
        ValueCondition::Equals(want) => value == *want,
        ValueCondition::Within(Tolerance {
            of,
            absolute,
            relative,
        }) => {
            let off = (value - of).abs();
            absolute.is_some_and(|a| off <= a) || relative.is_some_and(|r| off <= r * of.abs())
        }
    }
}

/// A record condition in one line: `{sensor = a, p_l1 = 1.5, p_l2 = 2 ± 0.001}`.
fn describe(condition: &RecordCondition) -> String {
    let mut parts = Vec::new();
    if let Some(sensor) = &condition.sensor {
        parts.push(format!("sensor = {sensor}"));
    }
    if let Some(time) = condition.time {
        parts.push(format!("time = {}", rfc3339(time.0)));
    }
    for (name, want) in &condition.fields {
        let text = match want {
            ValueCondition::Equals(v) => format!("{name} = {v}"),
            ValueCondition::Within(t) => {
                let mut text = format!("{name} = {}", t.of);
                if let Some(a) = t.absolute {
                    let _ = write!(text, " ± {a}");
                }
                if let Some(r) = t.relative {
                    let or = if t.absolute.is_some() { " or" } else { "" };
                    let _ = write!(text, "{or} ± {}%", r * 100.0);
                }
                text
            }
        };
        parts.push(text);
    }
    format!("{{{}}}", parts.join(", "))
}

/// The records, one per line (indented), for a failure's message.
fn listing(records: &NodeRecords) -> String {
    if records.is_empty() {
        return String::new();
    }
    let mut text = String::from(":");
    for reading in records.readings.iter().take(SHOWN) {
        let _ = write!(text, "\n    {}", show_reading(reading, &records.fields));
    }
    for message in records.messages.iter().take(SHOWN) {
        let _ = write!(
            text,
            "\n    {{topic: {}, bytes: {}}}",
            message.topic,
            message.payload.len()
        );
    }
    let shown = records.readings.len().min(SHOWN) + records.messages.len().min(SHOWN);
    if records.len() > shown {
        let _ = write!(text, "\n    … and {} more", records.len() - shown);
    }
    text
}

fn show_reading(reading: &Reading, fields: &[String]) -> String {
    let mut text = format!(
        "{{sensor: {}, time: {}",
        reading.sensor.as_str(),
        rfc3339(reading.time_ms)
    );
    for (i, value) in reading.values.iter().enumerate() {
        let name = fields.get(i).map_or("?", String::as_str);
        let _ = write!(text, ", {name}: {value}");
    }
    text.push('}');
    text
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances_are_absolute_or_relative() {
        let near = |absolute, relative| {
            ValueCondition::Within(Tolerance {
                of: 100.0,
                absolute,
                relative,
            })
        };
        assert!(holds(&ValueCondition::Equals(1.5), 1.5));
        assert!(!holds(&ValueCondition::Equals(1.5), 1.5000001));
        assert!(!holds(&ValueCondition::Equals(f64::NAN), f64::NAN));
        assert!(holds(&near(Some(0.5), None), 100.5));
        assert!(!holds(&near(Some(0.5), None), 100.6));
        assert!(holds(&near(None, Some(0.01)), 99.0));
        assert!(!holds(&near(None, Some(0.01)), 98.9));
        assert!(
            holds(&near(Some(0.1), Some(0.01)), 99.0),
            "either is enough"
        );
        assert!(!holds(&near(Some(0.1), None), f64::NAN));
    }
}
