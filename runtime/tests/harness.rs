//! The test harness on a pipeline of toy kinds: sources get the test's payloads and
//! are never started, sinks record what reaches them and are never started either,
//! every other node runs as planned and its output is captured.

use std::sync::Arc;

use smartgrid_runtime::harness::{HarnessError, TestInputs, check_input, run_test};
use smartgrid_runtime::record::Message;
use smartgrid_runtime::spec::{Env, parse_str};
use smartgrid_runtime::timely::dataflow::operators::vec::Map;
use smartgrid_runtime::{
    AnyStream, Inputs, Node, PlanContext, PortType, Reading, Registry, RenderContext, Routing, Row,
    Schema, SensorId, StartContext, StartError,
};

/// No settings.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Nothing {}

/// A source that must not be started in a test: its start fails.
struct Wire;

impl Node for Wire {
    const KIND: &'static str = "wire";
    const SUMMARY: &'static str = "a source a test replaces";
    const INPUTS: Inputs = Inputs::None;
    type Config = Nothing;
    type State = ();

    fn plan(_: Nothing, _: &mut PlanContext<'_>) -> Option<Self> {
        Some(Wire)
    }
    fn output(&self) -> Option<PortType> {
        Some(PortType::Messages)
    }
    fn start(&self, _: &StartContext<'_>) -> Result<(), StartError> {
        Err(StartError::other("a test started a source"))
    }
    fn render<'s>(
        &self,
        _: &(),
        _: &RenderContext<'s>,
        _: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        unreachable!("a test rendered a source")
    }
}

/// `sensor,time_ms,value` payloads → readings of one field, `value`.
struct Parse;

impl Node for Parse {
    const KIND: &'static str = "parse";
    const SUMMARY: &'static str = "text payloads to readings";
    const INPUTS: Inputs = Inputs::One(Routing::Any);
    type Config = Nothing;
    type State = ();

    fn plan(_: Nothing, ctx: &mut PlanContext<'_>) -> Option<Self> {
        ctx.messages_input()?;
        Some(Parse)
    }
    fn output(&self) -> Option<PortType> {
        Some(PortType::Readings(Schema::new(["value"])))
    }
    fn start(&self, _: &StartContext<'_>) -> Result<(), StartError> {
        Ok(())
    }
    fn render<'s>(
        &self,
        _: &(),
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        let readings = ctx.single_messages(inputs).flat_map(|m: Message| {
            let text = std::str::from_utf8(&m.payload).ok()?.to_owned();
            let mut parts = text.split(',');
            let sensor = SensorId::new(parts.next()?).ok()?;
            let time_ms = parts.next()?.parse().ok()?;
            let mut values = Row::new();
            values.push(parts.next()?.parse().ok()?);
            Some(Reading {
                sensor,
                time_ms,
                values,
            })
        });
        Some(AnyStream::Readings(readings))
    }
}

/// Doubles every value.
struct Double {
    schema: Schema,
}

impl Node for Double {
    const KIND: &'static str = "double";
    const SUMMARY: &'static str = "twice every value";
    const INPUTS: Inputs = Inputs::One(Routing::BySensor);
    type Config = Nothing;
    type State = ();

    fn plan(_: Nothing, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let schema = ctx.readings_input()?;
        Some(Double { schema })
    }
    fn output(&self) -> Option<PortType> {
        Some(PortType::Readings(self.schema.clone()))
    }
    fn start(&self, _: &StartContext<'_>) -> Result<(), StartError> {
        Ok(())
    }
    fn render<'s>(
        &self,
        _: &(),
        ctx: &RenderContext<'s>,
        inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        let doubled = ctx.single_readings(inputs).map(|mut r: Reading| {
            for v in r.values.iter_mut() {
                *v *= 2.0;
            }
            r
        });
        Some(AnyStream::Readings(doubled))
    }
}

/// A sink that must not be started in a test: its start fails.
struct Vault;

impl Node for Vault {
    const KIND: &'static str = "vault";
    const SUMMARY: &'static str = "a sink a test replaces";
    const INPUTS: Inputs = Inputs::One(Routing::Any);
    type Config = Nothing;
    type State = ();

    fn plan(_: Nothing, _: &mut PlanContext<'_>) -> Option<Self> {
        Some(Vault)
    }
    fn output(&self) -> Option<PortType> {
        None
    }
    fn start(&self, _: &StartContext<'_>) -> Result<(), StartError> {
        Err(StartError::other("a test started a sink"))
    }
    fn render<'s>(
        &self,
        _: &(),
        _: &RenderContext<'s>,
        _: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        unreachable!("a test rendered a sink")
    }
}

const PIPELINE: &str = "
pipeline: toy
nodes:
  wire: {type: wire}
  quiet: {type: wire}
  parsed: {type: parse, input: wire}
  doubled: {type: double, input: parsed}
  vault: {type: vault, input: doubled}
";

fn planned(state: &std::path::Path) -> smartgrid_runtime::plan::Plan {
    let mut registry = Registry::new();
    registry
        .register::<Wire>()
        .register::<Parse>()
        .register::<Double>()
        .register::<Vault>();
    let mut spec = parse_str(
        PIPELINE,
        "toy.yaml",
        state.to_path_buf(),
        Env::Fixed(Default::default()),
    )
    .expect("parses");
    spec.state_dir = state.join("state");
    spec.data_dir = state.join("data");
    smartgrid_runtime::plan::plan(&spec, &registry).expect("plans")
}

fn message(text: &str) -> Message {
    Message {
        topic: Arc::from("t"),
        payload: bytes::Bytes::copy_from_slice(text.as_bytes()),
    }
}

#[test]
fn sources_take_the_inputs_sinks_record_and_every_output_is_captured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = Arc::new(planned(dir.path()));
    let mut inputs = TestInputs::new();
    // Out of order on purpose: captured readings come sorted by time, then sensor.
    inputs.insert(
        "wire".into(),
        vec![
            message("b,2000,1.5"),
            message("a,2000,3"),
            message("a,1000,-4"),
        ],
    );
    let captured = run_test(plan, inputs).expect("the test run completes");

    assert_eq!(captured.nodes["wire"].messages.len(), 3);
    assert!(captured.nodes["quiet"].is_empty());
    let seen = |node: &str| -> Vec<(String, i64, f64)> {
        captured.nodes[node]
            .readings
            .iter()
            .map(|r| (r.sensor.as_str().to_owned(), r.time_ms, r.values[0]))
            .collect()
    };
    let parsed = vec![
        ("a".to_owned(), 1000, -4.0),
        ("a".to_owned(), 2000, 3.0),
        ("b".to_owned(), 2000, 1.5),
    ];
    assert_eq!(seen("parsed"), parsed);
    let doubled = vec![
        ("a".to_owned(), 1000, -8.0),
        ("a".to_owned(), 2000, 6.0),
        ("b".to_owned(), 2000, 3.0),
    ];
    assert_eq!(seen("doubled"), doubled);
    // The sink was neither started nor rendered; what reached it was recorded.
    assert_eq!(seen("vault"), doubled);
    assert_eq!(captured.nodes["vault"].fields, ["value"]);
}

#[test]
fn inputs_go_only_into_sources_of_the_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = planned(dir.path());
    assert!(check_input(&plan, "wire").is_ok());
    assert!(matches!(
        check_input(&plan, "parsed"),
        Err(HarnessError::NotASource(n)) if n == "parsed"
    ));
    assert!(matches!(
        check_input(&plan, "nowhere"),
        Err(HarnessError::UnknownNode(n)) if n == "nowhere"
    ));
}
