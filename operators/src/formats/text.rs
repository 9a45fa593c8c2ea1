//! A short line for people watching a terminal: `<time> <node> <sensor> name=value …`,
//! values to one decimal.

use std::fmt::Write as _;

use smartgrid_runtime::Reading;

use super::rfc3339;

/// Append `r`, read by node `node` with these field names, as one line to `out`.
pub fn write(node: &str, names: &[String], r: &Reading, out: &mut String) {
    let _ = write!(out, "{} {} {}", rfc3339(r.time_ms), node, r.sensor);
    for (name, value) in names.iter().zip(r.values.iter()) {
        let _ = write!(out, " {name}={value:.1}");
    }
    out.push('\n');
}
