//! `smartgrid test FILE...`: pipeline tests written in YAML (`docs/pipeline-tests.md`).
//!
//! Each file names a pipeline and lists tests: payloads into its sources, expected
//! records out of its nodes. A test runs the planned pipeline through
//! [`smartgrid_runtime::harness`] (sources fed by the test, sinks recording, event time
//! from the payloads alone), then compares. Exit code: 0 every test passed, 1 some
//! failed, 2 a test file or its pipeline has problems (each printed at its place).

mod config;
mod expect;
mod inputs;
mod load;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use smartgrid_runtime::Registry;
use smartgrid_runtime::diagnostic::Diagnostics;
use smartgrid_runtime::harness::run_test;

use expect::{Failure, check};

/// What came of one file's tests.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    /// Files that could not be run (bad test file, bad pipeline).
    broken: usize,
}

/// `smartgrid test FILE...`
pub fn test(registry: &Registry, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut tally = Tally::default();
    for file in files {
        run_file(registry, file, &mut tally);
    }
    let verdict = if tally.failed == 0 && tally.broken == 0 {
        "ok"
    } else {
        "FAILED"
    };
    println!(
        "\ntest result: {verdict}. {} passed; {} failed; {} file{} with problems",
        tally.passed,
        tally.failed,
        tally.broken,
        if tally.broken == 1 { "" } else { "s" }
    );
    Ok(ExitCode::from(if tally.broken > 0 {
        2
    } else if tally.failed > 0 {
        1
    } else {
        0
    }))
}

fn run_file(registry: &Registry, file: &Path, tally: &mut Tally) {
    let name = file.display();
    let loaded = match load::load(registry, file) {
        Ok(loaded) => loaded,
        Err(problems) => {
            let n = problems.len();
            eprintln!(
                "{}\n{n} problem{} found in {name}; its tests were not run",
                Diagnostics(problems),
                if n == 1 { "" } else { "s" }
            );
            tally.broken += 1;
            return;
        }
    };
    println!(
        "running {} test{} from {name}",
        loaded.cases.len(),
        if loaded.cases.len() == 1 { "" } else { "s" }
    );
    let mut failures: Vec<(String, Vec<Failure>)> = Vec::new();
    for (case, inputs) in &loaded.cases {
        let outcome = run_test(Arc::clone(&loaded.plan), inputs.clone());
        let problems = match outcome {
            Ok(captured) => check(case, &captured),
            Err(e) => vec![Failure {
                at: case.name.at,
                subject: "the pipeline".to_owned(),
                message: format!("did not run to the end: {e}"),
            }],
        };
        let ok = problems.is_empty();
        println!(
            "test {} ... {}",
            case.name.value,
            if ok { "ok" } else { "FAILED" }
        );
        if ok {
            tally.passed += 1;
        } else {
            tally.failed += 1;
            failures.push((
                format!(
                    "{} ({name}:{}:{})",
                    case.name.value, case.name.at.line, case.name.at.column
                ),
                problems,
            ));
        }
    }
    if failures.is_empty() {
        return;
    }
    println!("\nfailures:");
    for (test, problems) in failures {
        println!("\n---- {test} ----");
        for f in problems {
            println!(
                "{name}:{}:{}: {}: {}",
                f.at.line, f.at.column, f.subject, f.message
            );
        }
    }
}
