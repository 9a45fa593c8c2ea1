//! `smartgrid graph`: the compiled graph of the default pipeline, as DOT and Mermaid,
//! against reviewed golden files (`tests/golden/default.*`). Regenerate after an
//! intended change with `UPDATE_GOLDEN=1 cargo test --test graph` and review the diff.

use std::path::Path;
use std::process::Command;

fn check(args: &[&str], golden: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .args(args)
        .current_dir(root)
        .env("SMARTGRID_LOG", "off")
        .env_remove("MQTT_URL")
        .env_remove("SENSORS")
        .output()
        .expect("run smartgrid");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let path = root.join("tests/golden").join(golden);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write golden");
    }
    assert_eq!(text, std::fs::read_to_string(&path).expect("golden file"));
}

#[test]
fn the_default_pipeline_graph_as_dot() {
    check(&["graph", "pipeline.yaml"], "default.dot");
}

#[test]
fn the_default_pipeline_graph_as_mermaid() {
    check(&["graph", "pipeline.yaml", "--mermaid"], "default.mmd");
}

/// The diagram of the default pipeline in docs/design.md is the command's output, not a
/// drawing that can drift from it; so is any Mermaid diagram the README shows.
#[test]
fn the_docs_show_the_default_pipeline_graph() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden = std::fs::read_to_string(root.join("tests/golden/default.mmd")).expect("golden");
    let block = format!("```mermaid\n{golden}```");
    let design = std::fs::read_to_string(root.join("docs/design.md")).expect("docs/design.md");
    assert!(
        design.contains(&block),
        "docs/design.md has no ```mermaid block equal to tests/golden/default.mmd:\n{golden}"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert!(
        !readme.contains("```mermaid") || readme.contains(&block),
        "README.md has a ```mermaid block but none equal to tests/golden/default.mmd:\n{golden}"
    );
}
