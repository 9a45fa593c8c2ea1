//! The output encodings the sinks share ([`Format`]): InfluxDB line protocol, JSON
//! records one per line, CSV, and a short text form for people watching a terminal. An
//! [`Encoder`] writes readings of one schema in one of them.

use serde::Deserialize;
use smartgrid_runtime::{Reading, Schema};

use super::{JsonRecord, LineProtocol, csv, text};

/// How records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
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
    how: How,
}

/// A format with what it prepared for the schema.
#[derive(Clone, Debug)]
enum How {
    LineProtocol(LineProtocol),
    Json(JsonRecord),
    /// The node's name and the field names.
    Text(String, Vec<String>),
    /// The header line.
    Csv(String),
}

impl Encoder {
    /// An encoder for `schema`, writing `measurement` with these extra tags (line
    /// protocol; text shows `measurement` as the node's name; JSON and CSV use neither).
    pub fn new(
        format: Format,
        precision: Precision,
        measurement: &str,
        tags: &[(String, String)],
        schema: &Schema,
    ) -> Self {
        let how = match format {
            Format::LineProtocol => {
                How::LineProtocol(LineProtocol::new(precision, measurement, tags, schema))
            }
            Format::Json => How::Json(JsonRecord::new(schema)),
            Format::Text => How::Text(
                measurement.to_string(),
                schema.fields().map(str::to_string).collect(),
            ),
            Format::Csv => How::Csv(csv::header(schema)),
        };
        Encoder { how }
    }

    /// Append one reading as one line (with its newline) to `out`.
    pub fn encode(&self, reading: &Reading, out: &mut String) {
        match &self.how {
            How::LineProtocol(lp) => lp.write(reading, out),
            How::Json(record) => {
                record.write(reading, out);
                out.push('\n');
            }
            How::Text(node, names) => text::write(node, names, reading, out),
            How::Csv(_) => csv::write(reading, out),
        }
    }

    /// The line a file starts with, if the format has one (CSV's header).
    pub fn header(&self) -> Option<String> {
        match &self.how {
            How::Csv(header) => Some(header.clone()),
            _ => None,
        }
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
        assert_eq!(
            out,
            "{\"sensor_id\":\"s 1\",\"time\":\"2023-11-14T22:13:20.123Z\",\"time_ms\":1700000000123,\"p\":2.5,\"count\":3.0}\n"
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
        assert_eq!(v["sensor_id"], "s 1");
        assert_eq!(v["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["p"], 2.5);
        assert_eq!(v["count"], 3.0);
    }

    #[test]
    fn text_shows_time_node_sensor_and_values() {
        let schema = Schema::new(["p", "count"]);
        let enc = Encoder::new(Format::Text, Precision::Ns, "means", &[], &schema);
        let mut out = String::new();
        enc.encode(&reading(&[2.54, 3.0]), &mut out);
        assert_eq!(out, "2023-11-14T22:13:20.123Z means s 1 p=2.5 count=3.0\n");
        assert_eq!(enc.header(), None);
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
