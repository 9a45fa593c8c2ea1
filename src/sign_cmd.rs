//! `smartgrid keys generate`, `smartgrid model sign` and `smartgrid model verify`: the
//! command-line side of `registry` (argument checks and one-line reports; the formats
//! and checks live there).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use smartgrid_models::signing::{keys, manifest};

/// `smartgrid keys generate --out DIR`
pub fn keys_generate(dir: &Path) -> anyhow::Result<ExitCode> {
    let paths = keys::generate(dir)?;
    let public = keys::read_public(&paths.public)?;
    // only paths and the public fingerprint: the private key is never printed
    println!(
        "wrote {} (private, mode 0600: keep it secret) and {} (public, key {})",
        paths.private.display(),
        paths.public.display(),
        keys::fingerprint(&public)
    );
    Ok(ExitCode::SUCCESS)
}

/// What `smartgrid model sign` was given.
pub struct SignArgs<'a> {
    pub key: &'a Path,
    pub model: &'a Path,
    pub version: Option<String>,
    pub parent: Option<String>,
    pub training_rows: Option<u64>,
    /// `NAME=VALUE` each.
    pub metrics: &'a [String],
}

/// `smartgrid model sign --key KEY MODEL`
pub fn sign(args: SignArgs<'_>) -> anyhow::Result<ExitCode> {
    let metrics = parse_metrics(args.metrics)?;
    let key = keys::read_private(args.key)?;
    let (path, manifest) = manifest::sign(
        args.model,
        &key,
        manifest::SignOptions {
            version: args.version,
            parent: args.parent,
            training_rows: args.training_rows,
            metrics,
        },
    )?;
    println!(
        "wrote {}: version {}, {} trees, sha256 {}, signed by key {}",
        path.display(),
        manifest.version,
        manifest.trees,
        manifest.model_sha256,
        keys::fingerprint(&key.verifying_key())
    );
    Ok(ExitCode::SUCCESS)
}

/// `smartgrid model verify --public-key PUB MODEL`: exit 0 with a summary, or an error
/// (exit 1) naming what did not match.
pub fn verify(public_key: &Path, model: &Path) -> anyhow::Result<ExitCode> {
    let key = keys::read_public(public_key)?;
    let manifest =
        manifest::verify(model, &key).with_context(|| format!("verifying {}", model.display()))?;
    let features = manifest.feature_names.as_ref().map_or(0, Vec::len);
    println!(
        "ok: {} version {} ({} trees, {features} features, sha256 {}, created {}), signed by key {}",
        model.display(),
        manifest.version,
        manifest.trees,
        manifest.model_sha256,
        manifest.created,
        keys::fingerprint(&key)
    );
    Ok(ExitCode::SUCCESS)
}

/// `--metric NAME=VALUE` flags as a map; a repeated name is an error (which one would
/// be meant?), and so is a value that is not a finite number.
fn parse_metrics(flags: &[String]) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut metrics = BTreeMap::new();
    for flag in flags {
        let (name, value) = flag
            .split_once('=')
            .with_context(|| format!("--metric {flag:?}: expected NAME=VALUE"))?;
        let value: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("--metric {flag:?}: the value is not a number"))?;
        anyhow::ensure!(
            value.is_finite(),
            "--metric {flag:?}: the value must be finite"
        );
        anyhow::ensure!(
            !name.is_empty(),
            "--metric {flag:?}: the name must not be empty"
        );
        anyhow::ensure!(
            metrics.insert(name.to_owned(), value).is_none(),
            "--metric {name:?} is given twice"
        );
    }
    Ok(metrics)
}
