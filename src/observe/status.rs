//! The status line a run logs every `status_interval` (default one minute):
//!
//! ```text
//! status: 1180.4 readings/s, watermark lag 2.1s, spool 0 B | clemap: connected=1 messages=70823 subscribed=1 | store_10s: written=590
//! ```
//!
//! The rate is over the time since the previous line; then every source and every sink
//! with its counters and gauges (names as in `<node>.<what>`). Only node names and
//! numbers: nothing a pipeline file holds (a URL, a password) can reach it.

use std::fmt::Write;
use std::time::{Duration, Instant};

use super::View;

/// When the last line was logged, and the readings total then.
pub(super) struct StatusLine {
    last: Instant,
    last_total: Option<u64>,
}

impl StatusLine {
    pub(super) fn new(now: Instant) -> Self {
        StatusLine {
            last: now,
            last_total: None,
        }
    }

    /// Whether a line is due at `now`.
    pub(super) fn due(&self, now: Instant, every: Duration) -> bool {
        now.duration_since(self.last) >= every
    }

    /// The line at `now`, with `total` readings decoded so far.
    pub(super) fn line(
        &mut self,
        view: &View,
        now: Instant,
        total: u64,
        counters: &[(String, u64)],
        gauges: &[(String, i64)],
    ) -> String {
        let seconds = now.duration_since(self.last).as_secs_f64();
        let since = total - self.last_total.unwrap_or(0);
        self.last = now;
        self.last_total = Some(total);
        let rate = if seconds > 0.0 {
            since as f64 / seconds
        } else {
            0.0
        };
        let now_ms = smartgrid_runtime::clock::now_ms();
        let lag_ms = gauges
            .iter()
            .filter(|(name, mark)| name.ends_with(".watermark_ms") && *mark > 0)
            .map(|(_, mark)| now_ms.saturating_sub(*mark).max(0))
            .max();
        let spooled: i64 = gauges
            .iter()
            .filter(|(name, _)| name.ends_with(".spool_bytes") || name.ends_with(".outbox_bytes"))
            .map(|(_, bytes)| *bytes)
            .sum();
        let mut line = format!("{rate:.1} readings/s");
        match lag_ms {
            Some(ms) => {
                let _ = write!(line, ", watermark lag {:.1}s", ms as f64 / 1e3);
            }
            None => line.push_str(", watermark lag -"),
        }
        let _ = write!(line, ", spool {spooled} B");
        for node in view.sources.iter().chain(&view.sinks) {
            let prefix = format!("{node}.");
            let _ = write!(line, " | {node}:");
            let mut any = false;
            let values = counters
                .iter()
                .map(|(name, v)| (name, v.to_string()))
                .chain(gauges.iter().map(|(name, v)| (name, v.to_string())));
            let mut values: Vec<(&str, String)> = values
                .filter_map(|(name, v)| Some((name.strip_prefix(&prefix)?, v)))
                .collect();
            values.sort();
            for (what, value) in values {
                let _ = write!(line, " {what}={value}");
                any = true;
            }
            if !any {
                line.push_str(" -");
            }
        }
        line
    }
}
