//! The timely operator behind `compare_with_lag`: a symmetric join of predictions with
//! the actual windows they predicted, by (sensor, target time), with bounded state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use smartgrid_runtime::checkpoint::{AT_STOP, Held, NodeState};
use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::operator::{Readings, Time};
use smartgrid_runtime::{Reading, Row, SensorId};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;
use timely::progress::frontier::AntichainRef;

/// When a prediction's error is too large.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    /// Over when `|actual − predicted|` exceeds this (W).
    pub absolute: Option<f64>,
    /// Over when `|actual − predicted| / |actual|` exceeds this.
    pub relative: Option<f64>,
    /// With both set: over only when both are exceeded (`true`), or when either is.
    pub all: bool,
}

impl Threshold {
    /// Whether a prediction with this error is over the threshold.
    pub fn exceeded(&self, predicted: f64, actual: f64) -> bool {
        let error = (actual - predicted).abs();
        if error.is_nan() {
            return true; // a NaN prediction or actual is never "good"
        }
        let checks = [
            self.absolute.map(|a| error > a),
            self.relative.map(|r| error > r * actual.abs()),
        ];
        let mut given = checks.iter().flatten().peekable();
        if given.peek().is_none() {
            return true;
        }
        if self.all {
            given.all(|&c| c)
        } else {
            given.any(|&c| c)
        }
    }
}

/// What `compare_with_lag` emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// Triplets over the threshold, plus the sampled good ones:
    /// `[predicted, actual, error, target_time, model_version, flagged, features…]`.
    Triplets,
    /// Every compared prediction:
    /// `[predicted, actual, error, relative_error, target_time, model_version]`.
    Residuals,
}

/// How to compare.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Positions of `predicted`, `target_time` and `model_version` in a prediction row.
    pub prediction: [usize; 3],
    /// Positions of the prediction's features, copied into triplets.
    pub features: Vec<usize>,
    /// Positions of the actual window's fields that add up to the actual value.
    pub actual: Vec<usize>,
    /// When a prediction is wrong.
    pub threshold: Threshold,
    /// The share of good predictions emitted as triplets too (0 to 1).
    pub sample_good: f64,
    /// How long, in event time past its target, a prediction waits for its actual.
    pub timeout_ms: i64,
    /// What to emit.
    pub emit: Emit,
}

/// What a `compare_with_lag` operator counts.
#[derive(Clone, Debug, Default)]
pub struct CompareCounters {
    /// Predictions joined with their actual.
    pub compared: Counter,
    /// Predictions over the threshold.
    pub over: Counter,
    /// Predictions whose actual never came before the timeout.
    pub expired: Counter,
}

/// Adds `compare_with_lag` to a stream of predictions.
pub trait CompareWithLagExt<'s> {
    /// Join each prediction with the actual window at its target time for the same
    /// sensor. Both streams must be partitioned by sensor (see
    /// [`route_by_sensor`](smartgrid_runtime::operator::route_by_sensor)). A prediction whose actual has not come when the actuals' event time passes
    /// its target plus the timeout is dropped and counted; actuals are kept just as long
    /// for a prediction still on its way, so the state stays bounded.
    fn compare_with_lag(
        self,
        actuals: Readings<'s>,
        comparison: Comparison,
        counters: CompareCounters,
        name: &str,
    ) -> Readings<'s>;

    /// [`compare_with_lag`](Self::compare_with_lag), keeping what waits to be joined in
    /// the checkpoints of `state` (see `smartgrid_runtime::checkpoint`).
    fn compare_with_lag_checkpointed(
        self,
        actuals: Readings<'s>,
        comparison: Comparison,
        counters: CompareCounters,
        name: &str,
        state: Option<NodeState>,
    ) -> Readings<'s>;
}

/// One sensor-time key; `BTreeMap` order makes expiry a walk from the front.
type Key = (i64, SensorId);

impl<'s> CompareWithLagExt<'s> for Readings<'s> {
    fn compare_with_lag(
        self,
        actuals: Readings<'s>,
        comparison: Comparison,
        counters: CompareCounters,
        name: &str,
    ) -> Readings<'s> {
        self.compare_with_lag_checkpointed(actuals, comparison, counters, name, None)
    }

    fn compare_with_lag_checkpointed(
        self,
        actuals: Readings<'s>,
        comparison: Comparison,
        counters: CompareCounters,
        name: &str,
        mut state: Option<NodeState>,
    ) -> Readings<'s> {
        const FINGERPRINT: &str = "compare_with_lag v1";
        self.binary_frontier(
            actuals,
            Pipeline,
            Pipeline,
            name,
            move |_capability, _info| {
                let mut join = Join::restore(state.as_ref(), FINGERPRINT);
                let mut held_predictions: Held<Capability<Time>, Reading> = Held::default();
                let mut held_actuals: Held<Capability<Time>, Reading> = Held::default();
                let c = comparison;
                move |(predictions, prediction_frontier), (actuals, actual_frontier), output| {
                    let mut tally = Tally::default();
                    let state_now = state.as_ref();
                    for (side, input, held) in [
                        (Side::Prediction, &mut *predictions, &mut held_predictions),
                        (Side::Actual, &mut *actuals, &mut held_actuals),
                    ] {
                        input.for_each(|capability, data| {
                            let Some(&time) = capability.least() else {
                                return;
                            };
                            let retain = || capability.retain_least(0);
                            if held.hold_if_pending(state_now, time, retain, data) {
                                return;
                            }
                            let mut session = output.session(&capability);
                            for r in data.drain(..) {
                                join.add(side, &c, r, &mut tally, |out| session.give(out));
                            }
                        });
                    }
                    let mut kept = false;
                    if let Some(state) = state.as_mut() {
                        let frontiers =
                            [prediction_frontier.frontier(), actual_frontier.frontier()];
                        loop {
                            let held_from = [&held_predictions, &held_actuals]
                                .iter()
                                .filter_map(|h| h.earliest())
                                .min();
                            let Some(time) = state.due_latest(&frontiers, held_from) else {
                                break;
                            };
                            state.take(time, FINGERPRINT, &join.save());
                            let held = [
                                (Side::Prediction, &mut held_predictions),
                                (Side::Actual, &mut held_actuals),
                            ];
                            for (side, held) in held {
                                for (_, cap, data) in held.release(state) {
                                    let mut session = output.session(&cap);
                                    for r in data {
                                        join.add(side, &c, r, &mut tally, |out| session.give(out));
                                    }
                                }
                            }
                        }
                        if frontiers.iter().all(|f| f.is_empty()) {
                            if state.keeps_on_stop() {
                                state.take(AT_STOP, FINGERPRINT, &join.save());
                                kept = true;
                            } else {
                                state.finished();
                            }
                        }
                    }
                    counters.compared.add(tally.compared);
                    counters.over.add(tally.over);
                    if kept {
                        // Saved for the next run, not expired.
                        return;
                    }
                    // Event time the other side can no longer reach: past it, nothing
                    // waiting can be matched.
                    let expired =
                        expire(&mut join.waiting, actual_frontier.frontier(), c.timeout_ms);
                    counters.expired.add(expired);
                    expire(
                        &mut join.early_actuals,
                        prediction_frontier.frontier(),
                        c.timeout_ms,
                    );
                }
            },
        )
    }
}

/// What one activation counted.
#[derive(Default)]
struct Tally {
    compared: u64,
    over: u64,
}

/// The join's state: predictions waiting for their actual, and actuals that came first.
#[derive(Default, Serialize, Deserialize)]
struct Join {
    waiting: BTreeMap<Key, Reading>,
    early_actuals: BTreeMap<Key, f64>,
}

/// Which input a record came from.
#[derive(Clone, Copy)]
enum Side {
    Prediction,
    Actual,
}

impl Join {
    /// Add a record from `side`: compared and emitted with `give` if its other half is
    /// waiting, else kept until it comes.
    fn add(
        &mut self,
        side: Side,
        c: &Comparison,
        record: Reading,
        tally: &mut Tally,
        give: impl FnOnce(Reading),
    ) {
        let compared = match side {
            Side::Prediction => {
                let target = record
                    .values
                    .get(c.prediction[1])
                    .copied()
                    .unwrap_or(f64::NAN);
                let key = (target as i64, record.sensor);
                match self.early_actuals.remove(&key) {
                    Some(actual) => Some((record, actual)),
                    None => {
                        self.waiting.insert(key, record);
                        None
                    }
                }
            }
            Side::Actual => {
                let actual: f64 = c
                    .actual
                    .iter()
                    .map(|&i| record.values.get(i).copied().unwrap_or(f64::NAN))
                    .sum();
                let key = (record.time_ms, record.sensor);
                match self.waiting.remove(&key) {
                    Some(p) => Some((p, actual)),
                    None => {
                        self.early_actuals.insert(key, actual);
                        None
                    }
                }
            }
        };
        if let Some((prediction, actual)) = compared {
            tally.compared += 1;
            if let Some(out) = c.compare(&prediction, actual, &mut tally.over) {
                give(out);
            }
        }
    }

    /// What the previous run saved, of the sensors this worker owns.
    fn restore(state: Option<&NodeState>, fingerprint: &str) -> Self {
        let mut join = Join::default();
        let Some(state) = state else {
            return join;
        };
        for part in state.restored(fingerprint) {
            match bincode::deserialize::<Join>(&part) {
                Ok(saved) => {
                    join.waiting.extend(
                        saved
                            .waiting
                            .into_iter()
                            .filter(|((_, s), _)| state.owns(*s)),
                    );
                    join.early_actuals.extend(
                        saved
                            .early_actuals
                            .into_iter()
                            .filter(|((_, s), _)| state.owns(*s)),
                    );
                }
                Err(e) => tracing::warn!("a saved comparison state is damaged and skipped: {e}"),
            }
        }
        join
    }

    fn save(&self) -> Vec<u8> {
        bincode::serialize(self).expect("the join state serializes")
    }
}

/// Drop entries whose key time plus `timeout` the frontier has passed; returns how many.
fn expire<V>(state: &mut BTreeMap<Key, V>, frontier: AntichainRef<'_, Time>, timeout: i64) -> u64 {
    let mut dropped = 0;
    while let Some(entry) = state.first_entry() {
        let (time, _) = *entry.key();
        let deadline = u64::try_from(time.saturating_add(timeout)).unwrap_or(0);
        // An empty frontier means the input ended: nothing more can come.
        if frontier.iter().any(|&f| f <= deadline) {
            break;
        }
        entry.remove();
        dropped += 1;
    }
    dropped
}

impl Comparison {
    /// The record to emit for prediction `p` against `actual` (`None` when nothing is
    /// emitted), counting it in `over` when it is over the threshold. A triplet keeps the
    /// prediction's event time; a residual is stamped at the target time, beside its
    /// actual.
    fn compare(&self, p: &Reading, actual: f64, over: &mut u64) -> Option<Reading> {
        let [at_predicted, at_target, at_version] = self.prediction;
        let get = |i: usize| p.values.get(i).copied().unwrap_or(f64::NAN);
        let (predicted, target, version) = (get(at_predicted), get(at_target), get(at_version));
        let error = actual - predicted;
        let flagged = self.threshold.exceeded(predicted, actual);
        *over += u64::from(flagged);
        let mut values = Row::new();
        let target_ms = target as i64;
        let time_ms = match self.emit {
            Emit::Residuals => target_ms,
            Emit::Triplets => p.time_ms,
        };
        match self.emit {
            Emit::Residuals => {
                let relative = if actual != 0.0 {
                    error.abs() / actual.abs()
                } else {
                    f64::NAN
                };
                for v in [predicted, actual, error, relative, target, version] {
                    values.push(v);
                }
            }
            Emit::Triplets => {
                if !flagged && !sampled(p.sensor, target_ms, self.sample_good) {
                    return None;
                }
                for v in [
                    predicted,
                    actual,
                    error,
                    target,
                    version,
                    f64::from(u8::from(flagged)),
                ] {
                    values.push(v);
                }
                for &i in &self.features {
                    values.push(get(i));
                }
            }
        }
        Some(Reading {
            sensor: p.sensor,
            time_ms,
            values,
        })
    }
}

/// A uniform, deterministic sample: the same (sensor, time) is kept on every run and
/// for any number of workers.
fn sampled(sensor: SensorId, time_ms: i64, share: f64) -> bool {
    if share <= 0.0 {
        return false;
    }
    // SplitMix64 finaliser over the sensor's hash and the time: well mixed, cheap.
    let mut z = sensor.route_hash() ^ (time_ms as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    ((z >> 11) as f64 / (1u64 << 53) as f64) < share
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_combine_as_configured() {
        let both = Threshold {
            absolute: Some(100.0),
            relative: Some(0.1),
            all: true,
        };
        assert!(both.exceeded(1000.0, 1200.0), "200 W and 17 %");
        assert!(!both.exceeded(1000.0, 1080.0), "80 W is under 100 W");
        assert!(!both.exceeded(5000.0, 5150.0), "150 W is only 3 %");
        let either = Threshold { all: false, ..both };
        assert!(either.exceeded(5000.0, 5150.0));
        assert!(!either.exceeded(1000.0, 1050.0));
        let none = Threshold {
            absolute: None,
            relative: None,
            all: true,
        };
        assert!(
            none.exceeded(1.0, 1.0),
            "no threshold: every prediction is sent"
        );
        assert!(both.exceeded(f64::NAN, 1.0));
    }

    #[test]
    fn the_sample_is_uniform_and_deterministic() {
        let sensor = SensorId::new("s").expect("short");
        let kept = (0..100_000)
            .filter(|&t| sampled(sensor, t * 10_000, 0.05))
            .count();
        assert!((4_500..5_500).contains(&kept), "{kept} of 100000 at 5 %");
        let again = (0..100_000)
            .filter(|&t| sampled(sensor, t * 10_000, 0.05))
            .count();
        assert_eq!(kept, again);
        assert_eq!((0..1000).filter(|&t| sampled(sensor, t, 0.0)).count(), 0);
        assert_eq!((0..1000).filter(|&t| sampled(sensor, t, 1.0)).count(), 1000);
    }
}
