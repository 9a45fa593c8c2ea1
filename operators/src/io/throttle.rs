//! One log line per reason per [`EVERY`] at most: an outage that fails every request
//! would otherwise flood the log. The next line of a reason says how many were held back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The shortest time between two lines of the same reason.
pub const EVERY: Duration = Duration::from_secs(10);

/// A node's throttled log.
#[derive(Debug)]
pub struct ThrottledLog {
    node: String,
    /// Per reason: when it was last logged, and how many lines were held back since.
    reasons: BTreeMap<&'static str, (Instant, u64)>,
}

impl ThrottledLog {
    /// Lines of `node`.
    pub fn new(node: &str) -> Self {
        ThrottledLog {
            node: node.to_string(),
            reasons: BTreeMap::new(),
        }
    }

    /// A warning, unless `reason` was logged less than [`EVERY`] ago. The message is
    /// only formatted when it is logged (pass `format_args!`), so a flood of held-back
    /// lines costs no allocation.
    pub fn warn(&mut self, reason: &'static str, message: impl std::fmt::Display) {
        if let Some(suffix) = self.admit(reason, Instant::now()) {
            tracing::warn!(node = %self.node, reason, "{message}{suffix}");
        }
    }

    /// An error, unless `reason` was logged less than [`EVERY`] ago (see [`warn`](Self::warn)).
    pub fn error(&mut self, reason: &'static str, message: impl std::fmt::Display) {
        if let Some(suffix) = self.admit(reason, Instant::now()) {
            tracing::error!(node = %self.node, reason, "{message}{suffix}");
        }
    }

    /// Say, for every reason whose interval has passed, how many lines were held back
    /// since its last line, so a burst that stopped is still accounted for. Call it now
    /// and then (a sink's or decoder's activation).
    pub fn tick(&mut self, now: Instant) {
        for (reason, (at, held)) in &mut self.reasons {
            if *held > 0 && now.duration_since(*at) >= EVERY {
                tracing::warn!(
                    node = %self.node,
                    reason,
                    "{held} more like this in the last {}s",
                    now.duration_since(*at).as_secs()
                );
                *at = now;
                *held = 0;
            }
        }
    }

    /// Forget `reason` (its trouble is over): its next line is logged at once.
    pub fn clear(&mut self, reason: &'static str) {
        self.reasons.remove(reason);
    }

    /// Whether a line of `reason` may go out at `now`, and the note on what was held back.
    fn admit(&mut self, reason: &'static str, now: Instant) -> Option<String> {
        match self.reasons.get_mut(reason) {
            Some((at, held)) if now.duration_since(*at) < EVERY => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                let suffix = match std::mem::take(held) {
                    0 => String::new(),
                    n => format!(
                        " ({n} more like this in the last {}s)",
                        now.duration_since(*at).as_secs()
                    ),
                };
                *at = now;
                Some(suffix)
            }
            None => {
                self.reasons.insert(reason, (now, 0));
                Some(String::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_interval_with_a_count() {
        let mut log = ThrottledLog::new("n");
        let t0 = Instant::now();
        assert_eq!(log.admit("down", t0), Some(String::new()));
        assert_eq!(log.admit("down", t0 + Duration::from_secs(1)), None);
        assert_eq!(log.admit("down", t0 + Duration::from_secs(2)), None);
        assert_eq!(
            log.admit("other", t0 + Duration::from_secs(2)),
            Some(String::new())
        );
        let later = log.admit("down", t0 + EVERY).unwrap();
        assert!(later.contains("2 more like this"), "{later}");
        log.clear("down");
        assert_eq!(log.admit("down", t0 + EVERY), Some(String::new()));
    }
}
