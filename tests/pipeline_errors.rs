//! Broken pipeline files: each is refused before anything starts, with exit code 2 and
//! exactly the diagnostics in its `.expected` file (file:line:column, node, hint).
//!
//! The `.expected` files are golden files, reviewed by hand. After an intended change
//! of wording, regenerate them with `UPDATE_GOLDEN=1 cargo test --test pipeline_errors`
//! and review the diff.
//!
//! The hint for an unknown node type lists every registered kind; the goldens say
//! `{known_types}` there, which the test fills in from the registry, so registering a
//! new kind does not rewrite unrelated goldens. Everything else is compared verbatim.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What stands in the goldens for the registry's kinds.
const KNOWN_TYPES: &str = "{known_types}";

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pipelines/broken")
}

/// The hint's list of kinds, as `smartgrid validate` prints it: the built-in registry's
/// kinds, sorted, comma-separated.
fn known_types() -> String {
    let kinds: Vec<&str> = smartgrid::builtin_registry().kinds().collect();
    kinds.join(", ")
}

fn validate(dir: &Path, file: &str) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .args(["validate", file])
        .current_dir(dir)
        .env("SMARTGRID_LOG", "off")
        .env_remove("SMARTGRID_TEST_UNSET_VAR")
        .env_remove("INFLUX_TOKEN")
        .output()
        .expect("run smartgrid");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_broken_pipeline_is_refused_with_its_exact_diagnostics() {
    let dir = corpus();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "the corpus has {} files; it should have at least 20",
        files.len()
    );
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let known_types = known_types();
    let listed = format!("known types: {known_types}");
    let placeholder = format!("known types: {KNOWN_TYPES}");
    let mut failures = Vec::new();
    for file in &files {
        let (code, stdout, stderr) = validate(&dir, file);
        let expected_path = dir.join(file.replace(".yaml", ".expected"));
        if update {
            let golden = stderr.replace(&listed, &placeholder);
            std::fs::write(&expected_path, golden).expect("write golden");
            continue;
        }
        let golden = std::fs::read_to_string(&expected_path).unwrap_or_else(|_| {
            panic!(
                "{} has no .expected file (UPDATE_GOLDEN=1 creates it)",
                file
            )
        });
        // A golden spelling the list out would break again on the next new kind.
        assert!(
            !golden.contains("known types: ") || golden.contains(&placeholder),
            "{file}: the golden lists the known types; write `{placeholder}` instead"
        );
        let expected = golden.replace(KNOWN_TYPES, &known_types);
        if code != Some(2) {
            failures.push(format!(
                "{file}: exit code {code:?}, expected 2\nstdout: {stdout}\nstderr: {stderr}"
            ));
        } else if stderr != expected {
            failures.push(format!(
                "{file}:\n--- expected\n{expected}--- got\n{stderr}"
            ));
        }
        assert!(
            stdout.is_empty(),
            "{file}: nothing may be printed on stdout: {stdout}"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} files differ:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn every_diagnostic_names_a_position_and_the_run_command_refuses_too() {
    let dir = corpus();
    // `run` must refuse the same way as `validate`, before starting anything.
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .args(["run", "many_errors.yaml"])
        .current_dir(&dir)
        .env("SMARTGRID_LOG", "off")
        .output()
        .expect("run smartgrid");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let located: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("many_errors.yaml:"))
        .collect();
    assert!(
        located.len() >= 3,
        "all problems reported at once, each located:\n{stderr}"
    );
    for line in located {
        let mut parts = line.splitn(4, ':');
        parts.next();
        let line_no: usize = parts
            .next()
            .and_then(|s| s.parse().ok())
            .expect("line number");
        let col: usize = parts.next().and_then(|s| s.parse().ok()).expect("column");
        assert!(line_no >= 1 && col >= 1, "{line}");
    }
}

#[test]
fn the_shipped_pipelines_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [root.join("pipeline.yaml")]
        .into_iter()
        .chain(
            std::fs::read_dir(root.join("tests/pipelines/good"))
                .expect("good dir")
                .filter_map(|e| Some(e.ok()?.path())),
        )
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    {
        let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
            .args(["validate"])
            .arg(&file)
            .env("SMARTGRID_LOG", "off")
            .output()
            .expect("run smartgrid");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_known_types_hint_is_checked_against_the_registry() {
    // The placeholder must stand for something: the corpus has unknown types, and the
    // list it expands to holds the built-in kinds the hint suggests.
    let known_types = known_types();
    for kind in ["mqtt", "decode", "window_mean"] {
        assert!(
            known_types.split(", ").any(|k| k == kind),
            "{kind} in {known_types}"
        );
    }
    let golden = std::fs::read_to_string(corpus().join("unknown_type.expected")).expect("golden");
    assert!(
        golden.contains(&format!("known types: {KNOWN_TYPES}")),
        "{golden}"
    );
}
