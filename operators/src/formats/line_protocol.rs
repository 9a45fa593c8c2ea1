//! InfluxDB line protocol: `measurement,tag=v,… field=v,… time`, one point per reading,
//! tags sorted by key, a NaN or infinite value left out of its point.

use std::fmt::Write as _;

use smartgrid_runtime::{Reading, Schema};

use super::Precision;

/// Writes readings of one schema as line protocol; the escaped names are built once.
#[derive(Clone, Debug)]
pub struct LineProtocol {
    precision: Precision,
    /// Already escaped measurement name.
    measurement: String,
    /// Already escaped `,key=value` tags sorting before `sensor_id` (InfluxDB
    /// recommends tags sorted by key).
    tags_before: String,
    /// Already escaped `,key=value` tags sorting after `sensor_id`.
    tags_after: String,
    /// Already escaped field keys.
    field_keys: Vec<String>,
}

impl LineProtocol {
    /// Points of `measurement` with these extra tags, for readings of `schema`.
    pub fn new(
        precision: Precision,
        measurement: &str,
        tags: &[(String, String)],
        schema: &Schema,
    ) -> Self {
        let mut sorted: Vec<&(String, String)> = tags.iter().collect();
        sorted.sort();
        let (mut tags_before, mut tags_after) = (String::new(), String::new());
        for (k, v) in sorted {
            let text = if k.as_str() < "sensor_id" {
                &mut tags_before
            } else {
                &mut tags_after
            };
            text.push(',');
            escape_key(text, k);
            text.push('=');
            escape_key(text, v);
        }
        LineProtocol {
            precision,
            measurement: {
                let mut m = String::new();
                escape_measurement(&mut m, measurement);
                m
            },
            tags_before,
            tags_after,
            field_keys: schema
                .fields()
                .map(|f| {
                    let mut k = String::new();
                    escape_key(&mut k, f);
                    k
                })
                .collect(),
        }
    }

    /// Append `r` as one point (with its newline) to `out`; nothing if no value is finite.
    pub fn write(&self, r: &Reading, out: &mut String) {
        out.push_str(&self.measurement);
        out.push_str(&self.tags_before);
        out.push_str(",sensor_id=");
        escape_key(out, r.sensor.as_str());
        out.push_str(&self.tags_after);
        let mut first = true;
        for (key, value) in self.field_keys.iter().zip(r.values.iter()) {
            // Line protocol has no NaN or infinity: such a field is left out of the point.
            if !value.is_finite() {
                continue;
            }
            out.push(if first { ' ' } else { ',' });
            first = false;
            out.push_str(key);
            out.push('=');
            let _ = write!(out, "{value:?}");
        }
        if first {
            // A point needs at least one field; with none finite, write nothing.
            let keep = out.rfind('\n').map_or(0, |i| i + 1);
            out.truncate(keep);
            return;
        }
        let _ = writeln!(out, " {}", self.precision.from_millis(r.time_ms));
    }
}

/// Escape a measurement name: commas and spaces.
pub fn escape_measurement(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, ',' | ' ' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Escape a tag key, tag value or field key: commas, equals signs and spaces.
pub fn escape_key(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ' | '\\') {
            out.push('\\');
        }
        if c == '\n' {
            out.push_str("\\n");
            continue;
        }
        out.push(c);
    }
}
