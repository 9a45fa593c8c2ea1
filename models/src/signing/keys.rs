//! Key files for model signing: ed25519, raw 32-byte keys, each in a two-line text file
//!
//! ```text
//! smartgrid ed25519 private key v1
//! <base64 (standard alphabet, padded) of the 32-byte seed>
//! ```
//!
//! and the same with `public key` for the 32-byte public key (RFC 8032 encoding). Text
//! rather than PKCS#8 PEM so that a person can tell the two files apart at a glance
//! and any language can read them with a base64 decoder; the header names the
//! algorithm so a future key type cannot be mistaken for this one.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{SigningKey, VerifyingKey};

/// First line of a private key file.
pub const PRIVATE_HEADER: &str = "smartgrid ed25519 private key v1";
/// First line of a public key file.
pub const PUBLIC_HEADER: &str = "smartgrid ed25519 public key v1";
/// File names `smartgrid keys generate --out DIR` writes in DIR.
pub const PRIVATE_FILE: &str = "model-signing.key";
pub const PUBLIC_FILE: &str = "model-signing.pub";

/// Why a key file could not be read or written. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed key file {path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path} already exists: refusing to overwrite a signing key")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),
}

/// The two paths `generate` writes.
pub struct GeneratedPaths {
    pub private: PathBuf,
    pub public: PathBuf,
}

/// Generate a key pair from the OS RNG into `dir` (created if missing). The private
/// key file is created with mode 0600 and `create_new`, so an existing key is never
/// overwritten, even by a concurrent run.
pub fn generate(dir: &Path) -> Result<GeneratedPaths, KeyError> {
    let private = dir.join(PRIVATE_FILE);
    let public = dir.join(PUBLIC_FILE);
    std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Rng(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    seed.fill(0); // SigningKey zeroizes its own copy on drop; this one too
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists { path }
            } else {
                KeyError::Write { path, source }
            }
        }
    };
    let mut file = create_private(&private).map_err(write_err(&private))?;
    let text = format!("{PRIVATE_HEADER}\n{}\n", BASE64.encode(key.to_bytes()));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(write_err(&private))?;
    // the public half may be replaced: it is derived from the (new) private key
    let text = format!(
        "{PUBLIC_HEADER}\n{}\n",
        BASE64.encode(key.verifying_key().to_bytes())
    );
    std::fs::write(&public, text).map_err(write_err(&public))?;
    Ok(GeneratedPaths { private, public })
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Read a private key file.
pub fn read_private(path: &Path) -> Result<SigningKey, KeyError> {
    let bytes = read_key(path, PRIVATE_HEADER, PUBLIC_HEADER)?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Read a public key file.
pub fn read_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let bytes = read_key(path, PUBLIC_HEADER, PRIVATE_HEADER)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Malformed {
        path: path.to_owned(),
        reason: "the 32 bytes are not an ed25519 public key (not a curve point)".into(),
    })
}

/// The 32 key bytes of a file with `header`; `other` is the other kind's header, named
/// in the error when the files are swapped. Errors never quote the file's content.
fn read_key(path: &Path, header: &str, other: &str) -> Result<[u8; 32], KeyError> {
    let malformed = |reason: String| KeyError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::InvalidData => malformed("not UTF-8 text".into()),
        _ => KeyError::Read {
            path: path.to_owned(),
            source,
        },
    })?;
    let mut lines = text.lines();
    match lines.next().map(str::trim_end) {
        Some(first) if first == header => {}
        Some(first) if first == other => {
            return Err(malformed(format!(
                "expected a {header:?} file, found {other:?}"
            )));
        }
        _ => return Err(malformed(format!("the first line is not {header:?}"))),
    }
    let body = lines.next().map(str::trim).unwrap_or_default();
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(malformed("more than one line after the header".into()));
    }
    let decoded = BASE64
        .decode(body)
        .map_err(|_| malformed("the key line is not base64".into()))?;
    <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| {
        malformed(format!(
            "the key is {} bytes; an ed25519 key is 32",
            decoded.len()
        ))
    })
}

/// A short, printable identifier of a public key: the first 16 hex digits of its
/// bytes' sha256 (like an SSH key's fingerprint, to tell keys apart in a summary).
pub fn fingerprint(key: &VerifyingKey) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}
