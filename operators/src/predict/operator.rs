//! The timely operator behind `predict`.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use smartgrid_runtime::checkpoint::{AT_STOP, Held, NodeState};
use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::operator::{Readings, Time};
use smartgrid_runtime::{Reading, Row, SensorId};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use super::features::{FeaturePlan, History};
use super::rollout::{Challenger, Evaluation, Tally};
use super::slot::{LoadedModel, ModelSlot};

/// What a `predict` node with `updates:` adds to its operator: the live error of the
/// active model and of a challenger, measured against the actual windows.
#[derive(Clone, Debug)]
pub struct LiveErrors {
    /// Shared with the node's rollout controller.
    pub evaluation: Arc<Evaluation>,
    /// The input fields whose sum is the actual value a prediction is compared with.
    pub actual: Vec<usize>,
}

/// A prediction waiting for its actual window, made while a challenger was evaluated.
#[derive(Clone, Copy, Debug)]
struct Pending {
    target_ms: i64,
    active: f64,
    challenger: f64,
    epoch: u64,
}

/// Per sensor, at most this many predictions wait for their window (a horizon of up to
/// this many steps); older ones are dropped uncompared.
const MAX_PENDING: usize = 64;

/// What a prediction needs besides the model.
#[derive(Clone, Debug)]
pub struct Predictor {
    /// How to build the feature vector.
    pub features: Arc<FeaturePlan>,
    /// How far ahead the predicted window starts, in ms.
    pub horizon_ms: i64,
    /// The spacing of the input windows, in ms: lag `k` is the window `k × step` earlier.
    pub step_ms: i64,
    /// Predict with missing (NaN) lags instead of waiting for a full history.
    pub predict_with_missing_lags: bool,
    /// Input fields whose sum the model's output is added to (a model of the change);
    /// empty: the model predicts the value itself.
    pub relative_to: Vec<usize>,
}

/// What a `predict` operator counts.
#[derive(Clone, Debug, Default)]
pub struct PredictCounters {
    /// Predictions made.
    pub predictions: Counter,
    /// Windows with too little history to predict from.
    pub short_history: Counter,
    /// Windows emitted again (late readings merged in): their history is updated, no
    /// second prediction is made.
    pub corrections: Counter,
}

/// Adds `predict` to streams of window means.
pub trait PredictExt<'s> {
    /// For each window, the model's prediction for the window `horizon` later, as a reading
    /// `[predicted, target_time, model_version, features…]` at the input window's start.
    /// The input must be partitioned by sensor (see
    /// [`route_by_sensor`](smartgrid_runtime::operator::route_by_sensor)), so each
    /// sensor's history is on one worker.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use smartgrid_operators::predict::{FeaturePlan, FeaturesConfig, LoadedModel, ModelSlot,
    ///     PredictCounters, PredictExt, Predictor};
    /// use smartgrid_runtime::{Reading, Row, Schema, SensorId};
    /// use smartgrid_runtime::spec::Spanned;
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use timely::dataflow::operators::capture::Event;
    ///
    /// let config = FeaturesConfig {
    ///     fields: vec![Spanned::new("p".to_string(), Default::default())],
    ///     ..Default::default()
    /// };
    /// let features = FeaturePlan::new(&config, &Schema::new(["p"])).expect("p is an input field");
    /// // A LightGBM model with one split: p ≤ 500 → 400, else 900.
    /// let text = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
    ///     max_feature_idx=0\nobjective=regression\nfeature_names=p\nfeature_infos=[0:1000]\n\
    ///     tree_sizes=1\n\nTree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nsplit_gain=1\n\
    ///     threshold=500\ndecision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=400 900\n\
    ///     leaf_weight=1 1\nleaf_count=1 1\ninternal_value=0\ninternal_weight=0\n\
    ///     internal_count=2\nis_linear=0\nshrinkage=1\n\n\nend of trees\n";
    /// let model = smartgrid_models::Model::parse(text.as_bytes()).expect("a model");
    /// let model = LoadedModel::new(model, features.names()).expect("same features");
    /// let slot = Arc::new(ModelSlot::new(model, features.names().to_vec()));
    /// let predictor = Predictor {
    ///     features: Arc::new(features),
    ///     horizon_ms: 10_000,
    ///     step_ms: 10_000,
    ///     predict_with_missing_lags: false,
    ///     relative_to: vec![],
    /// };
    /// let sensor = SensorId::new("meter-1").expect("short name");
    /// let captured = timely::example(move |scope| {
    ///     vec![Reading { sensor, time_ms: 0, values: Row::from_iter([250.0]) }]
    ///         .to_stream(scope)
    ///         .container::<Vec<_>>()
    ///         .predict(predictor, slot, PredictCounters::default(), "predictions")
    ///         .capture()
    /// });
    /// let predictions: Vec<Reading> = captured
    ///     .try_iter()
    ///     .filter_map(|event| match event {
    ///         Event::Messages(_, data) => Some(data),
    ///         Event::Progress(_) => None,
    ///     })
    ///     .flatten()
    ///     .collect();
    /// // [predicted, target_time, model_version, p]
    /// assert_eq!(predictions[0].values[0], 400.0);
    /// assert_eq!(predictions[0].values[1], 10_000.0);
    /// ```
    fn predict(
        self,
        predictor: Predictor,
        slot: Arc<ModelSlot>,
        counters: PredictCounters,
        name: &str,
    ) -> Readings<'s>;

    /// [`predict`](Self::predict), keeping the histories in the checkpoints of `state`
    /// (see `smartgrid_runtime::checkpoint`: restored at start, so predictions go on
    /// across a restart without waiting for new lags), and measuring the live error of
    /// the active model and of `live`'s challenger, if any (the challenger's
    /// predictions are compared, never emitted).
    fn predict_evaluated(
        self,
        predictor: Predictor,
        slot: Arc<ModelSlot>,
        counters: PredictCounters,
        name: &str,
        state: Option<NodeState>,
        live: Option<LiveErrors>,
    ) -> Readings<'s>;
}

impl<'s> PredictExt<'s> for Readings<'s> {
    fn predict(
        self,
        predictor: Predictor,
        slot: Arc<ModelSlot>,
        counters: PredictCounters,
        name: &str,
    ) -> Readings<'s> {
        self.predict_evaluated(predictor, slot, counters, name, None, None)
    }

    fn predict_evaluated(
        self,
        predictor: Predictor,
        slot: Arc<ModelSlot>,
        counters: PredictCounters,
        name: &str,
        mut state: Option<NodeState>,
        live: Option<LiveErrors>,
    ) -> Readings<'s> {
        let fingerprint = format!(
            "predict v1 step={} features={:?}",
            predictor.step_ms, predictor.features
        );
        let input = self;
        input.unary_frontier(Pipeline, name, move |_capability, _info| {
            let mut histories = Histories::restore(state.as_ref(), &fingerprint);
            let mut held: Held<Capability<Time>, Reading> = Held::default();
            move |(input, frontier), output| {
                // One model per activation: every prediction of a batch names the version
                // that made it, and a swap lands between batches.
                let model = slot.current();
                let challenger = live.as_ref().and_then(|l| l.evaluation.challenger());
                let mut run = Run {
                    predictor: &predictor,
                    model: &model,
                    made: 0,
                    short: 0,
                    corrected: 0,
                    actual: live.as_ref().map(|l| l.actual.as_slice()),
                    challenger: challenger.as_ref(),
                    compared: Tally {
                        epoch: challenger.as_ref().map_or(0, |c| c.epoch),
                        ..Tally::default()
                    },
                };
                input.for_each(|capability, data| {
                    let Some(&time) = capability.least() else {
                        return;
                    };
                    let retain = || capability.retain_least(0);
                    if held.hold_if_pending(state.as_ref(), time, retain, data) {
                        return;
                    }
                    let mut session = output.session(&capability);
                    run.batch(&mut histories, data.drain(..), |r| session.give(r));
                });
                if let Some(state) = state.as_mut() {
                    while let Some(time) = state.due_latest(&[frontier.frontier()], held.earliest())
                    {
                        state.take(time, &fingerprint, &histories.save());
                        for (_, cap, data) in held.release(state) {
                            let mut session = output.session(&cap);
                            run.batch(&mut histories, data.into_iter(), |r| session.give(r));
                        }
                    }
                    if frontier.is_empty() {
                        if state.keeps_on_stop() {
                            state.take(AT_STOP, &fingerprint, &histories.save());
                        } else {
                            state.finished();
                        }
                    }
                }
                if let Some(live) = &live {
                    live.evaluation.add(&run.compared);
                    if run.made > 0 {
                        live.evaluation.remember_row(&histories.1);
                    }
                }
                counters.predictions.add(run.made);
                counters.short_history.add(run.short);
                counters.corrections.add(run.corrected);
            }
        })
    }
}

/// One activation's predictions.
struct Run<'a> {
    predictor: &'a Predictor,
    model: &'a LoadedModel,
    made: u64,
    short: u64,
    corrected: u64,
    /// With `updates:`, the fields summed into the actual value.
    actual: Option<&'a [usize]>,
    /// The model evaluated beside the active one in this activation.
    challenger: Option<&'a Challenger>,
    /// This activation's comparisons.
    compared: Tally,
}

impl Run<'_> {
    fn batch(
        &mut self,
        histories: &mut Histories,
        readings: impl Iterator<Item = Reading>,
        mut give: impl FnMut(Reading),
    ) {
        let predictor = self.predictor;
        let plan = &predictor.features;
        let keep = i64::from(plan.max_lag()) * predictor.step_ms;
        let version = f64::from(self.model.version());
        for reading in readings {
            let base = plan.base_row(&reading.values);
            let history = histories.0.entry(reading.sensor).or_default();
            let t = reading.time_ms;
            if history.get(t).is_some() {
                // A window emitted again with late readings merged in: its lags improve
                // later predictions, but its own prediction was made (and compared)
                // already; a second one would double the triplet.
                history.insert(t, base, t - keep);
                self.corrected += 1;
                continue;
            }
            if let Some(actual) = self.actual {
                let value: f64 = actual
                    .iter()
                    .map(|&i| reading.values.get(i).copied().unwrap_or(f64::NAN))
                    .sum();
                self.compare(histories.3.entry(reading.sensor).or_default(), t, value);
            }
            let mut features = std::mem::take(&mut histories.1);
            let missing = plan.features(t, &base, history, predictor.step_ms, &mut features);
            history.insert(t, base, t - keep);
            if missing > 0 && !predictor.predict_with_missing_lags {
                self.short += 1;
                histories.1 = features;
                continue;
            }
            let baseline: f64 = predictor
                .relative_to
                .iter()
                .map(|&i| reading.values.get(i).copied().unwrap_or(f64::NAN))
                .sum();
            let predicted = self.model.predict(&features, &mut histories.2) + baseline;
            let target = t.saturating_add(predictor.horizon_ms);
            if let Some(challenger) = self.challenger {
                let pending = histories.3.entry(reading.sensor).or_default();
                if pending.len() >= MAX_PENDING {
                    pending.pop_front();
                }
                pending.push_back(Pending {
                    target_ms: target,
                    active: predicted,
                    challenger: challenger.model.predict(&features, &mut histories.2) + baseline,
                    epoch: challenger.epoch,
                });
            }
            let mut values = Row::new();
            values.push(predicted);
            values.push(target as f64);
            values.push(version);
            for &f in &features {
                values.push(f);
            }
            histories.1 = features;
            self.made += 1;
            give(Reading {
                sensor: reading.sensor,
                time_ms: t,
                values,
            });
        }
    }
}

impl Run<'_> {
    /// The window at `t` with actual value `actual` meets the predictions made for it;
    /// those for earlier windows that never came are dropped.
    fn compare(&mut self, pending: &mut VecDeque<Pending>, t: i64, actual: f64) {
        while let Some(p) = pending.front().copied().filter(|p| p.target_ms <= t) {
            pending.pop_front();
            let current = self.challenger.is_some_and(|c| c.epoch == p.epoch);
            if p.target_ms == t && current && actual.is_finite() {
                self.compared
                    .add(t, actual - p.active, actual - p.challenger);
            }
        }
    }
}

/// Each sensor's recent windows, with the scratch space predictions reuse, and the
/// predictions waiting for their actual window while a challenger is evaluated.
#[derive(Default)]
struct Histories(
    FxHashMap<SensorId, History>,
    Vec<f64>,
    Vec<f64>,
    FxHashMap<SensorId, VecDeque<Pending>>,
);

impl Histories {
    /// The histories the previous run saved, of the sensors this worker owns.
    fn restore(state: Option<&NodeState>, fingerprint: &str) -> Self {
        let mut histories = Histories::default();
        for part in state.map(|s| s.restored(fingerprint)).unwrap_or_default() {
            match bincode::deserialize::<Vec<(SensorId, History)>>(&part) {
                Ok(saved) => histories.0.extend(
                    saved
                        .into_iter()
                        .filter(|(sensor, _)| state.is_some_and(|s| s.owns(*sensor))),
                ),
                Err(e) => tracing::warn!("a saved predict history is damaged and skipped: {e}"),
            }
        }
        histories
    }

    fn save(&self) -> Vec<u8> {
        let saved: Vec<(&SensorId, &History)> = self.0.iter().collect();
        bincode::serialize(&saved).expect("histories serialize")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use smartgrid_runtime::checkpoint::{Checkpoints, OnStop};
    use smartgrid_runtime::shutdown::Shutdown;
    use smartgrid_runtime::spec::Spanned;
    use smartgrid_runtime::state::StateStore;
    use smartgrid_runtime::{Schema, SensorId};
    use timely::dataflow::InputHandle;
    use timely::dataflow::operators::{Input, Inspect};

    use super::*;
    use crate::predict::features::{FeaturesConfig, LagsConfig};

    /// One split on p: ≤ 500 → 400, else 900 (the doctest's model).
    const MODEL: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
        max_feature_idx=2\nobjective=regression\nfeature_names=p p-1 p-2\nfeature_infos=[0:1000] [0:1000] [0:1000]\n\
        tree_sizes=1\n\nTree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nsplit_gain=1\n\
        threshold=500\ndecision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=400 900\n\
        leaf_weight=1 1\nleaf_count=1 1\ninternal_value=0\ninternal_weight=0\n\
        internal_count=2\nis_linear=0\nshrinkage=1\n\n\nend of trees\n";

    fn predictor() -> (Predictor, Arc<ModelSlot>) {
        let name = |n: &str| Spanned::new(n.to_string(), Default::default());
        let config = FeaturesConfig {
            fields: vec![name("p")],
            lags: Some(LagsConfig {
                fields: vec![name("p")],
                count: Spanned::new(2, Default::default()),
            }),
            ..Default::default()
        };
        let features = FeaturePlan::new(&config, &Schema::new(["p"])).expect("features");
        let model = smartgrid_models::Model::parse(MODEL.as_bytes()).expect("a model");
        let model = LoadedModel::new(model, features.names()).expect("same features");
        let slot = Arc::new(ModelSlot::new(model, features.names().to_vec()));
        let predictor = Predictor {
            features: Arc::new(features),
            horizon_ms: 10_000,
            step_ms: 10_000,
            predict_with_missing_lags: false,
            relative_to: vec![],
        };
        (predictor, slot)
    }

    /// Feeds 10 s windows of p at `times` to a predict operator with `state`; returns
    /// the predictions' rows.
    fn run(times: &[i64], state: Option<NodeState>, stop: Option<Shutdown>) -> Vec<Vec<f64>> {
        let windows = times.iter().map(|&t| (t, 100.0 + t as f64 / 1000.0));
        feed(windows.collect(), state, None, stop)
    }

    /// Feeds `windows` of (start, p) of one sensor to a predict operator with `state` and
    /// `live` evaluation, then triggers `stop`; returns the predictions' rows.
    fn feed(
        windows: Vec<(i64, f64)>,
        state: Option<NodeState>,
        live: Option<LiveErrors>,
        stop: Option<Shutdown>,
    ) -> Vec<Vec<f64>> {
        let (predictor, slot) = predictor();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = Arc::clone(&seen);
        timely::execute_directly(move |worker| {
            let mut input = InputHandle::new();
            worker.dataflow::<u64, _, _>(|scope| {
                scope
                    .input_from(&mut input)
                    .predict_evaluated(
                        predictor,
                        slot,
                        PredictCounters::default(),
                        "p",
                        state,
                        live,
                    )
                    .inspect(move |r: &Reading| out.lock().expect("lock").push(r.values.to_vec()));
            });
            let sensor = SensorId::new("meter-1").expect("short");
            for (t, p) in windows {
                input.advance_to(t as u64);
                input.send(Reading {
                    sensor,
                    time_ms: t,
                    values: Row::from_iter([p]),
                });
                worker.step();
            }
            if let Some(stop) = stop {
                stop.trigger();
            }
        });
        std::mem::take(&mut *seen.lock().expect("lock"))
    }

    #[test]
    fn lag_histories_survive_a_restart() {
        let uninterrupted = run(&[0, 10_000, 20_000, 30_000], None, None);
        assert_eq!(
            uninterrupted.len(),
            2,
            "predictions from the third window on"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let open = |stop: &Shutdown| {
            let store = StateStore::open(dir.path(), "p", 0, 1).expect("open");
            Arc::new(Checkpoints::new(store, OnStop::Checkpoint, None, stop.clone()).expect("new"))
        };
        let stop = Shutdown::new();
        let checkpoints = open(&stop);
        let first = run(
            &[0, 10_000, 20_000],
            Some(checkpoints.node("p", 0, 1)),
            Some(stop),
        );
        checkpoints.commit_at_stop().expect("commit");
        drop(checkpoints);
        let checkpoints = open(&Shutdown::new());
        let second = run(&[30_000], Some(checkpoints.node("p", 0, 1)), None);
        let mut both = first;
        both.extend(second);
        assert_eq!(
            both, uninterrupted,
            "the restored lags give the same predictions"
        );
    }

    /// With a challenger, only the active model's predictions go out, and the tally
    /// holds both models' absolute errors against the window `horizon` later, computed
    /// here by hand.
    #[test]
    fn a_challenger_is_compared_not_emitted() {
        let (_, slot) = predictor();
        let challenger = smartgrid_models::Model::parse(
            MODEL
                .replace("leaf_value=400 900", "leaf_value=650 650")
                .as_bytes(),
        )
        .expect("a model");
        let names = slot.names().to_vec();
        let challenger = LoadedModel::new(challenger, &names).expect("same features");
        let evaluation = Arc::new(Evaluation::default());
        evaluation.open(Some(Arc::new(challenger)));
        let live = LiveErrors {
            evaluation: Arc::clone(&evaluation),
            actual: vec![0],
        };
        // p over time: crosses 500 both ways, so both leaves of the active model are used
        let values = [100.0, 700.0, 300.0, 800.0, 450.0, 900.0, 200.0, 600.0];
        let windows = values
            .iter()
            .enumerate()
            .map(|(i, &p)| (i as i64 * 10_000, p));
        let emitted = feed(windows.collect(), None, Some(live), None);
        // predictions from the third window on (two lags), the active model's only
        let active = |p: f64| if p <= 500.0 { 400.0 } else { 900.0 };
        let predicted: Vec<f64> = emitted.iter().map(|r| r[0]).collect();
        let expected: Vec<f64> = values[2..].iter().map(|&p| active(p)).collect();
        assert_eq!(predicted, expected);
        // each prediction at window i meets window i + 1, if it came
        let (mut active_abs, mut challenger_abs, mut n) = (0.0, 0.0, 0);
        for i in 2..values.len() - 1 {
            active_abs += (values[i + 1] - active(values[i])).abs();
            challenger_abs += (values[i + 1] - 650.0_f64).abs();
            n += 1;
        }
        let tally = evaluation.tally();
        assert_eq!(tally.active.count, n);
        assert_eq!(tally.challenger.count, n);
        assert!((tally.active.abs - active_abs).abs() < 1e-9, "{tally:?}");
        assert!(
            (tally.challenger.abs - challenger_abs).abs() < 1e-9,
            "{tally:?}"
        );
        assert_eq!(tally.span_ms(), (n as i64 - 1) * 10_000);
    }
}
