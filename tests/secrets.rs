//! No secret leaves through a log, an error or a file: every pipeline of the corpus is
//! validated and graphed, and pipelines with credentials run against real and
//! misbehaving servers, at every log level, with distinctive values in the environment;
//! everything printed and every file written is searched for them, also base64- and
//! URL-encoded.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::echo::echoing_server;

const LEVELS: [&str; 5] = ["off", "error", "info", "debug", "trace"];

/// A value no message would contain by chance.
fn secret(name: &str) -> String {
    format!("Zq9x-{name}-s3cr3t/+=?&")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every form of `value` that would give it away.
fn forms(value: &str) -> Vec<String> {
    let core = "Zq9x";
    let mut forms = vec![
        value.to_string(),
        testkit::urlencode(value),
        base64(value.as_bytes()),
    ];
    // A distinctive part alone, in case a message cuts the value short.
    let tail = value.split('-').nth(1).unwrap_or(core).to_string();
    forms.push(format!("{core}-{tail}-s3cr3t"));
    forms
}

fn assert_clean(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        for form in forms(s) {
            assert!(
                !text.contains(&form),
                "{what} shows a secret ({form}):\n{text}"
            );
        }
    }
}

/// Every file under `dir`, as text (lossy).
fn files_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![
        root.join("pipeline.yaml"),
        root.join("deploy/pipeline.yaml"),
        root.join("examples/custom-operator/pipeline.yaml"),
    ];
    for dir in ["tests/pipelines/broken", "tests/pipelines/good"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .expect("corpus")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// The variables the corpus uses (but the one that must stay unset).
fn corpus_variables(files: &[PathBuf]) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("read");
        for part in text.split("${").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != "SMARTGRID_TEST_UNSET_VAR" {
                names.insert(name);
            }
        }
    }
    names.into_iter().collect()
}

fn smartgrid(level: &str, variables: &[(String, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smartgrid"));
    command.env("SMARTGRID_LOG", level);
    command.env_remove("SMARTGRID_TEST_UNSET_VAR");
    for (name, value) in variables {
        command.env(name, value);
    }
    command
}

fn printed(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn validate_and_graph_never_print_a_value_from_the_environment() {
    let files = corpus();
    let names = corpus_variables(&files);
    assert!(names.iter().any(|n| n == "INFLUX_TOKEN"), "{names:?}");
    let variables: Vec<(String, String)> = names.iter().map(|n| (n.clone(), secret(n))).collect();
    let secrets: Vec<String> = variables.iter().map(|(_, v)| v.clone()).collect();
    let mut refused = 0;
    for file in &files {
        for level in LEVELS {
            for command in ["validate", "graph"] {
                let out = smartgrid(level, &variables)
                    .arg(command)
                    .arg(file)
                    .current_dir(file.parent().expect("a folder"))
                    .output()
                    .expect("run smartgrid");
                refused += usize::from(!out.status.success());
                let what = format!("`{command} {}` at {level}", file.display());
                assert_clean(&what, &printed(&out), &secrets);
            }
        }
    }
    // The broken corpus is refused, so its messages were searched.
    assert!(refused > 100, "only {refused} runs were refused");
}

#[test]
fn a_running_pipeline_never_logs_or_stores_its_credentials() {
    let broker = testkit::Mosquitto::start();
    let echo = echoing_server();
    let variables = vec![
        ("INFLUX_TOKEN".to_string(), secret("INFLUX_TOKEN")),
        ("INFLUX_PASSWORD".to_string(), secret("INFLUX_PASSWORD")),
        ("MQTT_PASSWORD".to_string(), secret("MQTT_PASSWORD")),
    ];
    let secrets: Vec<String> = variables.iter().map(|(_, v)| v.clone()).collect();
    for level in LEVELS {
        let dir = tempfile::tempdir().expect("tempdir");
        let pipeline = dir.path().join("pipeline.yaml");
        std::fs::write(
            &pipeline,
            format!(
                r"
pipeline: secrets
nodes:
  meters:
    type: simulate
    sensors: 2
    realtime: false
    start: 2026-11-24T06:00:00Z
    duration: 5s
  readings: {{ type: decode, input: meters, format: clemap }}
  v2:
    type: influx
    input: readings
    url: http://127.0.0.1:{echo}
    org: o
    bucket: b
    token: ${{INFLUX_TOKEN}}
    retry: {{ initial_delay: 10ms, max_delay: 20ms }}
    drain_timeout: 2s
  v1:
    type: influx
    input: readings
    api: v1
    url: http://127.0.0.1:{echo}
    db: d
    username: me
    password: ${{INFLUX_PASSWORD}}
    retry: {{ initial_delay: 10ms, max_delay: 20ms }}
    drain_timeout: 2s
  subscriber:
    type: mqtt
    url: {url}
    username: me
    password: ${{MQTT_PASSWORD}}
  decoded: {{ type: decode, input: subscriber, format: clemap }}
  out: {{ type: file, input: decoded, path: out.lp }}
",
                url = broker.url()
            ),
        )
        .expect("write pipeline");
        let out = smartgrid(level, &variables)
            .arg("run")
            .arg(&pipeline)
            .args(["--for", "4s"])
            .output()
            .expect("run smartgrid");
        let what = format!("a run at {level}");
        assert_clean(&what, &printed(&out), &secrets);
        let files = files_under(dir.path());
        // The server's answers were dead-lettered: the files are searched, not empty.
        assert!(
            files
                .iter()
                .any(|(p, text)| p.to_string_lossy().contains("dead_letters")
                    && text.contains("400")),
            "no dead letters at {level}: {:?}",
            files.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        for (path, text) in files {
            assert_clean(&format!("{} at {level}", path.display()), &text, &secrets);
        }
    }
}
