//! Process-wide counters: readings decoded, errors per reason, late records, …
//!
//! A counter is an `Arc<AtomicU64>` fetched once when an operator is rendered, so the
//! hot path only does a relaxed add. A [`Gauge`] (open windows, spool bytes, a
//! connection's state) is the same design with a relaxed store, set once per batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One counter.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Add `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Add one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One value that goes up and down (open windows, bytes in a spool, 1 while connected).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Set the value.
    #[inline]
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Add `delta` (negative to subtract). Workers that each hold a share of a quantity
    /// (a window operator's open windows) add the change of their share, so the gauge
    /// is the sum over the workers.
    #[inline]
    pub fn add(&self, delta: i64) {
        if delta != 0 {
            self.0.fetch_add(delta, Ordering::Relaxed);
        }
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A worker's share of a [`Gauge`] summed over workers: it remembers what it added, so
/// setting the share adds only the difference, and dropping it takes the share back.
#[derive(Debug, Default)]
pub struct GaugeShare {
    gauge: Gauge,
    share: i64,
}

impl GaugeShare {
    /// A share of `gauge`, at zero.
    pub fn new(gauge: Gauge) -> Self {
        GaugeShare { gauge, share: 0 }
    }

    /// Set this worker's share to `value`.
    #[inline]
    pub fn set(&mut self, value: i64) {
        self.gauge.add(value - self.share);
        self.share = value;
    }
}

impl Drop for GaugeShare {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// A value each worker keeps for itself (a watermark), shown in a [`Gauge`] as the
/// smallest over the workers that have one (non-zero): the process's watermark is its
/// slowest worker's. Each worker holds its own handle ([`MinGauge::for_worker`]).
#[derive(Clone, Debug, Default)]
pub struct MinGauge {
    gauge: Gauge,
    slots: Arc<[AtomicI64]>,
    slot: usize,
}

impl MinGauge {
    /// One slot per local worker, all showing in `gauge`.
    pub fn new(gauge: Gauge, workers: usize) -> Self {
        MinGauge {
            gauge,
            slots: (0..workers.max(1)).map(|_| AtomicI64::new(0)).collect(),
            slot: 0,
        }
    }

    /// The handle of local worker `index` (wrapped into range).
    pub fn for_worker(&self, index: usize) -> Self {
        MinGauge {
            slot: index % self.slots.len().max(1),
            ..self.clone()
        }
    }

    /// Set this worker's value (when it changes, not per record).
    pub fn set(&self, value: i64) {
        if let Some(slot) = self.slots.get(self.slot) {
            slot.store(value, Ordering::Relaxed);
        }
        let min = self
            .slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&v| v != 0)
            .min()
            .unwrap_or(0);
        self.gauge.set(min);
    }
}

#[derive(Debug, Default)]
struct Registry {
    counters: BTreeMap<String, Counter>,
    gauges: BTreeMap<String, Gauge>,
}

/// All counters and gauges of a process, by name (`<node>.<what>`, e.g.
/// `readings.errors.truncated`).
#[derive(Clone, Debug, Default)]
pub struct Metrics(Arc<Mutex<Registry>>);

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The counter called `name`, created at zero on first use. Every worker asking
    /// for the same name shares one counter.
    pub fn counter(&self, name: impl Into<String>) -> Counter {
        self.lock().counters.entry(name.into()).or_default().clone()
    }

    /// The gauge called `name`, created at zero on first use; shared like a counter.
    pub fn gauge(&self, name: impl Into<String>) -> Gauge {
        self.lock().gauges.entry(name.into()).or_default().clone()
    }

    /// A snapshot of every counter, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let map = self.lock();
        map.counters
            .iter()
            .map(|(k, v)| (k.clone(), v.get()))
            .collect()
    }

    /// A snapshot of every gauge, sorted by name.
    pub fn gauges(&self) -> Vec<(String, i64)> {
        let map = self.lock();
        map.gauges
            .iter()
            .map(|(k, v)| (k.clone(), v.get()))
            .collect()
    }
}

/// The process gauge set to 1 once every node has started (before the workers run): a
/// name without a node, so no node's metric can take it.
pub const STARTED: &str = "started";

/// The name of node `node`'s counter `what`: `<node>.<what>` (e.g. `readings.errors.short`).
/// Every metric of a node is named here, so a dashboard or a test can rely on one scheme.
pub fn metric_name(node: &str, what: &str) -> String {
    format!("{node}.{what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_shares_sum_over_workers_and_leave_on_drop() {
        let metrics = Metrics::default();
        let mut a = GaugeShare::new(metrics.gauge("w.open_windows"));
        let mut b = GaugeShare::new(metrics.gauge("w.open_windows"));
        a.set(3);
        b.set(4);
        a.set(1);
        assert_eq!(metrics.gauge("w.open_windows").get(), 5);
        drop(b);
        assert_eq!(metrics.gauges(), vec![("w.open_windows".to_string(), 1)]);
    }

    #[test]
    fn a_min_gauge_shows_the_slowest_worker_that_has_a_value() {
        let metrics = Metrics::default();
        let shared = MinGauge::new(metrics.gauge("d.watermark_ms"), 2);
        let (w0, w1) = (shared.for_worker(0), shared.for_worker(1));
        w0.set(20);
        assert_eq!(metrics.gauge("d.watermark_ms").get(), 20);
        w1.set(10);
        w0.set(30);
        assert_eq!(metrics.gauge("d.watermark_ms").get(), 10);
    }
}
