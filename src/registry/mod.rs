//! The versioned model registry: a directory of signed models and which one is
//! active.
//!
//! ```text
//! DIR/versions/VERSION/model.txt                 the model file
//! DIR/versions/VERSION/model.txt.manifest.json   its signed manifest (version, parent,
//!                                                created, features, training rows,
//!                                                held-out metrics, sha256, signature)
//! DIR/state.json                                 {"active": VERSION|null, "previous": [VERSION…]}
//! ```
//!
//! `previous` is a stack: promoting pushes the version it replaces, `rollback` pops
//! it. A version directory is never changed once written: a version names bytes.
//! `state.json` is replaced by write-then-rename, so a reader (`registry serve`) never
//! sees half of it.

pub mod announce;
pub mod blob;
pub mod push;
pub mod serve;
pub mod twin;

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use smartgrid_models::signing::manifest::{self, Manifest, SignOptions};

/// The model file's name inside a version directory.
pub const MODEL_FILE: &str = "model.txt";
/// Its manifest's name.
pub const MANIFEST_FILE: &str = "model.txt.manifest.json";

/// Which version is active, and the ones it replaced (most recent last).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub active: Option<String>,
    #[serde(default)]
    pub previous: Vec<String>,
}

/// A registry directory.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

/// One version, as `model list` shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub manifest: Manifest,
    pub active: bool,
}

/// A version name is a path component: letters, digits, `.`, `-`, `_`, not starting
/// with `.` (so `..` and hidden names are out).
pub fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= 64
        && !version.starts_with('.')
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Registry {
    /// Open (and create if missing) the registry at `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Registry> {
        std::fs::create_dir_all(dir.join("versions"))
            .with_context(|| format!("creating the registry {}", dir.display()))?;
        Ok(Registry {
            dir: dir.to_owned(),
        })
    }

    /// An exclusive lock on the registry, held until the file is dropped: a `retrain`
    /// service publishing and someone promoting by hand take turns, so neither's state
    /// update is lost. (An advisory lock on `.lock`: on one machine, or on a network
    /// file system that implements `flock`.)
    fn lock(&self) -> anyhow::Result<std::fs::File> {
        let path = self.dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(file)
    }

    fn version_dir(&self, version: &str) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(
            valid_version(version),
            "{version:?} is not a version name (letters, digits, '.', '-', '_')"
        );
        Ok(self.dir.join("versions").join(version))
    }

    /// The model file of `version` (whether or not it exists).
    pub fn model_path(&self, version: &str) -> anyhow::Result<PathBuf> {
        Ok(self.version_dir(version)?.join(MODEL_FILE))
    }

    pub fn state(&self) -> anyhow::Result<State> {
        let path = self.dir.join("state.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("malformed registry state {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn write_state(&self, state: &State) -> anyhow::Result<()> {
        let path = self.dir.join("state.json");
        let tmp = self.dir.join("state.json.tmp");
        let mut text = serde_json::to_string_pretty(state).context("registry state")?;
        text.push('\n');
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The manifest of `version`, checked to match the model's bytes.
    pub fn manifest(&self, version: &str) -> anyhow::Result<Manifest> {
        let model = self.model_path(version)?;
        anyhow::ensure!(
            model.is_file(),
            "no version {version:?} in {}",
            self.dir.display()
        );
        let manifest = Manifest::read(&manifest::manifest_path(&model))?;
        let bytes =
            std::fs::read(&model).with_context(|| format!("reading {}", model.display()))?;
        use sha2::Digest;
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        anyhow::ensure!(
            actual == manifest.model_sha256,
            "{} does not match its manifest (sha256 {actual})",
            model.display()
        );
        Ok(manifest)
    }

    /// Every version, oldest first (by `created`, then name).
    pub fn list(&self) -> anyhow::Result<Vec<Entry>> {
        let state = self.state()?;
        let dir = self.dir.join("versions");
        let mut entries = Vec::new();
        for item in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let item = item.with_context(|| format!("reading {}", dir.display()))?;
            let Some(name) = item.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !valid_version(&name) {
                continue;
            }
            let manifest = self.manifest(&name)?;
            entries.push(Entry {
                active: state.active.as_deref() == Some(name.as_str()),
                manifest,
            });
        }
        entries.sort_by(|a, b| {
            (&a.manifest.created, &a.manifest.version)
                .cmp(&(&b.manifest.created, &b.manifest.version))
        });
        Ok(entries)
    }

    /// Add `model_text` as a new version signed with `key` (parent: the active
    /// version) and make it active. The version is `options.version`, or the first 12
    /// hex digits of the model's sha256. Returns its manifest.
    #[cfg_attr(not(feature = "train"), allow(dead_code))] // only `retrain` publishes
    pub fn publish(
        &self,
        model_text: &[u8],
        key: &ed25519_dalek::SigningKey,
        mut options: SignOptions,
    ) -> anyhow::Result<Manifest> {
        let _lock = self.lock()?;
        let state = self.state()?;
        let version = match options.version.clone() {
            Some(v) => v,
            None => {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(model_text))[..12].to_owned()
            }
        };
        let dir = self.version_dir(&version)?;
        anyhow::ensure!(
            !dir.exists(),
            "version {version} is already in the registry (the same model was published before)"
        );
        // build it aside and rename: a half-written version is never listed
        let staging = self.dir.join(format!(".staging-{version}"));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)
            .with_context(|| format!("creating {}", staging.display()))?;
        let model = staging.join(MODEL_FILE);
        std::fs::write(&model, model_text)
            .with_context(|| format!("writing {}", model.display()))?;
        options.version = Some(version.clone());
        options.parent = state.active.clone();
        let (_, manifest) = manifest::sign(&model, key, options)?;
        std::fs::rename(&staging, &dir).with_context(|| format!("creating {}", dir.display()))?;
        self.make_active(&version)?;
        Ok(manifest)
    }

    /// Make `version` active; the active one goes on the rollback stack.
    pub fn promote(&self, version: &str) -> anyhow::Result<Manifest> {
        let _lock = self.lock()?;
        self.make_active(version)
    }

    /// [`promote`](Self::promote), the lock already held.
    fn make_active(&self, version: &str) -> anyhow::Result<Manifest> {
        let manifest = self.manifest(version)?;
        let mut state = self.state()?;
        if state.active.as_deref() == Some(version) {
            return Ok(manifest);
        }
        if let Some(active) = state.active.take() {
            state.previous.push(active);
        }
        state.active = Some(version.to_owned());
        self.write_state(&state)?;
        Ok(manifest)
    }

    /// Make the previously active version active again.
    pub fn rollback(&self) -> anyhow::Result<Manifest> {
        let _lock = self.lock()?;
        let mut state = self.state()?;
        let previous = state
            .previous
            .pop()
            .context("nothing to roll back to: no version was active before this one")?;
        let manifest = self.manifest(&previous)?;
        state.active = Some(previous);
        self.write_state(&state)?;
        Ok(manifest)
    }
}
