//! Process-wide counters: readings decoded, errors per reason, late records, …
//!
//! A counter is an `Arc<AtomicU64>` fetched once when an operator is rendered, so the
//! hot path only does a relaxed add.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// All counters of a process, by name (`<node>.<what>`, e.g. `readings.errors.truncated`).
#[derive(Clone, Debug, Default)]
pub struct Metrics(Arc<Mutex<BTreeMap<String, Counter>>>);

impl Metrics {
    /// The counter called `name`, created at zero on first use. Every worker asking
    /// for the same name shares one counter.
    pub fn counter(&self, name: impl Into<String>) -> Counter {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(name.into()).or_default().clone()
    }

    /// A snapshot of every counter, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), v.get())).collect()
    }
}

/// The name of node `node`'s counter `what`: `<node>.<what>` (e.g. `readings.errors.short`).
/// Every metric of a node is named here, so a dashboard or a test can rely on one scheme.
pub fn metric_name(node: &str, what: &str) -> String {
    format!("{node}.{what}")
}
