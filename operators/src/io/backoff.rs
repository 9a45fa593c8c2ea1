//! The one backoff every connection and every sink retries with.

use std::time::{Duration, Instant};

/// Exponential backoff with ±25 % jitter, capped.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Start at `initial`, double up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt (the server's `Retry-After` wins when longer).
    pub fn delay(&mut self, server_says: Option<Duration>) -> Duration {
        use rand::Rng;
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::rng().random_range(0.75..1.25);
        let ours = base.mul_f64(jitter).min(self.max);
        match server_says {
            Some(after) => after.max(ours),
            None => ours,
        }
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// When the next attempt is due.
    pub fn due(&mut self, server_says: Option<Duration>) -> Instant {
        Instant::now() + self.delay(server_says)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| b.delay(None)).collect();
        let bases = [100u64, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (d, base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(
                *d >= base.mul_f64(0.75) && *d <= base.mul_f64(1.25).min(Duration::from_secs(1)),
                "{d:?} vs {base:?}"
            );
        }
        assert!(
            b.delay(Some(Duration::from_secs(5))) >= Duration::from_secs(5),
            "Retry-After wins"
        );
        b.reset();
        assert!(b.delay(None) <= Duration::from_millis(125));
    }
}
