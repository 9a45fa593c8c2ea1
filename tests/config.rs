//! Writing a pipeline file: `data_dir`, YAML merge keys, named connections, every unset
//! variable at once, and the file's JSON Schema (`smartgrid schema`, checked with a real
//! validator) and key reference (`smartgrid kinds KIND`, checked against docs/nodes.md).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Run, smartgrid};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A pipeline reading a broker, written with an anchor, a merge key and a connection,
/// and with everything it writes under `data_dir: out`. `{url}` is the broker.
const SHORTHAND: &str = r#"
pipeline: shared
data_dir: out
x-json: &json
  format: json
  queue: 64
connections:
  broker:
    url: {url}
    topics: [data/realtime/feature/+]
    qos: 1
nodes:
  clemap:
    type: mqtt
    connection: broker
    client_id: config-test-short
  readings:
    type: decode
    input: clemap
    format: clemap
  means_10s:
    type: window_mean
    input: readings
    size: 10s
  raw:
    type: file
    input: readings
    path: raw.jsonl
    <<: *json
  out:
    type: file
    input: means_10s
    <<: *json
    path: means.jsonl
"#;

/// The same pipeline written out longhand, writing beside itself.
const LONGHAND: &str = r#"
pipeline: shared
nodes:
  clemap:
    type: mqtt
    url: {url}
    topics: [data/realtime/feature/+]
    qos: 1
    client_id: config-test-long
  readings:
    type: decode
    input: clemap
    format: clemap
  means_10s:
    type: window_mean
    input: readings
    size: 10s
  raw:
    type: file
    input: readings
    path: raw.jsonl
    format: json
    queue: 64
  out:
    type: file
    input: means_10s
    path: means.jsonl
    format: json
    queue: 64
"#;

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn sorted(path: &Path) -> Vec<String> {
    let mut lines = lines(path);
    lines.sort();
    lines
}

#[test]
fn merge_keys_and_a_connection_run_like_the_pipeline_written_out_longhand() {
    testkit::require_binary("mosquitto");
    // Both runs queue the whole burst (see tests/end_to_end.rs).
    let broker = testkit::Mosquitto::start_with("max_queued_messages 100000\n");
    let short_dir = tempfile::tempdir().expect("tempdir");
    let long_dir = tempfile::tempdir().expect("tempdir");
    let short =
        support::write_pipeline(short_dir.path(), &SHORTHAND.replace("{url}", &broker.url()));
    let long = support::write_pipeline(long_dir.path(), &LONGHAND.replace("{url}", &broker.url()));

    let short_run = Run::start(&short, &["--drain"]);
    let long_run = Run::start(&long, &["--drain"]);
    short_run.wait_for("subscribed");
    long_run.wait_for("subscribed");
    let sim = smartgrid()
        .args([
            "simulate",
            "--broker",
            &broker.url(),
            "--sensors",
            "3",
            "--seed",
            "11",
        ])
        .args(["--duration", "1m", "--fast"])
        .env("SMARTGRID_LOG", "warn")
        .output()
        .expect("simulate");
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let published = 3 * 60 * 12;

    // Relative paths of the shorthand land under its data_dir.
    let short_out = short_dir.path().join("out");
    let deadline = Instant::now() + Duration::from_secs(60);
    while (lines(&short_out.join("raw.jsonl")).len() < published
        || lines(&long_dir.path().join("raw.jsonl")).len() < published)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    short_run.terminate();
    long_run.terminate();

    let short_raw = sorted(&short_out.join("raw.jsonl"));
    assert_eq!(short_raw.len(), published, "every reading arrived once");
    assert_eq!(short_raw, sorted(&long_dir.path().join("raw.jsonl")));
    let short_means = sorted(&short_out.join("means.jsonl"));
    assert!(!short_means.is_empty());
    assert_eq!(short_means, sorted(&long_dir.path().join("means.jsonl")));
    // Nothing was written beside the shorthand file: its state went to data_dir too.
    let beside: BTreeSet<String> = std::fs::read_dir(short_dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        beside,
        BTreeSet::from(["out".to_owned(), "pipeline.yaml".to_owned()])
    );
    assert!(short_out.join(".smartgrid/state/shared").is_dir());
}

#[test]
fn one_data_dir_setting_moves_sinks_dead_letters_and_state() {
    let pipeline_dir = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let pipeline = support::write_pipeline(
        pipeline_dir.path(),
        r#"
pipeline: moved
data_dir: ${SMARTGRID_TEST_DATA}
nodes:
  meters:
    type: simulate
    sensors: 2
    seed: 3
    realtime: false
    duration: 30s
    start: 2024-06-01T00:00:00Z
  readings:
    type: decode
    input: meters
    format: clemap
    dead_letter: { file: letters/dead.jsonl }
  means:
    type: window_mean
    input: readings
    size: 10s
  store:
    type: file
    input: means
    path: sinks/means.lp
"#,
    );
    let out = smartgrid()
        .arg("run")
        .arg(&pipeline)
        .env("SMARTGRID_TEST_DATA", data.path())
        .stderr(Stdio::inherit())
        .output()
        .expect("run");
    assert!(out.status.success());
    let stored = lines(&data.path().join("sinks/means.lp"));
    assert!(!stored.is_empty(), "the file sink wrote under data_dir");
    assert!(stored.iter().all(|l| l.starts_with("means,")), "{stored:?}");
    assert!(data.path().join(".smartgrid/state/moved").is_dir());
    let beside: Vec<_> = std::fs::read_dir(pipeline_dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        beside,
        ["pipeline.yaml"],
        "nothing is written beside the pipeline file"
    );
}

#[test]
fn validate_reports_every_unset_variable_of_the_production_pipeline() {
    let file = repo().join("deploy/pipeline.yaml");
    let text = std::fs::read_to_string(&file).expect("deploy/pipeline.yaml");
    // Every `${NAME}` written without a default.
    let mut required = BTreeSet::new();
    for part in text.split("${").skip(1) {
        let inner = part.split('}').next().unwrap_or_default();
        if !inner.contains(":-") {
            required.insert(inner.to_owned());
        }
    }
    assert!(required.len() >= 5, "{required:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .arg("validate")
        .arg(&file)
        .env_clear()
        .env("SMARTGRID_LOG", "off")
        .output()
        .expect("validate");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in &required {
        let said = stderr
            .matches(&format!("environment variable `{name}` is not set"))
            .count();
        assert_eq!(said, 1, "`{name}` is reported once:\n{stderr}");
    }
}

#[test]
fn an_unset_top_level_variable_does_not_hide_the_nodes_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = support::write_pipeline(
        dir.path(),
        r#"
data_dir: ${SMARTGRID_TEST_UNSET_A}
connections:
  influx: { url: "${SMARTGRID_TEST_UNSET_B}", org: o, bucket: b, token: t }
nodes:
  meters: { type: simulate }
  readings: { type: decode, input: meters, format: clemap }
  one: { type: influx, input: readings, connection: influx }
  two: { type: influx, input: readings, connection: influx }
"#,
    );
    let out = smartgrid()
        .arg("validate")
        .arg(&pipeline)
        .env("SMARTGRID_LOG", "off")
        .env_remove("SMARTGRID_TEST_UNSET_A")
        .env_remove("SMARTGRID_TEST_UNSET_B")
        .output()
        .expect("validate");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in ["SMARTGRID_TEST_UNSET_A", "SMARTGRID_TEST_UNSET_B"] {
        let said = stderr.matches(&format!("`{name}` is not set")).count();
        assert_eq!(said, 1, "`{name}` is reported once:\n{stderr}");
    }
    assert!(
        stderr.contains("(from connection `influx`; node `two` uses it too)"),
        "{stderr}"
    );
}

/// Checks each YAML file against a JSON Schema with Python's `jsonschema`; prints
/// `OK <file>` or `FAIL <file>: <first error>` per file.
const VALIDATOR: &str = r#"
import json, sys
import jsonschema, yaml
schema = json.load(open(sys.argv[1]))
jsonschema.Draft202012Validator.check_schema(schema)
validator = jsonschema.Draft202012Validator(schema)
for path in sys.argv[2:]:
    errors = list(validator.iter_errors(yaml.safe_load(open(path))))
    print(("OK " + path) if not errors else ("FAIL " + path + ": " + errors[0].message[:200]))
"#;

/// Each file's verdict under `smartgrid schema`: `true` if valid.
fn schema_verdicts(files: &[PathBuf]) -> Vec<(PathBuf, bool, String)> {
    let python = testkit::require_binary("python3");
    let check = Command::new(&python)
        .args(["-c", "import jsonschema, yaml"])
        .output()
        .expect("python3");
    assert!(
        check.status.success(),
        "python3 cannot import jsonschema and yaml: run `bash scripts/test.sh` (it installs them)\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = smartgrid()
        .arg("schema")
        .output()
        .expect("smartgrid schema");
    assert!(schema.status.success());
    let schema_file = dir.path().join("schema.json");
    std::fs::write(&schema_file, &schema.stdout).expect("write schema");
    let out = Command::new(&python)
        .args(["-c", VALIDATOR])
        .arg(&schema_file)
        .args(files)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdicts: Vec<&str> = stdout.lines().collect();
    assert_eq!(verdicts.len(), files.len(), "{stdout}");
    files
        .iter()
        .zip(verdicts)
        .map(|(file, line)| (file.clone(), line.starts_with("OK "), line.to_owned()))
        .collect()
}

#[test]
fn the_schema_accepts_every_good_pipeline_and_refuses_unknown_keys_and_wrong_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut good = vec![
        repo().join("pipeline.yaml"),
        repo().join("deploy/pipeline.yaml"),
        repo().join("models/default/dataset.yaml"),
    ];
    for entry in std::fs::read_dir(repo().join("tests/pipelines/good")).expect("good corpus") {
        good.push(entry.expect("entry").path());
    }
    let shorthand = dir.path().join("shorthand.yaml");
    std::fs::write(
        &shorthand,
        SHORTHAND.replace("{url}", "mqtt://127.0.0.1:1883"),
    )
    .expect("write");
    good.push(shorthand);
    // Each is a good pipeline by the program's own judgement too.
    for file in &good {
        let out = smartgrid()
            .arg("validate")
            .arg(file)
            .env("SMARTGRID_LOG", "off")
            .env("INFLUX_URL", "http://127.0.0.1:8086")
            .env("INFLUX_ORG", "o")
            .env("INFLUX_BUCKET", "b")
            .env("INFLUX_TOKEN", "t")
            .env(
                "IOTHUB_CONNECTION_STRING",
                "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=aGVsbG8=",
            )
            .output()
            .expect("validate");
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Broken on purpose: an unknown key and a wrong type in a copy of the default, and
    // the corpus's files with an unknown key, type or top-level key, or a wrong type.
    let default = std::fs::read_to_string(repo().join("pipeline.yaml")).expect("pipeline.yaml");
    let mut bad = Vec::new();
    for (name, from, to) in [
        (
            "unknown_key.yaml",
            "    size: 10s\n",
            "    size: 10s\n    sise: 10s\n",
        ),
        ("wrong_type.yaml", "    rate: 12\n", "    rate: [12]\n"),
        ("duration_number.yaml", "    size: 10s\n", "    size: 10\n"),
    ] {
        assert!(default.contains(from), "pipeline.yaml has {from:?}");
        let path = dir.path().join(name);
        std::fs::write(&path, default.replacen(from, to, 1)).expect("write");
        bad.push(path);
    }
    for name in [
        "unknown_key",
        "unknown_type",
        "unknown_top_level_key",
        "influx_unknown_key",
        "wrong_value_type",
        "duration_without_unit",
    ] {
        bad.push(repo().join(format!("tests/pipelines/broken/{name}.yaml")));
    }

    let files: Vec<PathBuf> = good.iter().chain(&bad).cloned().collect();
    for (file, valid, line) in schema_verdicts(&files) {
        let expected = good.contains(&file);
        assert_eq!(valid, expected, "{line}");
    }
}

/// `smartgrid kinds`' first column.
fn kinds() -> Vec<String> {
    let out = smartgrid().arg("kinds").output().expect("kinds");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The keys `smartgrid kinds KIND` lists: its unindented lines after the summary.
fn kind_keys(kind: &str) -> Vec<String> {
    let out = smartgrid()
        .args(["kinds", kind])
        .output()
        .expect("kinds KIND");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(2)
        .filter(|l| !l.starts_with(' ') && !l.is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The reference for `kind` in docs/nodes.md: from its `#### ` heading naming it to the
/// next heading of that level or above.
fn reference_section(reference: &str, kind: &str) -> String {
    let named = format!("`{kind}`");
    let mut section = String::new();
    let mut inside = false;
    for line in reference.lines() {
        let heading =
            line.starts_with("#### ") || line.starts_with("### ") || line.starts_with("## ");
        if heading && !line.starts_with("##### ") {
            inside = line.starts_with("#### ") && line.contains(&named);
        }
        if inside {
            section.push_str(line);
            section.push('\n');
        }
    }
    section
}

/// Whether `key` (`retry.max_delay` for a table's key) is named in `section`: in a
/// table row (`` `key` ``, `` `key.sub` ``), an example (`key:`), or, for a table's key,
/// by its own name in its table's row (`{ initial_delay, max_delay }`).
fn documented(section: &str, key: &str) -> bool {
    let named = |name: &str| {
        section.contains(&format!("`{name}`"))
            || section.contains(&format!("`{name}."))
            || section.contains(&format!("{name}:"))
    };
    match key.rsplit_once('.') {
        None => named(key),
        Some((_, leaf)) => {
            named(key)
                || named(leaf)
                || section.contains(&format!("{{ {leaf}"))
                || section.contains(&format!("{{{leaf}"))
                || section.contains(&format!(", {leaf}"))
        }
    }
}

#[test]
fn every_key_of_every_kind_is_in_the_node_reference() {
    let reference = std::fs::read_to_string(repo().join("docs/nodes.md")).expect("docs/nodes.md");
    let kinds = kinds();
    assert!(kinds.len() >= 10, "{kinds:?}");
    let mut missing = Vec::new();
    for kind in &kinds {
        let section = reference_section(&reference, kind);
        assert!(
            !section.is_empty(),
            "docs/nodes.md has no `#### `{kind}`` section"
        );
        let keys = kind_keys(kind);
        assert!(!keys.is_empty(), "`smartgrid kinds {kind}` lists no key");
        for key in keys {
            if !documented(&section, &key) {
                missing.push(format!("{kind}.{key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "keys `smartgrid kinds` knows but docs/nodes.md does not: {missing:?}"
    );
}

#[test]
fn kinds_prints_one_kinds_keys_with_types_defaults_and_docs() {
    let out = smartgrid()
        .args(["kinds", "window_mean"])
        .output()
        .expect("kinds");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("window_mean: "), "{text}");
    let size = text
        .lines()
        .find(|l| l.starts_with("size "))
        .unwrap_or_else(|| panic!("no `size` key:\n{text}"));
    assert!(size.contains("required"), "{size}");
    let unknown = smartgrid().args(["kinds", "nope"]).output().expect("kinds");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown node kind `nope`"));
}
