//! `smartgrid schema` and `smartgrid kinds KIND`: what the config types say about the
//! pipeline file (see `smartgrid_runtime::config_schema`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use smartgrid_runtime::Registry;
use smartgrid_runtime::config_schema::{kind_keys, pipeline_schema};

/// `smartgrid schema`: the pipeline file's JSON Schema on stdout.
pub fn schema(registry: &Registry) -> anyhow::Result<ExitCode> {
    let schema = pipeline_schema(registry);
    print_all(&format!("{}\n", serde_json::to_string_pretty(&schema)?))
}

/// `smartgrid kinds KIND`: one line per key (`key  (type)  required  default …`), its
/// doc indented below.
pub fn kind(registry: &Registry, kind: &str) -> anyhow::Result<ExitCode> {
    let Some(keys) = kind_keys(registry, kind) else {
        let kinds: Vec<&str> = registry.kinds().collect();
        bail!(
            "unknown node kind `{kind}` (this build knows: {})",
            kinds.join(", ")
        );
    };
    let summary = registry
        .summaries()
        .find(|(name, _)| *name == kind)
        .map_or("", |(_, summary)| summary);
    let mut text = format!("{kind}: {summary}\n\n");
    for key in keys {
        text.push_str(&format!("{}  ({})", key.name, key.ty));
        if key.required {
            text.push_str("  required");
        }
        if let Some(default) = &key.default {
            text.push_str(&format!("  default {default}"));
        }
        text.push('\n');
        for doc_line in key.doc.lines() {
            text.push_str(&format!("    {doc_line}\n"));
        }
    }
    print_all(&text)
}

/// Write `text` to stdout; a reader that went away (`smartgrid schema | head`) is no
/// failure.
fn print_all(text: &str) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
