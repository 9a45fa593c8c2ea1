//! A test file → its planned pipeline and tests, checked before anything runs: every
//! node a test names exists and can do what the test asks, every payload is well formed.

use std::path::Path;
use std::sync::Arc;

use smartgrid_runtime::diagnostic::closest;
use smartgrid_runtime::harness::{TestInputs, check_input, record_fields};
use smartgrid_runtime::plan::{Plan, plan};
use smartgrid_runtime::spec::{self, Env, Spanned};
use smartgrid_runtime::{Diagnostic, Location, PortType, Registry};

use super::config::{TestCase, TestFile, ValueCondition};
use super::inputs::payloads;

/// A test file ready to run.
pub struct Loaded {
    /// The pipeline, planned with its `data_dir` and `state_dir` in `_scratch`.
    pub plan: Arc<Plan>,
    /// The tests, with the payloads of their inputs.
    pub cases: Vec<(TestCase, TestInputs)>,
    /// Where the run writes (dead letters, state): removed when the file is done.
    _scratch: tempfile::TempDir,
}

/// Load and check `file`; every problem found, each in its file at its place.
pub fn load(registry: &Registry, file: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let name = file.display().to_string();
    let at_start = Location { line: 1, column: 1 };
    let text = std::fs::read_to_string(file).map_err(|e| {
        vec![Diagnostic::new(at_start, format!("cannot read the test file: {e}")).in_file(&name)]
    })?;
    // A test file takes no `${VAR}`: what it says is what runs.
    let tests: TestFile = spec::parse_document(&text, &name, &Env::Fixed(Default::default()))?;
    let in_file = |d: Diagnostic| d.in_file(&name);
    let dir = file.parent().unwrap_or(Path::new(""));
    let pipeline_file = dir.join(&tests.pipeline.value);
    if !pipeline_file.is_file() {
        return Err(vec![in_file(
            Diagnostic::new(
                tests.pipeline.at,
                format!("no pipeline file at {}", pipeline_file.display()),
            )
            .hint("`pipeline:` is relative to the test file"),
        )]);
    }
    let env = Env::Fixed(tests.env.clone());
    let mut pipeline = spec::parse_file(&pipeline_file, env)?;
    let scratch = tempfile::Builder::new()
        .prefix("smartgrid-test-")
        .tempdir()
        .map_err(|e| {
            vec![in_file(Diagnostic::new(
                at_start,
                format!("cannot create a scratch directory: {e}"),
            ))]
        })?;
    // What the run writes goes to the scratch directory, never where a real run keeps
    // its data (dead letters, state, spools).
    pipeline.data_dir = scratch.path().join("data");
    pipeline.state_dir = scratch.path().join("state");
    let plan = plan(&pipeline, registry).map_err(|d| d.0)?;
    let mut problems = Vec::new();
    let mut cases = Vec::new();
    for case in tests.tests {
        let inputs = check_case(&plan, &case, &mut problems);
        cases.push((case, inputs));
    }
    if !problems.is_empty() {
        return Err(problems.into_iter().map(in_file).collect());
    }
    Ok(Loaded {
        plan: Arc::new(plan),
        cases,
        _scratch: scratch,
    })
}

/// Check what `case` names against `plan`, reporting into `problems`; its inputs.
fn check_case(plan: &Plan, case: &TestCase, problems: &mut Vec<Diagnostic>) -> TestInputs {
    let mut inputs = TestInputs::new();
    for input in &case.inputs {
        let node = &input.insert_at;
        if let Err(e) = check_input(plan, node) {
            let sources: Vec<&str> = plan
                .nodes
                .iter()
                .filter(|n| n.routing.is_none() && n.output == Some(PortType::Messages))
                .map(|n| n.name.as_str())
                .collect();
            problems.push(
                Diagnostic::new(node.at, e.to_string())
                    .hint(format!("nodes that take payloads: {}", sources.join(", "))),
            );
            continue;
        }
        match payloads(input) {
            Ok(messages) => inputs
                .entry(node.value.clone())
                .or_default()
                .extend(messages),
            Err(d) => problems.push(d),
        }
    }
    for output in &case.outputs {
        let Some(fields) = known_node(plan, &output.extract_from, problems) else {
            continue;
        };
        for record in &output.records {
            if fields.is_empty() && (record.sensor.is_some() || record.time.is_some()) {
                problems.push(
                    Diagnostic::new(
                        output.extract_from.at,
                        format!(
                            "`{}` emits raw payloads, not readings",
                            output.extract_from.value
                        ),
                    )
                    .hint("check its `count:`, or the readings of the node decoding it"),
                );
            }
            for (name, condition) in &record.fields {
                if !fields.contains(&name.value) {
                    let d = Diagnostic::new(
                        name.at,
                        format!(
                            "`{}` emits no field `{}`",
                            output.extract_from.value, name.value
                        ),
                    );
                    let d = match closest(&name.value, fields.iter().map(String::as_str)) {
                        Some(f) => d.hint(format!("did you mean `{f}`?")),
                        None => d.hint(format!("its fields: {}", fields.join(", "))),
                    };
                    problems.push(d);
                }
                if let ValueCondition::Within(t) = condition
                    && t.absolute.is_none()
                    && t.relative.is_none()
                {
                    problems.push(
                        Diagnostic::new(name.at, "`within` gives no tolerance")
                            .hint("add `absolute:` and/or `relative:`, or use `equals:`"),
                    );
                }
            }
        }
    }
    for node in &case.no_outputs_from {
        known_node(plan, node, problems);
    }
    inputs
}

/// The field names of `node`'s records, or a problem if the plan has no such node.
fn known_node(
    plan: &Plan,
    node: &Spanned<String>,
    problems: &mut Vec<Diagnostic>,
) -> Option<Vec<String>> {
    let fields = record_fields(plan, node);
    if fields.is_none() {
        let names = plan.nodes.iter().map(|n| n.name.as_str());
        let d = Diagnostic::new(
            node.at,
            format!("`{}` is not a node of the pipeline", node.value),
        );
        problems.push(match closest(&node.value, names) {
            Some(n) => d.hint(format!("did you mean `{n}`?")),
            None => d.hint(format!(
                "nodes are: {}",
                plan.nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        });
    }
    fields
}
