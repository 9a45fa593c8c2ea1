//! Event-time watermarks.
//!
//! The watermark is the event time below which no more readings are expected. It is
//! kept per sensor and taken as the *slowest* sensor's: each sensor's largest event
//! time minus an allowed delay for out-of-order arrival, the minimum over the sensors
//! heard from within `idle`. So one sensor whose clock runs ahead cannot make the
//! others' readings late; one whose clock trails the rest by more than `max_skew` is
//! not waited for (its readings will be late, and say so), so it cannot hold every
//! window open either.
//!
//! When every sensor has been quiet for longer than `idle`, the watermark moves on with
//! the wall clock, so a stopped publisher cannot hold the windows open, but only while
//! the sources are live (see [`Liveness`](crate::liveness::Liveness)): a disconnected
//! or backlogged source has readings on their way for the time that passes.

use std::time::{Duration, Instant};

use crate::dense_map::DenseMap;
use crate::record::SensorId;

/// One sensor's clock as seen by the watermark.
#[derive(Clone, Copy, Debug)]
struct SensorClock {
    max_event_ms: u64,
    heard_at: Instant,
}

/// Tracks one operator's watermark.
#[derive(Clone, Debug)]
pub struct Watermark {
    delay_ms: u64,
    idle: Duration,
    max_skew_ms: u64,
    /// By the sensor's stable 64-bit hash, not its id: this is one lookup per reading
    /// on the hottest path, and a u64 key is compared in one instruction. Two ids with
    /// one hash (a 2^-64 chance per pair) would share a clock: the faster of the two
    /// would then not hold the watermark back.
    sensors: DenseMap<u64, SensorClock>,
    /// The largest event time of any sensor, as of the last look.
    max_event_ms: Option<u64>,
    /// When the current quiet spell began: the last reading, or the last moment a
    /// source was not live, whichever is later (`None` before the first reading).
    quiet_from: Option<Instant>,
    current: u64,
    /// The previous call to [`at`](Self::at): a long gap means this thread was stalled.
    last_look: Option<Instant>,
    scratch: Vec<u64>,
    /// Readings observed since the clocks were last brought up to date, as (sensor
    /// hash, event time), all heard at `heard_at`. Folded in by [`at`](Self::at) (or
    /// when this fills) in one tight pass, where the clock lookups of consecutive
    /// readings overlap instead of each waiting between two payloads' decoding.
    heard: Vec<(u64, u64)>,
    heard_at: Option<Instant>,
}

/// Readings held in `heard` at most (64 KiB).
const HEARD: usize = 4096;

impl Watermark {
    /// A watermark that trails the slowest sensor by `delay`, waits for no sensor
    /// more than `max_skew` behind the others, and advances with the wall clock after
    /// `idle` without readings.
    pub fn new(delay: Duration, idle: Duration, max_skew: Duration) -> Self {
        Watermark {
            delay_ms: millis(delay),
            idle,
            max_skew_ms: millis(max_skew),
            sensors: DenseMap::new(),
            max_event_ms: None,
            quiet_from: None,
            current: 0,
            last_look: None,
            scratch: Vec::new(),
            heard: Vec::new(),
            heard_at: None,
        }
    }

    /// A watermark restored at `current` (from a checkpoint): it never goes below it.
    pub fn resume_at(mut self, current: u64) -> Self {
        self.current = self.current.max(current);
        self
    }

    /// The watermark as last computed.
    pub fn current(&self) -> u64 {
        self.current
    }

    /// Note a reading of `sensor` at `event_ms` (ms since the epoch; times before 1970
    /// count as 0), arriving at `now`.
    #[inline]
    pub fn observe(&mut self, sensor: SensorId, event_ms: i64, now: Instant) {
        if self.heard_at != Some(now) || self.heard.len() >= HEARD {
            self.fold();
            self.heard_at = Some(now);
        }
        let event = u64::try_from(event_ms).unwrap_or(0);
        self.heard.push((sensor.route_hash(), event));
        // The largest event time and the end of the quiet spell are folded in from the
        // clocks by `at`, once per look rather than once per reading.
    }

    /// Bring the sensors' clocks up to date with the readings in `heard`.
    fn fold(&mut self) {
        let Some(now) = self.heard_at else {
            return;
        };
        for (sensor, event) in self.heard.drain(..) {
            let clock = self.sensors.get_or_insert_with(sensor, || SensorClock {
                max_event_ms: event,
                heard_at: now,
            });
            clock.max_event_ms = clock.max_event_ms.max(event);
            clock.heard_at = now;
        }
    }

    /// The watermark at `now`, given since when every source has been live (`None`
    /// while one is not). It never goes backwards; zero until the first reading.
    pub fn at(&mut self, now: Instant, live_since: Option<Instant>) -> u64 {
        self.fold();
        // What the readings since the last look said; sensors quiet for longer than
        // `idle` no longer hold the watermark (a sensor that comes back starts afresh).
        let idle = self.idle;
        let (mut max_event, mut last_heard) = (self.max_event_ms, None::<Instant>);
        self.sensors.retain(|_, c| {
            max_event = Some(max_event.map_or(c.max_event_ms, |m| m.max(c.max_event_ms)));
            last_heard = Some(last_heard.map_or(c.heard_at, |h| h.max(c.heard_at)));
            now.saturating_duration_since(c.heard_at) <= idle
        });
        self.max_event_ms = max_event;
        if let Some(heard) = last_heard {
            self.quiet_from = Some(self.quiet_from.map_or(heard, |q| q.max(heard)));
        }
        let Some(max_event) = self.max_event_ms else {
            return self.current;
        };
        // A thread stalled (stopped, swapped out, starved) for longer than it would
        // ever wait between looks cannot know what queued up meanwhile: its quiet
        // spell starts now, as after a reconnection.
        let stalled = self
            .last_look
            .is_some_and(|last| now.saturating_duration_since(last) > self.stall_after());
        self.last_look = Some(now);
        let back = if stalled {
            now
        } else {
            live_since.unwrap_or(now)
        };
        let quiet_from = self.quiet_from.map_or(back, |q| q.max(back));
        self.quiet_from = Some(quiet_from);
        let candidate = if let Some(slowest) = self.slowest() {
            Some(slowest.saturating_sub(self.delay_ms))
        } else {
            let quiet = now.saturating_duration_since(quiet_from);
            (live_since.is_some() && quiet > idle).then(|| {
                max_event
                    .saturating_add(millis(quiet))
                    .saturating_sub(self.delay_ms)
            })
        };
        if let Some(candidate) = candidate {
            self.current = self.current.max(candidate);
        }
        self.current
    }

    /// The largest event time of the slowest sensor that is not a straggler (more
    /// than `max_skew` behind the median sensor).
    fn slowest(&mut self) -> Option<u64> {
        self.scratch.clear();
        self.scratch
            .extend(self.sensors.values().iter().map(|c| c.max_event_ms));
        if self.scratch.is_empty() {
            return None;
        }
        let middle = self.scratch.len() / 2;
        let median = *self.scratch.select_nth_unstable(middle).1;
        let floor = median.saturating_sub(self.max_skew_ms);
        self.scratch.iter().copied().filter(|&m| m >= floor).min()
    }

    /// How long until the idle rule could move the watermark: when to look again.
    pub fn recheck_after(&self) -> Duration {
        (self.idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// A gap between looks longer than this is a stall, not a quiet input.
    fn stall_after(&self) -> Duration {
        Duration::from_secs(1) + 2 * self.recheck_after()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_secs(300);

    fn sensor(name: &str) -> SensorId {
        SensorId::new(name).expect("short")
    }

    #[test]
    fn trails_max_event_and_never_goes_back() {
        let t0 = Instant::now();
        let live = Some(t0);
        let a = sensor("a");
        let mut w = Watermark::new(Duration::from_millis(500), Duration::from_secs(10), SKEW);
        assert_eq!(w.at(t0, live), 0);
        w.observe(a, 10_000, t0);
        assert_eq!(w.at(t0, live), 9_500);
        w.observe(a, 8_000, t0); // out of order: no effect
        assert_eq!(w.at(t0, live), 9_500);
        w.observe(a, 12_000, t0);
        assert_eq!(w.at(t0, live), 11_500);
    }

    #[test]
    fn follows_the_slowest_sensor_not_the_fastest() {
        let t0 = Instant::now();
        let live = Some(t0);
        let mut w = Watermark::new(Duration::ZERO, Duration::from_secs(10), SKEW);
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            w.observe(sensor(name), 100_000 + i as i64, t0);
        }
        w.observe(sensor("fast"), 100_000 + 3_600_000, t0); // an hour ahead
        assert_eq!(
            w.at(t0, live),
            100_000,
            "the clock an hour ahead moves nothing"
        );
    }

    #[test]
    fn a_straggler_is_not_waited_for() {
        let t0 = Instant::now();
        let live = Some(t0);
        let mut w = Watermark::new(Duration::ZERO, Duration::from_secs(10), SKEW);
        for name in ["a", "b", "c"] {
            w.observe(sensor(name), 10_000_000, t0);
        }
        w.observe(sensor("slow"), 10_000_000 - 3_600_000, t0); // an hour behind
        assert_eq!(w.at(t0, live), 10_000_000);
    }

    /// More readings in one look than `heard` holds, arriving at two instants: what the
    /// clocks say is what each sensor's largest time says, computed here directly.
    #[test]
    fn readings_past_the_heard_list_and_across_instants_all_count() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(10);
        let mut w = Watermark::new(Duration::ZERO, Duration::from_secs(10), SKEW);
        let names = ["a", "b", "c"];
        let mut largest = [0_i64; 3];
        for i in 0..3 * HEARD as i64 {
            let k = (i % 3) as usize;
            // Each sensor's times fall (out of order), so its largest came first: in the
            // first fill of `heard`, at the first instant.
            let time = 1_000_000 + 100_000 * k as i64 - i * 37 % 5_000 - i;
            largest[k] = largest[k].max(time);
            let now = if i < HEARD as i64 { t0 } else { t1 };
            w.observe(sensor(names[k]), time, now);
        }
        let slowest = *largest.iter().min().expect("three sensors");
        assert_eq!(w.at(t1, Some(t0)), slowest as u64);
    }

    #[test]
    fn a_quiet_sensor_stops_holding_it_back() {
        let t0 = Instant::now();
        let live = Some(t0);
        let mut w = Watermark::new(Duration::ZERO, Duration::from_secs(5), SKEW);
        w.observe(sensor("a"), 100_000, t0);
        w.observe(sensor("b"), 90_000, t0);
        assert_eq!(w.at(t0, live), 90_000);
        let t1 = t0 + Duration::from_secs(6);
        w.observe(sensor("a"), 106_000, t1);
        assert_eq!(w.at(t1, live), 106_000, "b has been quiet for 6 s");
    }

    #[test]
    fn advances_with_the_wall_clock_when_idle_and_live() {
        let t0 = Instant::now();
        let live = Some(t0);
        let mut w = Watermark::new(Duration::from_millis(0), Duration::from_secs(5), SKEW);
        w.observe(sensor("a"), 100_000, t0);
        assert_eq!(
            w.at(t0 + Duration::from_secs(4), live),
            100_000,
            "not idle yet"
        );
        assert_eq!(
            w.at(t0 + Duration::from_secs(6), live),
            106_000,
            "idle: follows the clock"
        );
        w.observe(sensor("a"), 101_000, t0 + Duration::from_secs(6)); // late
        assert_eq!(
            w.at(t0 + Duration::from_secs(6), live),
            106_000,
            "never backwards"
        );
    }

    #[test]
    fn holds_while_a_source_is_away_and_counts_idle_from_its_return() {
        let t0 = Instant::now();
        let mut w = Watermark::new(Duration::ZERO, Duration::from_secs(5), SKEW);
        w.observe(sensor("a"), 100_000, t0);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(w.at(t0, Some(t0)), 100_000);
        // Disconnected for 20 s (looked at every second): no drift however long.
        for s in 1..=20 {
            assert_eq!(w.at(at(s), None), 100_000);
        }
        // Back at t0 + 20 s with nothing queued: quiet counts from the reconnection.
        let back = Some(at(20));
        for s in 21..=25 {
            assert_eq!(w.at(at(s), back), 100_000, "{s} s");
        }
        assert_eq!(w.at(at(26), back), 106_000);
    }

    #[test]
    fn a_stall_restarts_the_quiet_spell() {
        let t0 = Instant::now();
        let live = Some(t0);
        let mut w = Watermark::new(Duration::ZERO, Duration::from_secs(2), SKEW);
        w.observe(sensor("a"), 100_000, t0);
        assert_eq!(w.at(t0, live), 100_000);
        // Not looked at for 7 s (the process was stopped): the broker may hold readings.
        let resumed = t0 + Duration::from_secs(7);
        assert_eq!(w.at(resumed, live), 100_000, "no jump on resuming");
        let later = resumed + Duration::from_millis(500);
        assert_eq!(w.at(later, live), 100_000);
        let idle = resumed + Duration::from_millis(2_500);
        assert_eq!(
            w.at(idle, live),
            102_500,
            "idle counted from the resumption"
        );
    }

    #[test]
    fn resumes_at_a_restored_watermark() {
        let t0 = Instant::now();
        let mut w = Watermark::new(Duration::ZERO, Duration::from_secs(5), SKEW).resume_at(50_000);
        assert_eq!(w.at(t0, Some(t0)), 50_000);
        w.observe(sensor("a"), 40_000, t0);
        assert_eq!(w.at(t0, Some(t0)), 50_000, "never below the restored mark");
    }
}
