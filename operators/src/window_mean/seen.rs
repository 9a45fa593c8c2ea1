//! The event times one sensor's readings were counted at, so a redelivered reading (an
//! MQTT QoS-1 resend after a reconnect, a replayed file) is counted once.
//!
//! Readings of one sensor arrive nearly in time order, so the times are kept as one
//! sorted run: a time after the last is a push, and only an out-of-order time pays a
//! binary search (and, if new, an insert). Times of windows that can no longer change
//! are dropped from the front by moving a start index; the run is compacted once half of
//! it is dropped, so pruning never shifts the whole run at every window.

/// The times a sensor was counted at, sorted, each once.
#[derive(Clone, Debug, Default)]
pub(super) struct Seen {
    /// Sorted ascending from `head`; what is before `head` was pruned.
    times: Vec<i64>,
    head: usize,
}

/// Where a new time goes, from [`Seen::find`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Vacancy(usize);

impl Seen {
    /// Where `time` would go, or `None` if it is already here.
    #[inline]
    pub(super) fn find(&self, time: i64) -> Option<Vacancy> {
        match self.times.last() {
            // The common case: a sensor's next reading.
            Some(&last) if time > last => Some(Vacancy(self.times.len())),
            None => Some(Vacancy(0)),
            Some(_) => match self.times[self.head..].binary_search(&time) {
                Ok(_) => None,
                Err(at) => Some(Vacancy(self.head + at)),
            },
        }
    }

    /// Record `time` where [`find`](Self::find) said, with nothing changed in between.
    #[inline]
    pub(super) fn insert(&mut self, time: i64, at: Vacancy) {
        if at.0 == self.times.len() {
            self.times.push(time);
        } else {
            self.times.insert(at.0, time);
        }
    }

    /// Forget the times before `floor`.
    pub(super) fn prune(&mut self, floor: i64) {
        self.head += self.times[self.head..].partition_point(|&t| t < floor);
        if self.head == self.times.len() {
            self.times.clear();
            self.head = 0;
        } else if self.head * 2 >= self.times.len() {
            self.times.drain(..self.head);
            self.head = 0;
        }
    }

    /// The times in `[from, to)`, in order.
    #[allow(dead_code)] // for `state`, which checkpoints will call
    pub(super) fn between(&self, from: i64, to: i64) -> &[i64] {
        let live = &self.times[self.head..];
        let a = live.partition_point(|&t| t < from);
        let b = live.partition_point(|&t| t < to);
        &live[a..b.max(a)]
    }

    /// Whether no time is kept.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.head == self.times.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seen: &mut Seen, t: i64) -> bool {
        match seen.find(t) {
            Some(at) => {
                seen.insert(t, at);
                true
            }
            None => false,
        }
    }

    #[test]
    fn each_time_is_new_once_in_any_order_and_pruning_keeps_the_rest() {
        let mut seen = Seen::default();
        for t in [10, 20, 15, 30, 5] {
            assert!(record(&mut seen, t), "{t}");
        }
        for t in [10, 20, 15, 30, 5] {
            assert!(!record(&mut seen, t), "{t} again");
        }
        assert_eq!(seen.between(6, 30), [10, 15, 20]);
        seen.prune(12);
        assert_eq!(seen.between(i64::MIN, i64::MAX), [15, 20, 30]);
        // A pruned time counts as new (its windows are gone), a kept one does not.
        assert!(record(&mut seen, 10));
        assert!(!record(&mut seen, 20));
        assert!(record(&mut seen, 25));
        assert_eq!(seen.between(i64::MIN, i64::MAX), [10, 15, 20, 25, 30]);
        seen.prune(31);
        assert!(seen.is_empty());
        assert!(record(&mut seen, 1));
    }

    #[test]
    fn pruning_bit_by_bit_compacts_and_stays_sorted() {
        let mut seen = Seen::default();
        for t in 0..1_000 {
            record(&mut seen, t);
        }
        for floor in (0..1_000).step_by(7) {
            seen.prune(floor);
            assert!(seen.times.len() <= 2 * (1_000 - floor as usize) + 1);
            assert_eq!(seen.between(i64::MIN, i64::MAX).first(), Some(&floor));
        }
        assert!(!record(&mut seen, 999));
        assert!(record(&mut seen, 1_000));
    }
}
