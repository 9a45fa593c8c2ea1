//! Event-time watermarks.
//!
//! The watermark is the event time below which no more records are expected: the
//! largest event time seen minus an allowed delay for out-of-order arrival. When the
//! input goes quiet for longer than `idle`, the watermark moves on with the wall clock,
//! so a silent sensor (or a stopped publisher) cannot hold every window open.

use std::time::{Duration, Instant};

/// Tracks one operator's watermark.
#[derive(Clone, Debug)]
pub struct Watermark {
    delay_ms: u64,
    idle: Duration,
    max_event_ms: Option<u64>,
    last_event_at: Instant,
    current: u64,
}

impl Watermark {
    /// A watermark that trails the largest event time by `delay` and advances with the
    /// wall clock after `idle` without new events.
    pub fn new(delay: Duration, idle: Duration) -> Self {
        Watermark {
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            idle,
            max_event_ms: None,
            last_event_at: Instant::now(),
            current: 0,
        }
    }

    /// Note an event time (ms since the epoch; times before 1970 count as 0).
    #[inline]
    pub fn observe(&mut self, event_ms: i64, now: Instant) {
        let event = u64::try_from(event_ms).unwrap_or(0);
        match self.max_event_ms {
            Some(max) if max >= event => {}
            _ => {
                self.max_event_ms = Some(event);
                self.last_event_at = now;
            }
        }
    }

    /// The watermark at `now`; it never goes backwards. Zero until the first event.
    pub fn at(&mut self, now: Instant) -> u64 {
        if let Some(max) = self.max_event_ms {
            let quiet = now.saturating_duration_since(self.last_event_at);
            let drift = if quiet > self.idle {
                u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX)
            } else {
                0
            };
            let candidate = max.saturating_add(drift).saturating_sub(self.delay_ms);
            self.current = self.current.max(candidate);
        }
        self.current
    }

    /// How long until the idle rule could move the watermark: when to look again.
    pub fn recheck_after(&self) -> Duration {
        (self.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trails_max_event_and_never_goes_back() {
        let t0 = Instant::now();
        let mut w = Watermark::new(Duration::from_millis(500), Duration::from_secs(10));
        assert_eq!(w.at(t0), 0);
        w.observe(10_000, t0);
        assert_eq!(w.at(t0), 9_500);
        w.observe(8_000, t0); // out of order: no effect
        assert_eq!(w.at(t0), 9_500);
        w.observe(12_000, t0);
        assert_eq!(w.at(t0), 11_500);
    }

    #[test]
    fn advances_with_the_wall_clock_when_idle() {
        let t0 = Instant::now();
        let mut w = Watermark::new(Duration::from_millis(0), Duration::from_secs(5));
        w.observe(100_000, t0);
        assert_eq!(w.at(t0 + Duration::from_secs(4)), 100_000, "not idle yet");
        assert_eq!(
            w.at(t0 + Duration::from_secs(6)),
            106_000,
            "idle: follows the clock"
        );
        w.observe(101_000, t0 + Duration::from_secs(6)); // late, below the watermark
        assert_eq!(
            w.at(t0 + Duration::from_secs(6)),
            106_000,
            "never backwards"
        );
    }
}
