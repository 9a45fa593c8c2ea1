//! The pipeline test file (`*.test.yaml`), as written. `docs/pipeline-tests.md` is the
//! user's guide; every key is documented here too (`smartgrid schema` style).

use std::collections::BTreeMap;

use serde::Deserialize;
use smartgrid_operators::simulate::StartTime;
use smartgrid_runtime::spec::{Duration, Spanned};

/// A file of tests for one pipeline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// The pipeline under test, relative to this file (`pipeline.yaml`).
    pub pipeline: Spanned<String>,
    /// Values of the pipeline's `${VAR}`s. The process environment is not read, so a test
    /// gives the same result on every machine; a `${VAR:-default}` not listed here takes
    /// its default.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The tests, run one after the other, each on a fresh pipeline.
    pub tests: Vec<TestCase>,
}

/// One test: what goes in, what must come out.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    /// Shown in the report.
    pub name: Spanned<String>,
    /// What the sources emit. A source not named here emits nothing.
    #[serde(default)]
    pub inputs: Vec<Input>,
    /// What nodes must emit.
    #[serde(default)]
    pub outputs: Vec<Output>,
    /// Nodes that must emit nothing (for a sink: that nothing reaches).
    #[serde(default)]
    pub no_outputs_from: Vec<Spanned<String>>,
    /// The run's counters at its end (`readings.errors: 1`, `means_10s.late: 0`). A
    /// counter made at its first count (`readings.errors.truncated`) is 0 until then;
    /// a name the run does not have fails the test.
    #[serde(default)]
    pub counters: BTreeMap<String, Spanned<u64>>,
}

/// Payloads that one source node emits, instead of what it would receive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The source node (`mqtt`, or a `simulate` without `publish`).
    pub insert_at: Spanned<String>,
    /// The MQTT topic the payloads arrive on (a decoder may read the sensor id from
    /// it). Default: the node's name.
    #[serde(default)]
    pub topic: Option<String>,
    /// Payloads, in order.
    #[serde(default)]
    pub payloads: Vec<Payload>,
    /// Simulated Clemap monitors, emitted after `payloads`.
    #[serde(default)]
    pub simulate: Option<SimulatedSensors>,
}

/// One payload. Its event time is the one inside it (a Clemap header's timestamp, a
/// JSON field): the test's time is the payloads' own, not the wall clock's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Payload {
    /// The bytes, in hexadecimal (`smartgrid decode` takes the same).
    Hex(Spanned<String>),
    /// The bytes, in base64 (standard alphabet, padded).
    Base64(Spanned<String>),
    /// A JSON document, sent as its text (for a `decode` with `format: json`).
    Json(serde_json::Value),
    /// A Clemap ten-second reading (feature type 16), encoded as a monitor sends it.
    Clemap(ClemapReading),
}

/// A Clemap type-16 reading (`TenSecData`): the values are watts and vars; on the wire
/// each is an integer of thousandths, so give at most three decimals.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClemapReading {
    /// The monitor's ObjectId: 24 hexadecimal characters.
    pub sensor: Spanned<String>,
    /// The event time: an RFC 3339 time (`2025-07-18T00:00:00.5Z`) or epoch ms.
    pub time: StartTime,
    /// The phase byte. Default 0.
    #[serde(default)]
    pub phase: u8,
    /// Active power, L1. Default 0.
    #[serde(default)]
    pub p_l1: f64,
    /// Active power, L2. Default 0.
    #[serde(default)]
    pub p_l2: f64,
    /// Active power, L3. Default 0.
    #[serde(default)]
    pub p_l3: f64,
    /// Reactive power, L1. Default 0.
    #[serde(default)]
    pub q_l1: f64,
    /// Reactive power, L2. Default 0.
    #[serde(default)]
    pub q_l2: f64,
    /// Reactive power, L3. Default 0.
    #[serde(default)]
    pub q_l3: f64,
}

/// Simulated Clemap monitors (the `simulate` kind's households), with a fixed seed and
/// a fixed span of event time, produced at once (not paced to the wall clock).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedSensors {
    /// How many monitors.
    pub sensors: u32,
    /// Readings per second per monitor (1 to 1000).
    pub rate: u32,
    /// The seed: the same seed gives the same ids and payloads.
    pub seed: u64,
    /// Event time of the first reading (RFC 3339 or epoch ms).
    pub start: StartTime,
    /// How much event time to produce (`30s`).
    pub duration: Duration,
    /// Fraction of payloads damaged on purpose (0 to 1). Default 0.
    #[serde(default)]
    pub faults: f64,
}

/// What one node must have emitted (for a sink: what must have reached it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// The node.
    pub extract_from: Spanned<String>,
    /// Exactly this many records.
    #[serde(default)]
    pub count: Option<Spanned<usize>>,
    /// Records that must be among those emitted: each is matched to a different
    /// emitted record, the first (by event time, then sensor) that meets all of its
    /// conditions.
    #[serde(default)]
    pub records: Vec<Spanned<RecordCondition>>,
}

/// Conditions on one record; what is left out is not checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordCondition {
    /// The sensor id.
    #[serde(default)]
    pub sensor: Option<String>,
    /// The record's event time (a window's start, for `window_mean`): RFC 3339 or
    /// epoch ms.
    #[serde(default)]
    pub time: Option<StartTime>,
    /// Conditions on values, by field name.
    #[serde(default)]
    pub fields: BTreeMap<Spanned<String>, ValueCondition>,
}

/// A condition on one value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ValueCondition {
    /// Exactly this number (`equals: 3`). Safe for counts and for values the
    /// arithmetic gives exactly; otherwise use `within`.
    Equals(f64),
    /// Within a tolerance of a number.
    Within(Tolerance),
}

/// `within: {of: 1562.5, absolute: 0.001}` or `{of: 1562.5, relative: 1e-9}`; with
/// both, meeting either is enough.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// The expected value.
    pub of: f64,
    /// The largest allowed |value − of|.
    #[serde(default)]
    pub absolute: Option<f64>,
    /// The largest allowed |value − of| / |of|.
    #[serde(default)]
    pub relative: Option<f64>,
}
