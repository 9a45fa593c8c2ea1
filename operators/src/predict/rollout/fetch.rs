//! A model announced to the device: fetched over HTTP(S), checked against its signed
//! manifest and the node's features, tried on a row, and kept on disk. Nothing here
//! runs on a timely worker: the controller's thread calls it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use smartgrid_models::signing::announcement::Announcement;
use smartgrid_models::signing::manifest::{self, Manifest};

use super::super::slot::LoadedModel;

/// The largest model body fetched; a larger one is refused before it fills memory.
pub const MAX_MODEL_BYTES: u64 = 256 << 20;

/// How long a fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// A model that passed every check.
#[derive(Debug)]
pub struct Accepted {
    pub model: Arc<LoadedModel>,
    pub manifest: Manifest,
    pub bytes: Vec<u8>,
}

/// Why an announced model is refused; the text is logged and reported as is, so it
/// never contains the URL's query (a SAS token is a secret).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the announcement is not valid JSON of {{url, manifest}}: {0}")]
    Announcement(String),
    #[error("cannot fetch the model from {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{0}")]
    Manifest(String),
    #[error("the model names no features; the node needs {0:?}")]
    Unnamed(Vec<String>),
    #[error("{0}")]
    Features(String),
    #[error("its smoke prediction on {on} is {value}, not a finite number")]
    Smoke { on: &'static str, value: f64 },
}

/// Parse an announcement.
pub fn parse(payload: &[u8]) -> Result<Announcement, Refusal> {
    Announcement::from_json(payload).map_err(|e| Refusal::Announcement(e.to_string()))
}

/// Fetch `announcement.url` and check it: signature with `key`, sha256, the feature
/// names the manifest signs against the model and against `names` (the node's), a
/// finite prediction on zeros and on `row` (a recent feature row, if any).
pub fn fetch_and_check(
    announcement: &Announcement,
    key: &VerifyingKey,
    names: &[String],
    row: Option<&[f64]>,
) -> Result<Accepted, Refusal> {
    let shown = crate::io::shown_url(&announcement.url);
    let bytes = fetch(&announcement.url).map_err(|reason| Refusal::Fetch {
        url: shown.clone(),
        reason,
    })?;
    let model = manifest::verify_bytes(&announcement.manifest, &bytes, key, Path::new(&shown))
        .map_err(|e| Refusal::Manifest(e.to_string()))?;
    if model.feature_names().is_none() {
        return Err(Refusal::Unnamed(names.to_vec()));
    }
    let loaded = LoadedModel::new(model, names).map_err(|e| Refusal::Features(e.to_string()))?;
    let mut scratch = Vec::new();
    let zeros = vec![0.0; names.len()];
    let rows = [
        ("zeros", Some(zeros.as_slice())),
        ("a recent feature row", row),
    ];
    for (on, row) in rows {
        let Some(row) = row.filter(|r| r.len() == names.len()) else {
            continue;
        };
        let value = loaded.predict(row, &mut scratch);
        if !value.is_finite() {
            return Err(Refusal::Smoke { on, value });
        }
    }
    Ok(Accepted {
        model: Arc::new(loaded),
        manifest: announcement.manifest.clone(),
        bytes,
    })
}

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("only http:// and https:// URLs are fetched".into());
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => format!("HTTP status {code}"),
        // ureq's own messages may quote the URL: keep only the kind of failure
        other => error_kind(&other),
    })?;
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_MODEL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the body: {}", e.kind()))?;
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(format!("the body is over {MAX_MODEL_BYTES} bytes"));
    }
    Ok(bytes)
}

fn error_kind(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => format!("{}", io.kind()),
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => "TLS failed".into(),
        _ => "request failed".into(),
    }
}

/// Keeps accepted models as `<dir>/<sha256 prefix>.model` with their manifest beside,
/// the newest `keep` of them (by modification time); `protect` (the active and the
/// previous model) are never removed.
pub fn store(
    dir: &Path,
    accepted: &Accepted,
    keep: usize,
    protect: &[&str],
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let stem = stem(&accepted.manifest.model_sha256);
    let path = dir.join(format!("{stem}.model"));
    let tmp = dir.join(format!("{stem}.model.tmp"));
    std::fs::write(&tmp, &accepted.bytes)?;
    std::fs::rename(&tmp, &path)?;
    let text = serde_json::to_string_pretty(&accepted.manifest).map_err(std::io::Error::other)?;
    std::fs::write(manifest::manifest_path(&path), text)?;
    prune(dir, keep, protect)?;
    Ok(path)
}

fn prune(dir: &Path, keep: usize, protect: &[&str]) -> std::io::Result<()> {
    let mut models: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "model"))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    models.sort();
    let excess = models.len().saturating_sub(keep);
    for (_, path) in models.into_iter().take(excess) {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if protect
            .iter()
            .any(|p| p.starts_with(stem) && !stem.is_empty())
        {
            continue;
        }
        std::fs::remove_file(manifest::manifest_path(&path)).ok();
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

/// The file in the model directory naming the model promoted last (its file stem), so
/// that a restart resumes with it.
const ACTIVE_FILE: &str = "active";

/// The file stem of a kept model: the first 16 hex digits of its sha256.
pub fn stem(sha256: &str) -> &str {
    &sha256[..16.min(sha256.len())]
}

/// Record the kept model with `sha256` as the active one; `None`: the node's own
/// `model:` is (no file).
pub fn record_active(dir: &Path, sha256: Option<&str>) -> std::io::Result<()> {
    let path = dir.join(ACTIVE_FILE);
    match sha256 {
        Some(sha) => {
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(format!("{ACTIVE_FILE}.tmp"));
            std::fs::write(&tmp, format!("{}\n", stem(sha)))?;
            std::fs::rename(&tmp, &path)
        }
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// The model an earlier run promoted, checked again (signature with `key`, sha256,
/// features): `Ok(None)` if there is none.
pub fn restore_active(
    dir: &Path,
    key: &VerifyingKey,
    names: &[String],
) -> Result<Option<(Arc<LoadedModel>, Manifest)>, String> {
    let stem = match std::fs::read_to_string(dir.join(ACTIVE_FILE)) {
        Ok(text) => text.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{} does not name a kept model",
            dir.join(ACTIVE_FILE).display()
        ));
    }
    let path = dir.join(format!("{stem}.model"));
    let manifest = manifest::verify(&path, key).map_err(|e| e.to_string())?;
    let model = smartgrid_models::Model::from_file(&path).map_err(|e| e.to_string())?;
    let loaded = LoadedModel::new(model, names).map_err(|e| e.to_string())?;
    Ok(Some((Arc::new(loaded), manifest)))
}
