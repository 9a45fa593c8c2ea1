//! What a `predict` node's rollout controller and its operators share: the model being
//! evaluated beside the active one (a candidate in shadow, or the previous model while
//! a promotion is watched) and the live errors of both.
//!
//! The operators never wait on the controller: they read the challenger once per
//! activation (a clone of an `Arc` under a read lock) and add one activation's errors
//! to the tally under a short lock. Each evaluation has an epoch; errors measured for
//! an earlier one (predictions made before a swap) are dropped, so a tally only ever
//! compares the two models it was opened for, on the same windows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::super::slot::LoadedModel;

/// The model evaluated beside the active one, for one epoch.
#[derive(Clone, Debug)]
pub struct Challenger {
    /// The model.
    pub model: Arc<LoadedModel>,
    /// The evaluation it belongs to.
    pub epoch: u64,
}

/// A sum of absolute errors.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ErrorSum {
    /// Σ |actual − predicted|.
    pub abs: f64,
    /// How many predictions met their actual window.
    pub count: u64,
}

impl ErrorSum {
    /// Adds one comparison.
    pub fn add(&mut self, error: f64) {
        self.abs += error.abs();
        self.count += 1;
    }

    /// The mean absolute error (NaN with no comparison).
    pub fn mae(&self) -> f64 {
        self.abs / self.count as f64
    }
}

/// The live errors of one evaluation: both models on the same windows.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    /// The epoch the errors belong to.
    pub epoch: u64,
    /// The active model's errors.
    pub active: ErrorSum,
    /// The challenger's errors.
    pub challenger: ErrorSum,
    /// The earliest and latest target time (event time, ms) compared.
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
}

impl Tally {
    /// One window met by both models' predictions at `target_ms`.
    pub fn add(&mut self, target_ms: i64, active_error: f64, challenger_error: f64) {
        self.active.add(active_error);
        self.challenger.add(challenger_error);
        self.first_ms = Some(self.first_ms.map_or(target_ms, |f| f.min(target_ms)));
        self.last_ms = Some(self.last_ms.map_or(target_ms, |l| l.max(target_ms)));
    }

    /// How much event time the comparisons span, in ms.
    pub fn span_ms(&self) -> i64 {
        match (self.first_ms, self.last_ms) {
            (Some(f), Some(l)) => l - f,
            _ => 0,
        }
    }

    /// Folds another tally of the same epoch in.
    fn merge(&mut self, other: &Tally) {
        self.active.abs += other.active.abs;
        self.active.count += other.active.count;
        self.challenger.abs += other.challenger.abs;
        self.challenger.count += other.challenger.count;
        for t in [other.first_ms, other.last_ms].into_iter().flatten() {
            self.first_ms = Some(self.first_ms.map_or(t, |f| f.min(t)));
            self.last_ms = Some(self.last_ms.map_or(t, |l| l.max(t)));
        }
    }
}

/// Shared between the controller (which opens and closes evaluations) and the node's
/// operators on every worker (which add errors).
#[derive(Debug, Default)]
pub struct Evaluation {
    challenger: RwLock<Option<Challenger>>,
    epoch: AtomicU64,
    tally: Mutex<Tally>,
    /// The most recent feature row a worker built: the smoke test's realistic input.
    last_row: Mutex<Option<Vec<f64>>>,
}

impl Evaluation {
    /// The challenger to evaluate in this activation, if any.
    pub fn challenger(&self) -> Option<Challenger> {
        self.challenger
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Start evaluating `model` beside the active model (`None`: stop evaluating); the
    /// tally starts empty.
    pub fn open(&self, model: Option<Arc<LoadedModel>>) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        *self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Tally {
            epoch,
            ..Tally::default()
        };
        *self
            .challenger
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            model.map(|model| Challenger { model, epoch });
    }

    /// Adds one activation's comparisons, unless their evaluation was closed meanwhile.
    pub fn add(&self, part: &Tally) {
        if part.active.count == 0 {
            return;
        }
        let mut tally = self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tally.epoch == part.epoch {
            tally.merge(part);
        }
    }

    /// The current tally.
    pub fn tally(&self) -> Tally {
        *self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remember `row` as the latest feature row (cheap: once per activation).
    pub fn remember_row(&self, row: &[f64]) {
        if let Ok(mut last) = self.last_row.try_lock() {
            match last.as_mut() {
                Some(v) => {
                    v.clear();
                    v.extend_from_slice(row);
                }
                None => *last = Some(row.to_vec()),
            }
        }
    }

    /// The latest feature row, if any window was predicted yet.
    pub fn last_row(&self) -> Option<Vec<f64>> {
        self.last_row
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_a_closed_evaluation_are_dropped() {
        let evaluation = Evaluation::default();
        evaluation.open(None);
        let stale = evaluation.tally().epoch;
        evaluation.open(None);
        let mut part = Tally {
            epoch: stale,
            ..Tally::default()
        };
        part.add(10_000, 3.0, -1.0);
        evaluation.add(&part);
        assert_eq!(evaluation.tally().active.count, 0);
        part.epoch = evaluation.tally().epoch;
        part.add(30_000, 1.0, 1.0);
        evaluation.add(&part);
        let tally = evaluation.tally();
        assert_eq!(tally.active.count, 2);
        assert_eq!(tally.active.mae(), 2.0);
        assert_eq!(tally.challenger.mae(), 1.0);
        assert_eq!(tally.span_ms(), 20_000);
    }
}
