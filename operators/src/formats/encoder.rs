//! Output encodings shared by the sinks: InfluxDB line protocol, JSON lines, and a
//! short text form for people watching a terminal.

use std::fmt::Write as _;

use serde::Deserialize;
use smartgrid_runtime::{Reading, Schema};

/// How records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// InfluxDB line protocol, one point per reading.
    #[default]
    LineProtocol,
    /// One JSON object per line.
    Json,
    /// A short human-readable line.
    Text,
    /// Comma-separated values under a header `sensor_id,time_ms,<fields>`; a NaN is an
    /// empty cell (what `smartgrid model train` reads as missing).
    Csv,
}

/// Timestamp precision of line protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds (InfluxDB's default).
    #[default]
    Ns,
}

impl Precision {
    /// The `precision=` query value InfluxDB expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::S => "s",
            Precision::Ms => "ms",
            Precision::Us => "us",
            Precision::Ns => "ns",
        }
    }

    /// Convert epoch milliseconds to this precision.
    pub fn from_millis(self, ms: i64) -> i64 {
        match self {
            Precision::S => ms.div_euclid(1000),
            Precision::Ms => ms,
            Precision::Us => ms.saturating_mul(1_000),
            Precision::Ns => ms.saturating_mul(1_000_000),
        }
    }
}

/// Writes readings of one schema as lines of text, reusing its buffers.
#[derive(Clone, Debug)]
pub struct Encoder {
    format: Format,
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
    /// Raw names, for JSON and text.
    names: Vec<String>,
    node: String,
}

impl Encoder {
    /// An encoder for `schema`, writing `measurement` with these extra tags.
    pub fn new(
        format: Format,
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
        Encoder {
            format,
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
            names: schema.fields().map(str::to_string).collect(),
            node: measurement.to_string(),
        }
    }

    /// Append one reading as one line (with its newline) to `out`.
    pub fn encode(&self, reading: &Reading, out: &mut String) {
        match self.format {
            Format::LineProtocol => self.line_protocol(reading, out),
            Format::Json => self.json(reading, out),
            Format::Text => self.text(reading, out),
            Format::Csv => self.csv(reading, out),
        }
    }

    /// The line a file starts with, if the format has one (CSV's header).
    pub fn header(&self) -> Option<String> {
        (self.format == Format::Csv).then(|| {
            let mut line = String::from("sensor_id,time_ms");
            for name in &self.names {
                line.push(',');
                line.push_str(name);
            }
            line.push('\n');
            line
        })
    }

    fn csv(&self, r: &Reading, out: &mut String) {
        let sensor = r.sensor.as_str();
        if sensor.contains([',', '"', '\n', '\r']) {
            // RFC 4180: quote the cell, double the quotes inside.
            let _ = write!(out, "\"{}\"", sensor.replace('"', "\"\""));
        } else {
            out.push_str(sensor);
        }
        let _ = write!(out, ",{}", r.time_ms);
        for value in r.values.iter() {
            out.push(',');
            if value.is_finite() {
                let _ = write!(out, "{value:?}");
            }
        }
        out.push('\n');
    }

    fn line_protocol(&self, r: &Reading, out: &mut String) {
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

    fn json(&self, r: &Reading, out: &mut String) {
        let mut obj = serde_json::Map::new();
        obj.insert("measurement".into(), self.node.clone().into());
        obj.insert("sensor_id".into(), r.sensor.as_str().into());
        obj.insert("time_ms".into(), r.time_ms.into());
        obj.insert("time".into(), rfc3339(r.time_ms).into());
        for (name, value) in self.names.iter().zip(r.values.iter()) {
            // JSON has no NaN: such a value is written as null.
            obj.insert(
                name.clone(),
                serde_json::Number::from_f64(*value).map_or(serde_json::Value::Null, Into::into),
            );
        }
        let _ = writeln!(out, "{}", serde_json::Value::Object(obj));
    }

    fn text(&self, r: &Reading, out: &mut String) {
        let _ = write!(out, "{} {} {}", rfc3339(r.time_ms), self.node, r.sensor);
        for (name, value) in self.names.iter().zip(r.values.iter()) {
            let _ = write!(out, " {name}={value:.1}");
        }
        out.push('\n');
    }
}

/// Epoch milliseconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH
        .checked_add(std::time::Duration::from_millis(
            u64::try_from(ms).unwrap_or(0),
        ))
        .unwrap_or(std::time::UNIX_EPOCH);
    humantime::format_rfc3339_millis(t).to_string()
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

#[cfg(test)]
mod tests {
    use super::*;
    use smartgrid_runtime::{Row, SensorId};

    fn reading(values: &[f64]) -> Reading {
        Reading {
            sensor: SensorId::new("s 1").expect("short"),
            time_ms: 1_700_000_000_123,
            values: values.iter().copied().collect::<Row>(),
        }
    }

    #[test]
    fn line_protocol_escapes_and_skips_nan() {
        let schema = Schema::new(["p l1", "q=1", "count"]);
        let enc = Encoder::new(
            Format::LineProtocol,
            Precision::Ms,
            "means,1m",
            &[("site".into(), "home 2".into()), ("a".into(), "b".into())],
            &schema,
        );
        let mut out = String::new();
        enc.encode(&reading(&[1.5, f64::NAN, 12.0]), &mut out);
        assert_eq!(
            out,
            "means\\,1m,a=b,sensor_id=s\\ 1,site=home\\ 2 p\\ l1=1.5,count=12.0 1700000000123\n"
        );
    }

    #[test]
    fn a_point_without_finite_fields_is_not_written() {
        let schema = Schema::new(["p"]);
        let enc = Encoder::new(Format::LineProtocol, Precision::Ns, "m", &[], &schema);
        let mut out = String::from("earlier line\n");
        enc.encode(&reading(&[f64::INFINITY]), &mut out);
        assert_eq!(out, "earlier line\n");
    }

    #[test]
    fn precisions_convert_millis() {
        assert_eq!(Precision::S.from_millis(1_999), 1);
        assert_eq!(Precision::Us.from_millis(2), 2_000);
        assert_eq!(Precision::Ns.from_millis(2), 2_000_000);
    }

    #[test]
    fn json_lines_carry_time_and_fields() {
        let schema = Schema::new(["p", "count"]);
        let enc = Encoder::new(Format::Json, Precision::Ns, "means", &[], &schema);
        let mut out = String::new();
        enc.encode(&reading(&[2.5, 3.0]), &mut out);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        assert_eq!(v["sensor_id"], "s 1");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["p"], 2.5);
        assert_eq!(v["count"], 3.0);
    }

    #[test]
    fn csv_has_a_header_quotes_odd_ids_and_leaves_nan_empty() {
        let schema = Schema::new(["p", "q"]);
        let enc = Encoder::new(Format::Csv, Precision::Ns, "means", &[], &schema);
        assert_eq!(enc.header().as_deref(), Some("sensor_id,time_ms,p,q\n"));
        let mut out = String::new();
        enc.encode(&reading(&[0.1, f64::NAN]), &mut out);
        assert_eq!(out, "s 1,1700000000123,0.1,\n");
        let mut odd = reading(&[1.0, 2.0]);
        odd.sensor = SensorId::new("a,\"b").expect("short");
        out.clear();
        enc.encode(&odd, &mut out);
        assert_eq!(out, "\"a,\"\"b\",1700000000123,1.0,2.0\n");
        let json = Encoder::new(Format::Json, Precision::Ns, "means", &[], &schema);
        assert_eq!(json.header(), None);
    }
}
