//! `smartgrid test FILE...` through the binary: the shipped pipeline tests pass, a wrong
//! expectation fails with a diff naming the node, a malformed test file is refused with
//! its place, and a malformed payload is counted as in a real run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.test.yaml` shipped with the built-in kinds (the custom-operator example's
/// runs with its own binary, in its crate).
fn shipped_tests() -> Vec<PathBuf> {
    let mut files = vec![
        repo().join("pipeline.test.yaml"),
        repo().join("deploy/pipeline.test.yaml"),
    ];
    let mut corpus: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/pipelines/tests"))
        .expect("tests/pipelines/tests")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    corpus.sort();
    assert!(
        !corpus.is_empty(),
        "no pipeline tests in tests/pipelines/tests"
    );
    files.extend(corpus);
    files
}

fn smartgrid_test(files: &[PathBuf]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .arg("test")
        .args(files)
        .env("SMARTGRID_LOG", "off")
        .output()
        .expect("run smartgrid")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A test file in a scratch directory, for the repository's `pipeline.yaml`.
fn write_test(dir: &Path, body: &str) -> PathBuf {
    let file = dir.join("scratch.test.yaml");
    let pipeline = repo().join("pipeline.yaml");
    let yaml = format!(
        "pipeline: {}\ntests:\n{body}",
        serde_json::to_string(&pipeline.display().to_string()).expect("a path as a string")
    );
    std::fs::write(&file, yaml).expect("write the test file");
    file
}

#[test]
fn every_shipped_pipeline_test_passes() {
    let files = shipped_tests();
    let out = smartgrid_test(&files);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    for file in &files {
        assert!(
            stdout.contains(&format!("from {}", file.display())),
            "{} was not run:\n{stdout}",
            file.display()
        );
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("test result: ok."), "{stdout}");
}

#[test]
fn a_wrong_expectation_fails_with_a_diff_naming_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One reading of p_l1 = 100: its ten-second mean is 100, not 101.
    let file = write_test(
        dir.path(),
        r#"  - name: right count, wrong mean
    inputs:
      - insert_at: clemap
        payloads:
          - clemap: {sensor: 411e7ec27378a661c935187c, time: "2025-07-18T00:00:00Z", p_l1: 100}
    outputs:
      - extract_from: means_10s
        count: 1
        records:
          - fields: {p_l1: {within: {of: 101, absolute: 0.5}}}
    counters:
      readings.erors: 0
  - name: a passing neighbour
    inputs:
      - insert_at: clemap
        payloads:
          - clemap: {sensor: 411e7ec27378a661c935187c, time: "2025-07-18T00:00:00Z", p_l1: 100}
    outputs:
      - extract_from: means_10s
        records:
          - fields: {p_l1: {equals: 100}}
"#,
    );
    let out = smartgrid_test(std::slice::from_ref(&file));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    // At the expected record (line 12, after `pipeline:` and `tests:`).
    assert!(
        stdout.contains(&format!(
            "{}:12:13: node `means_10s`: expected record #1",
            file.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("test right count, wrong mean ... FAILED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("test a passing neighbour ... ok"),
        "{stdout}"
    );
    // The diff: the node, the condition, and the record that was seen instead.
    assert!(stdout.contains("node `means_10s`"), "{stdout}");
    assert!(stdout.contains("{p_l1 = 101 ± 0.5}"), "{stdout}");
    assert!(
        stdout.contains("sensor: 411e7ec27378a661c935187c, time: 2025-07-18T00:00:00.000Z"),
        "{stdout}"
    );
    assert!(stdout.contains("p_l1: 100,"), "{stdout}");
    // A misspelt counter is no silent "0 as expected".
    assert!(
        stdout.contains("counter `readings.erors`: the run has no such counter"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed; 1 failed"), "{stdout}");
}

#[test]
fn a_malformed_test_file_is_refused_with_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_test(
        dir.path(),
        r#"  - name: typo
    inputs:
      - insert_at: clemap
        payload: []
"#,
    );
    let out = smartgrid_test(std::slice::from_ref(&file));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // `payload` is on line 6 (after `pipeline:` and `tests:`), column 9.
    assert!(
        stderr.contains(&format!("{}:6:9: unknown key `payload`", file.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: did you mean `payloads`?"),
        "{stderr}"
    );
}

#[test]
fn inputs_into_a_node_that_is_no_source_are_refused_with_their_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_test(
        dir.path(),
        r#"  - name: into the decoder
    inputs:
      - insert_at: readings
        payloads: [{hex: "00"}]
    outputs:
      - extract_from: means_10
"#,
    );
    let out = smartgrid_test(std::slice::from_ref(&file));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let name = file.display();
    assert!(
        stderr.contains(&format!("{name}:5:20: `readings` is not a source node")),
        "{stderr}"
    );
    assert!(
        stderr.contains("nodes that take payloads: clemap"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{name}:8:23: `means_10` is not a node of the pipeline"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `means_10s`?"), "{stderr}");
}

#[test]
fn malformed_payloads_are_counted_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two damaged payloads (truncated: 3 bytes; not hex-decodable as a record: a JSON
    // text) around one good reading.
    let file = write_test(
        dir.path(),
        r#"  - name: damaged payloads
    inputs:
      - insert_at: clemap
        payloads:
          - hex: "100000"
          - clemap: {sensor: 411e7ec27378a661c935187c, time: "2025-07-18T00:00:00Z", p_l1: 7}
          - json: {not: clemap}
    outputs:
      - extract_from: readings
        count: 1
        records:
          - fields: {p_l1: {equals: 7}}
      - extract_from: clemap
        count: 3
    counters:
      readings.errors: 2
      readings.errors.truncated: 1
      readings.errors.unknown_type: 1
"#,
    );
    let out = smartgrid_test(&[file]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("test damaged payloads ... ok"), "{stdout}");
}

#[test]
fn a_test_of_an_invalid_pipeline_is_refused_with_the_pipeline_s_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = repo().join("tests/pipelines/broken/unknown_key.yaml");
    let file = dir.path().join("broken.test.yaml");
    let yaml = format!(
        "pipeline: {}\ntests:\n  - name: never runs\n",
        serde_json::to_string(&pipeline.display().to_string()).expect("a path as a string")
    );
    std::fs::write(&file, yaml).expect("write the test file");
    let out = smartgrid_test(&[file]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // As tests/pipelines/broken/unknown_key.expected has it, in the pipeline file.
    assert!(
        stderr.contains(&format!(
            "{}:15:5: node `means`: unknown key `sise`",
            pipeline.display()
        )),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("never runs"), "not run");
}
