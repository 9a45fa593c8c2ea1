//! `smartgrid schema` and `smartgrid kinds KIND`: what the config types say about the
//! pipeline file (see `smartgrid_runtime::config_schema`).

use std::process::ExitCode;

use anyhow::bail;
use smartgrid_runtime::Registry;
use smartgrid_runtime::config_schema::{kind_keys, pipeline_schema};

/// `smartgrid schema`: the pipeline file's JSON Schema on stdout.
pub fn schema(registry: &Registry) -> anyhow::Result<ExitCode> {
    let schema = pipeline_schema(registry);
    println!("{}", serde_json::to_string_pretty(&schema)?);
    Ok(ExitCode::SUCCESS)
}

/// `smartgrid kinds KIND`: one line per key (`key  type  default  required`), its
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
    println!("{kind}: {summary}");
    println!();
    for key in keys {
        let mut line = format!("{}  ({})", key.name, key.ty);
        if key.required {
            line.push_str("  required");
        }
        if let Some(default) = &key.default {
            line.push_str(&format!("  default {default}"));
        }
        println!("{line}");
        for doc_line in key.doc.lines() {
            println!("    {doc_line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
