//! `smartgrid registry push DIR`: mirror the registry into a Blob Storage container,
//! in the same layout as `registry serve`'s URLs, so that the container's URL can be
//! the announcements' `base_url` (with a read-only SAS token appended to each URL):
//!
//! ```text
//! models/VERSION/model.txt
//! models/VERSION/model.txt.manifest.json
//! state.json
//! ```
//!
//! Versions never change, so one already in the container is not uploaded again;
//! `state.json` goes last, so the container never names a version it lacks.

use std::collections::HashSet;

use anyhow::Context;

use super::blob::Container;
use super::{MANIFEST_FILE, MODEL_FILE, Registry};

/// What a push did.
#[derive(Debug, Default)]
pub struct Pushed {
    pub uploaded: usize,
    pub already_there: usize,
}

/// Upload what the container lacks, then the state.
pub fn push(registry: &Registry, container: &Container) -> anyhow::Result<Pushed> {
    let existing: HashSet<String> = container.list("models/")?.into_iter().collect();
    let mut pushed = Pushed::default();
    for entry in registry.list()? {
        let version = &entry.manifest.version;
        let model = registry.model_path(version)?;
        for (file, content_type) in [
            (MODEL_FILE, "text/plain; charset=utf-8"),
            (MANIFEST_FILE, "application/json"),
        ] {
            let name = format!("models/{version}/{file}");
            if existing.contains(&name) {
                pushed.already_there += 1;
                continue;
            }
            let path = model.with_file_name(file);
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            container.put_blob(&name, &bytes, content_type)?;
            pushed.uploaded += 1;
        }
    }
    let state = serde_json::to_vec_pretty(&registry.state()?).context("registry state")?;
    container.put_blob("state.json", &state, "application/json")?;
    Ok(pushed)
}
