//! The signed manifest written beside a model file (`MODEL.manifest.json`): what the
//! model is (version, parent, features, trees, training rows, held-out metrics), the
//! sha256 of its bytes, and an ed25519 signature over all of that.
//!
//! # What is signed
//!
//! The signature (`signature`, base64 of the 64-byte ed25519 signature, RFC 8032, no
//! pre-hashing) is over the **canonical encoding** of every other field: the manifest
//! as a JSON object without `signature`, with
//!
//! * every other field present (an absent optional value is `null`, no metrics is
//!   `{}`), keys in byte-wise sorted order (also inside `metrics`),
//! * no whitespace at all (`","` and `":"` separators),
//! * strings as UTF-8, escaping only `"`, `\` and control characters (`\b \f \n \r \t`,
//!   else `\u00xx` with lowercase hex), never non-ASCII,
//! * integers in decimal, metric values as the shortest decimal that reads back as the
//!   same f64 (finite only).
//!
//! In Python that is `json.dumps({k: v for k, v in m.items() if k != "signature"},
//! sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()` for metric
//! values that Python prints without an exponent (tests/model_sign.rs checks a
//! signature that way, with the `cryptography` package).
//!
//! The model's bytes are covered through `model_sha256`; the file's name is not
//! signed, so a signed model can be renamed or copied (with its manifest).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Model, ModelError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The value of `format`: names this layout, so a later one is not misread.
pub const FORMAT: &str = "smartgrid-model-manifest/1";

/// A signed model manifest, as stored (pretty JSON) in `MODEL.manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The model's version: `--version`, or the first 12 hex digits of `model_sha256`.
    pub version: String,
    /// The version this model was trained to replace, if any.
    pub parent: Option<String>,
    /// When it was signed, UTC, RFC 3339 to the second (`2026-12-02T01:00:00Z`).
    pub created: String,
    /// The model's feature names in feature order (`null` if the file has none).
    pub feature_names: Option<Vec<String>>,
    /// Number of trees in the model.
    pub trees: u64,
    /// Rows it was trained on, when known.
    pub training_rows: Option<u64>,
    /// Held-out metrics by name (e.g. `"mae"`), when known; finite values only.
    pub metrics: BTreeMap<String, f64>,
    /// sha256 of the model file's bytes, lowercase hex.
    pub model_sha256: String,
    /// base64 of the ed25519 signature over [`Manifest::signed_bytes`].
    pub signature: String,
}

/// The signed fields, declared in sorted key order: serde writes a struct's fields in
/// declaration order whatever the `serde_json` features (the workspace enables
/// `preserve_order`, so a `Value` map would not sort).
#[derive(Serialize)]
struct Signed<'a> {
    created: &'a str,
    feature_names: Option<&'a [String]>,
    format: &'a str,
    metrics: &'a BTreeMap<String, f64>,
    model_sha256: &'a str,
    parent: Option<&'a str>,
    // "training_rows" < "trees": 'a' < 'e'
    training_rows: Option<u64>,
    trees: u64,
    version: &'a str,
}

/// What `sign` is told beyond the model itself.
#[derive(Debug, Default, Clone)]
pub struct SignOptions {
    pub version: Option<String>,
    pub parent: Option<String>,
    pub training_rows: Option<u64>,
    pub metrics: BTreeMap<String, f64>,
}

/// Why a manifest could not be written, read or verified.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read model {path}: {source}")]
    ReadModel {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("no manifest: {path} does not exist (sign the model with `smartgrid model sign`)")]
    Missing { path: PathBuf },
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed manifest {path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(
        "signature of {path} does not verify with this public key: the manifest was \
         changed after signing, or signed with another key"
    )]
    BadSignature { path: PathBuf },
    #[error("model {path} does not match its manifest: sha256 {actual}, manifest says {expected}")]
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("model {path} does not match its manifest: {what}")]
    ContentMismatch { path: PathBuf, what: String },
    #[error("metric {name:?} is {value}: only finite values can be signed")]
    NonFiniteMetric { name: String, value: f64 },
    #[error("cannot write manifest {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `MODEL.manifest.json` for `MODEL`.
pub fn manifest_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_owned();
    name.push(".manifest.json");
    PathBuf::from(name)
}

impl Manifest {
    /// The exact bytes the signature covers (see the module documentation).
    pub fn signed_bytes(&self) -> Vec<u8> {
        let signed = Signed {
            created: &self.created,
            feature_names: self.feature_names.as_deref(),
            format: &self.format,
            metrics: &self.metrics,
            model_sha256: &self.model_sha256,
            parent: self.parent.as_deref(),
            trees: self.trees,
            training_rows: self.training_rows,
            version: &self.version,
        };
        // metrics are checked finite when signing and when read back, and the rest are
        // strings and integers: serializing cannot fail
        serde_json::to_vec(&signed).expect("a manifest of strings, integers and finite floats")
    }

    /// Read `path`: a missing file, bad JSON, an unknown or missing field, another
    /// `format` or a signature that is not 64 base64 bytes are errors.
    pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ManifestError::Missing {
                path: path.to_owned(),
            },
            _ => ManifestError::Read {
                path: path.to_owned(),
                source,
            },
        })?;
        let malformed = |reason: String| ManifestError::Malformed {
            path: path.to_owned(),
            reason,
        };
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| malformed(e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(malformed(format!(
                "format is {:?}, expected {FORMAT:?}",
                manifest.format
            )));
        }
        // serde_json reads no NaN or infinity, but a huge literal overflows to one
        if let Some((name, _)) = manifest.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(malformed(format!("metric {name:?} is not a finite number")));
        }
        manifest.signature_bytes().map_err(malformed)?;
        Ok(manifest)
    }

    fn signature_bytes(&self) -> Result<Signature, String> {
        let bytes = BASE64
            .decode(&self.signature)
            .map_err(|_| "signature is not base64".to_owned())?;
        let bytes = <[u8; 64]>::try_from(bytes.as_slice()).map_err(|_| {
            format!(
                "signature is {} bytes, an ed25519 signature is 64",
                bytes.len()
            )
        })?;
        Ok(Signature::from_bytes(&bytes))
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn read_model(path: &Path) -> Result<(Vec<u8>, Model), ManifestError> {
    let bytes = std::fs::read(path).map_err(|source| ManifestError::ReadModel {
        path: path.to_owned(),
        source,
    })?;
    let model = Model::parse(&bytes).map_err(|error| ModelError::InFile {
        path: path.to_owned(),
        error: Box::new(error),
    })?;
    Ok((bytes, model))
}

/// Sign `model_path` with `key` and write `MODEL.manifest.json` beside it (replacing an
/// earlier manifest). The model must load: a manifest vouches for a usable model.
pub fn sign(
    model_path: &Path,
    key: &SigningKey,
    options: SignOptions,
) -> Result<(PathBuf, Manifest), ManifestError> {
    if let Some((name, &value)) = options.metrics.iter().find(|(_, v)| !v.is_finite()) {
        return Err(ManifestError::NonFiniteMetric {
            name: name.clone(),
            value,
        });
    }
    let (bytes, model) = read_model(model_path)?;
    let model_sha256 = sha256_hex(&bytes);
    let mut manifest = Manifest {
        format: FORMAT.to_owned(),
        version: options
            .version
            .unwrap_or_else(|| model_sha256[..12].to_owned()),
        parent: options.parent,
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        feature_names: model.feature_names().map(<[String]>::to_vec),
        trees: model.info().trees as u64,
        training_rows: options.training_rows,
        metrics: options.metrics,
        model_sha256,
        signature: String::new(),
    };
    let signature = key.sign(&manifest.signed_bytes());
    manifest.signature = BASE64.encode(signature.to_bytes());

    let path = manifest_path(model_path);
    let mut text = serde_json::to_string_pretty(&manifest)
        .expect("a manifest of strings, integers and finite floats");
    text.push('\n');
    // write then rename: a reader never sees half a manifest
    let tmp = {
        let mut name = path.as_os_str().to_owned();
        name.push(".tmp");
        PathBuf::from(name)
    };
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| ManifestError::Write {
            path: path.clone(),
            source,
        })?;
    Ok((path, manifest))
}

/// Check `model_path` against its manifest: the signature verifies with `key` (strict
/// RFC 8032 verification), the file's sha256 is the manifest's, and the model's
/// feature names and tree count are the manifest's. Returns the manifest.
pub fn verify(model_path: &Path, key: &VerifyingKey) -> Result<Manifest, ManifestError> {
    let path = manifest_path(model_path);
    let manifest = Manifest::read(&path)?;
    let signature = manifest
        .signature_bytes()
        .map_err(|reason| ManifestError::Malformed {
            path: path.clone(),
            reason,
        })?;
    key.verify_strict(&manifest.signed_bytes(), &signature)
        .map_err(|_| ManifestError::BadSignature { path: path.clone() })?;
    // the hash before parsing: a changed model is reported as such, not as whatever
    // parse error the change may cause
    let bytes = std::fs::read(model_path).map_err(|source| ManifestError::ReadModel {
        path: model_path.to_owned(),
        source,
    })?;
    let actual = sha256_hex(&bytes);
    if actual != manifest.model_sha256 {
        return Err(ManifestError::Sha256Mismatch {
            path: model_path.to_owned(),
            expected: manifest.model_sha256.clone(),
            actual,
        });
    }
    let model = Model::parse(&bytes).map_err(|error| ModelError::InFile {
        path: model_path.to_owned(),
        error: Box::new(error),
    })?;
    let mismatch = |what: String| ManifestError::ContentMismatch {
        path: model_path.to_owned(),
        what,
    };
    if model.feature_names() != manifest.feature_names.as_deref() {
        return Err(mismatch(format!(
            "feature names {:?}, manifest says {:?}",
            model.feature_names(),
            manifest.feature_names
        )));
    }
    let trees = model.info().trees as u64;
    if trees != manifest.trees {
        return Err(mismatch(format!(
            "{trees} trees, manifest says {}",
            manifest.trees
        )));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical encoding, byte for byte, as the module documentation describes it:
    /// sorted keys, no whitespace, `null` for absent values, JSON escapes only for `"`,
    /// `\` and control characters, non-ASCII as UTF-8.
    #[test]
    fn signed_bytes_are_the_documented_encoding() {
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            version: "v2 \"ü\"\n".to_owned(),
            parent: None,
            created: "2026-12-02T01:00:00Z".to_owned(),
            feature_names: Some(vec!["a".to_owned(), "b\u{1}".to_owned()]),
            trees: 3,
            training_rows: Some(10),
            metrics: BTreeMap::from([("rmse".to_owned(), 0.125), ("mae".to_owned(), 12.0)]),
            model_sha256: "0f".repeat(32),
            signature: "ignored".to_owned(),
        };
        let expected = format!(
            concat!(
                r#"{{"created":"2026-12-02T01:00:00Z","feature_names":["a","b\u0001"],"#,
                r#""format":"smartgrid-model-manifest/1","metrics":{{"mae":12.0,"rmse":0.125}},"#,
                r#""model_sha256":"{}","parent":null,"training_rows":10,"trees":3,"#,
                r#""version":"v2 \"ü\"\n"}}"#
            ),
            "0f".repeat(32)
        );
        assert_eq!(
            String::from_utf8(manifest.signed_bytes()).ok(),
            Some(expected)
        );
    }
}
