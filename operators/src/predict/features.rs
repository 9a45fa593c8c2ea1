//! The feature vector a `predict` node builds for each window: current values, sums,
//! lags (the same sensor's previous windows) and calendar features of the event time.

use std::collections::VecDeque;

use serde::Deserialize;
use smallvec::SmallVec;
use smartgrid_runtime::Schema;
use smartgrid_runtime::spec::Spanned;

/// The `features:` block of a `predict` node.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeaturesConfig {
    /// Values of the current window, by name: input fields or `sums`.
    #[serde(default)]
    pub fields: Vec<Spanned<String>>,
    /// New values, each the sum of input fields (`p_total = p_l1 + p_l2 + p_l3`). Usable
    /// by name in `fields` and `lags`.
    #[serde(default)]
    pub sums: Vec<SumConfig>,
    /// Values of the same sensor's previous windows, named `<field>-<k>` for lag `k`
    /// (the seed model's names), ordered lag by lag: `p_l1-1, p_l2-1, …, p_l1-2, …`.
    #[serde(default)]
    pub lags: Option<LagsConfig>,
    /// Calendar features of the window's start (UTC): `hour_of_day` (0–23),
    /// `minute_of_day` (0–1439), `day_of_week` (0 = Monday … 6 = Sunday).
    #[serde(default)]
    pub time: Vec<Spanned<String>>,
}

/// One sum feature.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SumConfig {
    /// The new value's name.
    pub name: Spanned<String>,
    /// The input fields added up.
    pub of: Vec<Spanned<String>>,
}

/// Lagged features.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LagsConfig {
    /// Which values to lag: input fields or `sums`.
    pub fields: Vec<Spanned<String>>,
    /// How many previous windows (1 = the window before this one).
    pub count: Spanned<u32>,
}

/// The longest lag accepted (a day of 10-second windows).
pub const MAX_LAG: u32 = 8640;

/// A calendar feature of the window's start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeFeature {
    /// 0–23, UTC.
    HourOfDay,
    /// 0–1439, UTC.
    MinuteOfDay,
    /// 0 = Monday … 6 = Sunday.
    DayOfWeek,
}

impl TimeFeature {
    const ALL: [(&'static str, TimeFeature); 3] = [
        ("hour_of_day", TimeFeature::HourOfDay),
        ("minute_of_day", TimeFeature::MinuteOfDay),
        ("day_of_week", TimeFeature::DayOfWeek),
    ];

    fn parse(name: &str) -> Option<TimeFeature> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    fn value(self, time_ms: i64) -> f64 {
        let minutes = time_ms.div_euclid(60_000);
        let days = minutes.div_euclid(1440);
        match self {
            TimeFeature::HourOfDay => (minutes.rem_euclid(1440) / 60) as f64,
            TimeFeature::MinuteOfDay => minutes.rem_euclid(1440) as f64,
            // 1970-01-01 was a Thursday (3 when Monday is 0).
            TimeFeature::DayOfWeek => (days + 3).rem_euclid(7) as f64,
        }
    }
}

/// A value computed once per window and kept in the sensor's history.
#[derive(Clone, Debug)]
enum BaseValue {
    Field(usize),
    Sum(Vec<usize>),
}

#[derive(Clone, Copy, Debug)]
enum Feature {
    Current(usize),
    Lag { base: usize, lag: u32 },
    Time(TimeFeature),
}

/// Base values of one window.
pub type BaseRow = SmallVec<[f64; 8]>;

/// How to build the feature vector from an input row and the sensor's history.
#[derive(Clone, Debug)]
pub struct FeaturePlan {
    base: Vec<BaseValue>,
    features: Vec<Feature>,
    names: Vec<String>,
    max_lag: u32,
}

/// A name in `features:` that is neither an input field nor a sum, or a duplicate.
#[derive(Debug)]
pub struct FeatureError {
    /// Where; `None` for the feature list as a whole (its key's position).
    pub at: Option<smartgrid_runtime::Location>,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: String,
}

impl FeaturePlan {
    /// Check `config` against the input's schema. Every problem is reported.
    pub fn new(config: &FeaturesConfig, input: &Schema) -> Result<FeaturePlan, Vec<FeatureError>> {
        let mut errors = Vec::new();
        let mut plan = FeaturePlan {
            base: Vec::new(),
            features: Vec::new(),
            names: Vec::new(),
            max_lag: 0,
        };
        let mut base_names: Vec<String> = Vec::new();
        let unknown = |name: &Spanned<String>, extra: &[String]| {
            let mut known: Vec<&str> = input.fields().collect();
            known.extend(extra.iter().map(String::as_str));
            FeatureError {
                at: Some(name.at),
                message: format!("no upstream node produces a field `{}`", name.value),
                hint: format!("known values: {}", known.join(", ")),
            }
        };
        let sum_names: Vec<String> = config.sums.iter().map(|s| s.name.value.clone()).collect();
        // Resolve a name to a base value, adding it on first use.
        let mut base_of = |name: &Spanned<String>,
                           plan: &mut FeaturePlan,
                           errors: &mut Vec<FeatureError>|
         -> Option<usize> {
            if let Some(i) = base_names.iter().position(|n| *n == name.value) {
                return Some(i);
            }
            let value = if let Some(sum) = config.sums.iter().find(|s| s.name.value == name.value) {
                let mut of = Vec::new();
                for part in &sum.of {
                    match input.index_of(&part.value) {
                        Some(i) => of.push(i),
                        None => errors.push(unknown(part, &[])),
                    }
                }
                BaseValue::Sum(of)
            } else if let Some(i) = input.index_of(&name.value) {
                BaseValue::Field(i)
            } else {
                errors.push(unknown(name, &sum_names));
                return None;
            };
            base_names.push(name.value.clone());
            plan.base.push(value);
            Some(base_names.len() - 1)
        };
        for field in &config.fields {
            if let Some(base) = base_of(field, &mut plan, &mut errors) {
                plan.push(
                    Feature::Current(base),
                    field.value.clone(),
                    field,
                    &mut errors,
                );
            }
        }
        // Sums not named in `fields` are still features of the current window.
        for sum in &config.sums {
            if input.index_of(&sum.name.value).is_some() {
                errors.push(FeatureError {
                    at: Some(sum.name.at),
                    message: format!("the input already has a field `{}`", sum.name.value),
                    hint: "give the sum another name".into(),
                });
                continue;
            }
            if !config.fields.iter().any(|f| f.value == sum.name.value)
                && let Some(base) = base_of(&sum.name, &mut plan, &mut errors)
            {
                plan.push(
                    Feature::Current(base),
                    sum.name.value.clone(),
                    &sum.name,
                    &mut errors,
                );
            }
        }
        if let Some(lags) = &config.lags {
            let count = lags.count.value;
            if count == 0 || count > MAX_LAG {
                errors.push(FeatureError {
                    at: Some(lags.count.at),
                    message: format!("a lag count must be between 1 and {MAX_LAG}"),
                    hint: "count: 5 uses the five previous windows".into(),
                });
            } else {
                let bases: Vec<(usize, &Spanned<String>)> = lags
                    .fields
                    .iter()
                    .filter_map(|f| base_of(f, &mut plan, &mut errors).map(|b| (b, f)))
                    .collect();
                for lag in 1..=count {
                    for &(base, field) in &bases {
                        let name = format!("{}-{lag}", field.value);
                        plan.push(Feature::Lag { base, lag }, name, field, &mut errors);
                    }
                }
                plan.max_lag = count;
            }
        }
        for name in &config.time {
            match TimeFeature::parse(&name.value) {
                Some(t) => plan.push(Feature::Time(t), name.value.clone(), name, &mut errors),
                None => errors.push(FeatureError {
                    at: Some(name.at),
                    message: format!("unknown time feature `{}`", name.value),
                    hint: "use hour_of_day, minute_of_day or day_of_week".into(),
                }),
            }
        }
        if plan.features.is_empty() && errors.is_empty() {
            errors.push(FeatureError {
                at: None,
                message: "no features".into(),
                hint: "list input fields under `features: {fields: [...]}`".into(),
            });
        }
        if errors.is_empty() {
            Ok(plan)
        } else {
            Err(errors)
        }
    }

    fn push(
        &mut self,
        feature: Feature,
        name: String,
        at: &Spanned<String>,
        errors: &mut Vec<FeatureError>,
    ) {
        if self.names.contains(&name) {
            errors.push(FeatureError {
                at: Some(at.at),
                message: format!("feature `{name}` is listed twice"),
                hint: "each feature may appear once".into(),
            });
            return;
        }
        self.features.push(feature);
        self.names.push(name);
    }

    /// Feature names, in vector order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// How many previous windows the features look back.
    pub fn max_lag(&self) -> u32 {
        self.max_lag
    }

    /// The base values of one input row (what the history keeps).
    pub fn base_row(&self, values: &[f64]) -> BaseRow {
        let get = |i: usize| values.get(i).copied().unwrap_or(f64::NAN);
        self.base
            .iter()
            .map(|b| match b {
                BaseValue::Field(i) => get(*i),
                BaseValue::Sum(of) => of.iter().map(|&i| get(i)).sum(),
            })
            .collect()
    }

    /// Fill `out` with the features of the window starting at `time_ms` whose base values
    /// are `current`, looking lags up in `history`. Returns how many lags were missing
    /// (filled with NaN).
    pub fn features(
        &self,
        time_ms: i64,
        current: &BaseRow,
        history: &History,
        step_ms: i64,
        out: &mut Vec<f64>,
    ) -> usize {
        out.clear();
        let mut missing = 0;
        for feature in &self.features {
            out.push(match *feature {
                Feature::Current(base) => current[base],
                Feature::Lag { base, lag } => {
                    let at = time_ms - i64::from(lag) * step_ms;
                    match history.get(at) {
                        Some(row) => row[base],
                        None => {
                            missing += 1;
                            f64::NAN
                        }
                    }
                }
                Feature::Time(t) => t.value(time_ms),
            });
        }
        missing
    }
}

/// One sensor's recent windows, oldest first: what lags read.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct History(VecDeque<(i64, BaseRow)>);

impl History {
    /// The base values of the window starting at `time_ms`, if kept.
    pub fn get(&self, time_ms: i64) -> Option<&BaseRow> {
        self.0
            .binary_search_by_key(&time_ms, |(t, _)| *t)
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Keep the window starting at `time_ms`; forget those older than `keep_from`.
    pub fn insert(&mut self, time_ms: i64, row: BaseRow, keep_from: i64) {
        match self.0.binary_search_by_key(&time_ms, |(t, _)| *t) {
            Ok(i) => self.0[i].1 = row,
            Err(i) => self.0.insert(i, (time_ms, row)),
        }
        while self.0.front().is_some_and(|(t, _)| *t < keep_from) {
            self.0.pop_front();
        }
    }

    /// The newest window kept.
    pub fn newest(&self) -> Option<i64> {
        self.0.back().map(|(t, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spanned(s: &str) -> Spanned<String> {
        Spanned::new(s.to_string(), Default::default())
    }

    fn seed_config() -> FeaturesConfig {
        FeaturesConfig {
            fields: ["p_l1", "p_l2", "p_l3"].map(spanned).into(),
            lags: Some(LagsConfig {
                fields: ["p_l1", "p_l2", "p_l3"].map(spanned).into(),
                count: Spanned::new(5, Default::default()),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn names_follow_the_seed_model() {
        let schema = Schema::new(["p_l1", "p_l2", "p_l3", "count"]);
        let plan = FeaturePlan::new(&seed_config(), &schema).expect("valid");
        let names = plan.names().join(",");
        assert_eq!(
            names,
            "p_l1,p_l2,p_l3,p_l1-1,p_l2-1,p_l3-1,p_l1-2,p_l2-2,p_l3-2,p_l1-3,p_l2-3,p_l3-3,\
             p_l1-4,p_l2-4,p_l3-4,p_l1-5,p_l2-5,p_l3-5"
        );
    }

    #[test]
    fn lags_read_the_right_windows_and_report_gaps() {
        let schema = Schema::new(["a", "b"]);
        let config = FeaturesConfig {
            sums: vec![SumConfig {
                name: spanned("total"),
                of: ["a", "b"].map(spanned).into(),
            }],
            lags: Some(LagsConfig {
                fields: vec![spanned("total")],
                count: Spanned::new(2, Default::default()),
            }),
            time: vec![spanned("hour_of_day"), spanned("day_of_week")],
            ..Default::default()
        };
        let plan = FeaturePlan::new(&config, &schema).expect("valid");
        assert_eq!(
            plan.names(),
            ["total", "total-1", "total-2", "hour_of_day", "day_of_week"]
        );
        let mut history = History::default();
        history.insert(0, plan.base_row(&[1.0, 2.0]), 0);
        history.insert(10_000, plan.base_row(&[3.0, 4.0]), 0);
        let mut out = Vec::new();
        // 1970-01-01T00:00:20Z, a Thursday.
        let missing = plan.features(
            20_000,
            &plan.base_row(&[5.0, 6.0]),
            &history,
            10_000,
            &mut out,
        );
        assert_eq!(missing, 0);
        assert_eq!(out, [11.0, 7.0, 3.0, 0.0, 3.0]);
        let missing = plan.features(
            40_000,
            &plan.base_row(&[5.0, 6.0]),
            &history,
            10_000,
            &mut out,
        );
        assert_eq!(missing, 2, "windows 30 s and 20 s are not in the history");
        assert!(out[1].is_nan() && out[2].is_nan());
    }

    #[test]
    fn calendar_features_from_the_event_time() {
        // 2024-06-01T18:45:00Z was a Saturday.
        let t = 1_717_267_500_000;
        assert_eq!(TimeFeature::HourOfDay.value(t), 18.0);
        assert_eq!(TimeFeature::MinuteOfDay.value(t), 18.0 * 60.0 + 45.0);
        assert_eq!(TimeFeature::DayOfWeek.value(t), 5.0);
    }

    #[test]
    fn unknown_names_and_duplicates_are_all_reported() {
        let schema = Schema::new(["p_l1"]);
        let config = FeaturesConfig {
            fields: ["p_l1", "p_l9", "p_l1"].map(spanned).into(),
            time: vec![spanned("weekday")],
            ..Default::default()
        };
        let errors = FeaturePlan::new(&config, &schema).expect_err("invalid");
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "no upstream node produces a field `p_l9`",
                "feature `p_l1` is listed twice",
                "unknown time feature `weekday`"
            ]
        );
    }
}
