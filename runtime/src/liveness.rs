//! Whether this process's sources are *live*: connected and caught up.
//!
//! Event time may follow the wall clock only while nothing is held back upstream. A
//! source that is disconnected, reconnecting or still draining a backlog (or paused by
//! a full sink, see [`Pressure`]) has readings on their way that belong to the time
//! that passed, so the idle rule of the [`Watermark`](crate::watermark::Watermark)
//! must wait: otherwise what the broker queued during an outage arrives "late".
//!
//! A source that can be away (an MQTT subscription) takes a [`SourceLiveness`] and
//! says when it is live; sources that cannot (a simulator, a file) take none and never
//! hold the watermark back.
//!
//! ```
//! use smartgrid_runtime::liveness::Liveness;
//! use smartgrid_runtime::pressure::Pressure;
//!
//! let liveness = Liveness::new(Pressure::new());
//! assert!(liveness.live_since().is_some(), "no source: live");
//! let mut mqtt = liveness.source();
//! assert!(liveness.live_since().is_none(), "a source starts as not live");
//! mqtt.set(true);
//! assert!(liveness.live_since().is_some());
//! drop(mqtt); // a finished source holds nothing back
//! assert!(liveness.live_since().is_some());
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::pressure::Pressure;

/// The process's view of its sources' liveness.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    inner: Arc<Inner>,
    pressure: Pressure,
}

#[derive(Debug, Default)]
struct Inner {
    /// Sources that are not live right now.
    not_live: AtomicUsize,
    /// When a source last changed its state, in ns since [`origin`].
    changed_at: AtomicU64,
}

/// A fixed instant that atomics can count from.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Liveness {
    /// Liveness of a process whose sources also pause while `pressure` is raised.
    pub fn new(pressure: Pressure) -> Self {
        origin();
        Liveness {
            inner: Arc::default(),
            pressure,
        }
    }

    /// A handle for one source, not live until it says so.
    pub fn source(&self) -> SourceLiveness {
        self.inner.not_live.fetch_add(1, Ordering::AcqRel);
        self.touch();
        SourceLiveness {
            liveness: self.clone(),
            live: false,
        }
    }

    /// `None` while some source is not live (or the sources are paused); else the
    /// instant since which every source has been live.
    pub fn live_since(&self) -> Option<Instant> {
        if self.pressure.is_raised() || self.inner.not_live.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ns = self.inner.changed_at.load(Ordering::Acquire);
        Some(origin() + Duration::from_nanos(ns))
    }

    fn touch(&self) {
        let ns = u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.inner.changed_at.fetch_max(ns, Ordering::AcqRel);
    }
}

/// One source's part of the [`Liveness`].
#[derive(Debug)]
pub struct SourceLiveness {
    liveness: Liveness,
    live: bool,
}

impl SourceLiveness {
    /// Say whether this source is connected and caught up. Cheap when nothing changes,
    /// so a source may call it on every poll.
    #[inline]
    pub fn set(&mut self, live: bool) {
        if live == self.live {
            return;
        }
        self.live = live;
        let not_live = &self.liveness.inner.not_live;
        if live {
            not_live.fetch_sub(1, Ordering::AcqRel);
        } else {
            not_live.fetch_add(1, Ordering::AcqRel);
        }
        self.liveness.touch();
    }
}

impl Drop for SourceLiveness {
    fn drop(&mut self) {
        self.set(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_since_moves_when_a_source_comes_back() {
        let liveness = Liveness::new(Pressure::new());
        let mut a = liveness.source();
        let mut b = liveness.source();
        a.set(true);
        assert!(liveness.live_since().is_none(), "b is not live");
        b.set(true);
        let first = liveness.live_since().expect("both live");
        std::thread::sleep(Duration::from_millis(2));
        b.set(false);
        assert!(liveness.live_since().is_none());
        b.set(true);
        let second = liveness.live_since().expect("live again");
        assert!(
            second > first,
            "the quiet spell starts again at reconnection"
        );
    }

    #[test]
    fn pressure_counts_as_not_live() {
        let pressure = Pressure::new();
        let liveness = Liveness::new(pressure.clone());
        let mut valve = pressure.valve();
        valve.raise();
        assert!(liveness.live_since().is_none());
        valve.lower();
        assert!(liveness.live_since().is_some());
    }
}
