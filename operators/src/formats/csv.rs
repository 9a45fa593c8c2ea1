//! CSV under a header `sensor_id,time_ms,<fields>`; a NaN or infinite value is an empty
//! cell (what `smartgrid model train` reads as missing).

use std::fmt::Write as _;

use smartgrid_runtime::{Reading, Schema};

/// The header line of a CSV file of readings of `schema`, with its newline.
pub fn header(schema: &Schema) -> String {
    let mut line = String::from("sensor_id,time_ms");
    for name in schema.fields() {
        line.push(',');
        line.push_str(name);
    }
    line.push('\n');
    line
}

/// Append `r` as one CSV row (with its newline) to `out`.
pub fn write(r: &Reading, out: &mut String) {
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
