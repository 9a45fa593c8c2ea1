//! Input held back at a checkpoint barrier.

use std::collections::VecDeque;

use super::NodeState;
use crate::operator::Time;

/// Batches that arrived at or after the next checkpoint before the input frontier
/// passed it: applying them now would put records after the cut into the state saved
/// for it. `K` is what the operator keeps to emit them later (its capabilities).
///
/// ```
/// use std::sync::Arc;
/// use smartgrid_runtime::checkpoint::{Checkpoints, Held};
///
/// let checkpoints = Arc::new(Checkpoints::disabled());
/// let state = checkpoints.node("means", 0, 1);
/// let mut held: Held<(), u32> = Held::default();
/// assert!(!state.holds(10), "no checkpoint announced: nothing is held");
/// held.hold(10, (), vec![1, 2]);
/// let released: Vec<_> = held.release(&state).collect();
/// assert_eq!(released, vec![(10, (), vec![1, 2])]);
/// ```
#[derive(Debug)]
pub struct Held<K, D> {
    batches: VecDeque<(Time, K, Vec<D>)>,
}

impl<K, D> Default for Held<K, D> {
    fn default() -> Self {
        Held {
            batches: VecDeque::new(),
        }
    }
}

impl<K, D> Held<K, D> {
    /// Keep a batch at `time` until [`release`](Self::release)d.
    pub fn hold(&mut self, time: Time, token: K, data: Vec<D>) {
        self.batches.push_back((time, token, data));
    }

    /// Hold the batch `data` at `time` if `state` has a checkpoint pending at or before
    /// it, with the token `retain` makes (the batch's capabilities; `None`: nothing to
    /// emit it with, and nothing is held). Returns whether the batch is taken: the
    /// caller applies it now only if not.
    pub fn hold_if_pending(
        &mut self,
        state: Option<&NodeState>,
        time: Time,
        retain: impl FnOnce() -> Option<K>,
        data: &mut Vec<D>,
    ) -> bool {
        if !state.is_some_and(|s| s.holds(time)) {
            return false;
        }
        if let Some(token) = retain() {
            self.hold(time, token, std::mem::take(data));
        }
        true
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The time of the earliest batch held (`None`: nothing is).
    pub fn earliest(&self) -> Option<Time> {
        self.batches.iter().map(|(t, _, _)| *t).min()
    }

    /// The held batches the next barrier of `state` no longer holds (all of them when
    /// none is pending), in arrival order.
    pub fn release(&mut self, state: &NodeState) -> impl Iterator<Item = (Time, K, Vec<D>)> {
        let barrier = state.barrier();
        let (go, stay): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.batches)
            .into_iter()
            .partition(|(t, _, _)| barrier.is_none_or(|b| *t < b));
        self.batches = stay;
        go.into_iter()
    }
}
