//! The bounded training store: the newest `capacity` triplets, keyed by sensor and
//! time so that the same triplet read twice (a file read again, a blob and an MQTT
//! message of the same record) counts once, and ordered by time so that the rows do
//! not depend on which source delivered first — the same triplets give the same
//! model, byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use super::triplet::{BadTriplet, Triplet};

/// Triplets by (time, sensor); the oldest leave first.
#[derive(Debug, Default)]
pub struct Store {
    capacity: usize,
    triplets: BTreeMap<(i64, String), Triplet>,
    /// Triplets added since the last [`Store::take_new`] (for the service's trigger).
    new: u64,
    /// Bad records by reason.
    pub bad: BTreeMap<String, u64>,
    /// Places of the first few bad records (shown once, not every one of them).
    pub bad_examples: BTreeSet<String>,
}

/// How many bad records are shown with their place.
const EXAMPLES: usize = 5;

impl Store {
    pub fn new(capacity: usize) -> Self {
        Store {
            capacity: capacity.max(1),
            ..Store::default()
        }
    }

    /// Add one parsed record; `place` names it in a message if it is bad.
    pub fn add(&mut self, parsed: Result<Triplet, BadTriplet>, place: impl FnOnce() -> String) {
        match parsed {
            Ok(t) => self.insert(t),
            Err(bad) => {
                *self.bad.entry(bad.reason()).or_default() += 1;
                if self.bad_examples.len() < EXAMPLES {
                    let shown = format!("{}: {bad}", place());
                    eprintln!("skipping a bad triplet: {shown}");
                    self.bad_examples.insert(shown);
                }
            }
        }
    }

    fn insert(&mut self, t: Triplet) {
        let key = (t.time_ms, t.sensor.clone());
        if self.triplets.insert(key, t).is_none() {
            self.new += 1;
        }
        while self.triplets.len() > self.capacity {
            self.triplets.pop_first();
        }
    }

    /// Triplets, oldest first.
    pub fn triplets(&self) -> impl Iterator<Item = &Triplet> {
        self.triplets.values()
    }

    /// Triplets added since the last call.
    pub fn take_new(&mut self) -> u64 {
        std::mem::take(&mut self.new)
    }

    /// Bad records in all.
    pub fn bad_total(&self) -> u64 {
        self.bad.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(time_ms: i64, sensor: &str) -> Triplet {
        Triplet {
            sensor: sensor.into(),
            time_ms,
            flagged: true,
            actual: 1.0,
            features: vec![],
            current: 0.0,
        }
    }

    #[test]
    fn keeps_the_newest_and_counts_a_duplicate_once() {
        let mut store = Store::new(2);
        for (time, sensor) in [(3, "a"), (1, "a"), (2, "b"), (3, "a")] {
            store.add(Ok(t(time, sensor)), String::new);
        }
        let kept: Vec<_> = store.triplets().map(|t| t.time_ms).collect();
        assert_eq!(kept, [2, 3]);
        assert_eq!(store.take_new(), 3);
        store.add(Err(BadTriplet::Missing("x".into())), || "line 1".into());
        assert_eq!(store.bad_total(), 1);
    }
}
