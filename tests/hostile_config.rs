//! Pipeline files an attacker or a generator could write: each is refused quickly with a
//! located message and exit code 2, never a crash or a hang.

use std::fmt::Write as _;
use std::process::Command;

fn validate(path: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .arg("validate")
        .arg(path)
        .env("SMARTGRID_LOG", "off")
        .output()
        .expect("run smartgrid");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `count` simulate → decode pairs, one file sink each: a valid pipeline.
fn many_nodes(count: usize) -> String {
    let mut text = String::from("pipeline: big\nnodes:\n");
    for i in 0..count {
        let _ = writeln!(text, "  m{i}: {{ type: simulate, sensors: 1 }}");
        let _ = writeln!(
            text,
            "  d{i}: {{ type: decode, input: m{i}, format: clemap }}"
        );
    }
    text
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_it_is_parsed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.yaml");
    let mut text = many_nodes(10);
    // A comment pads it past 4 MiB: the limit is on bytes, not on what they say.
    text.push('#');
    text.push_str(&"x".repeat(4 * 1024 * 1024));
    std::fs::write(&path, text).expect("write");
    let (code, stderr) = validate(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("huge.yaml:1:1:") && stderr.contains("at most 4194304 bytes"),
        "{stderr}"
    );
}

#[test]
fn duplicates_in_a_large_mapping_are_each_reported_at_their_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dups.yaml");
    let count = 20_000;
    let mut text = many_nodes(count);
    // Repeat the first and the last node's names at the end.
    let lines = 2 * count + 2;
    let _ = writeln!(text, "  m0: {{ type: simulate, sensors: 2 }}");
    let _ = writeln!(text, "  d{}: {{ type: simulate, sensors: 2 }}", count - 1);
    std::fs::write(&path, text).expect("write");
    let (code, stderr) = validate(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("dups.yaml:{}:3: duplicate key `m0`", lines + 1)),
        "{stderr}"
    );
    assert!(
        stderr.contains("`m0` is already defined at line 3, column 3"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "`d{}` is already defined at line {}, column 3",
            count - 1,
            lines
        )),
        "{stderr}"
    );
}
