//! The pipeline file: YAML with positions → [`PipelineSpec`]. Nothing runs here.
//!
//! A pipeline file looks like
//! ```yaml
//! pipeline: home            # the pipeline's name (a tag on every stored point)
//! nodes:
//!   meters:                 # a node's name
//!     type: mqtt            # its kind, looked up in the registry
//!     url: ${BROKER:-embedded}
//!   readings:
//!     type: decode
//!     input: meters         # one input, or `inputs: [a, b]`
//!     format: clemap
//! ```
//! Every scalar may use `${VAR}` / `${VAR:-default}`; the substitution happens while a
//! node's settings are deserialized, so an unset variable is reported at its own
//! line and column, and secrets never appear in the spec's debug output.
//!
//! Settings can be written once: `<<: *anchor` merge keys in any mapping (merged while
//! the tree is built, values keeping their own positions), and `connections:`, named
//! settings a node takes under its own with `connection: <name>` (see `connections`).
//! `data_dir:` is where relative paths of what a run writes resolve
//! ([`PipelineSpec::data_dir`]).
//!
//! Each node's own settings (every key but `type`, `input`, `inputs`) stay as a YAML
//! tree with positions until the node's factory asks for them as its config type with
//! [`NodeSpec::settings`]; errors then point at the offending key or value.

mod byte_size;
mod connections;
mod de;
mod duration;
mod env;
pub mod observe;
mod one_or_many;
mod spanned;
mod yaml;

pub use byte_size::ByteSize;
pub use de::error_with_hint;
pub use duration::{Duration, ParseDurationError};
pub use one_or_many::OneOrMany;
pub use spanned::Spanned;
#[cfg(test)]
pub(crate) use yaml::TOP_KEYS;
pub use yaml::{Node, NodeValue, ScalarStyle};

use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Location};

/// A parsed pipeline file.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The file name used in diagnostics.
    pub file: String,
    /// The directory relative paths in the pipeline are resolved against.
    pub base_dir: PathBuf,
    /// The `pipeline:` name (defaults to the file stem).
    pub name: String,
    /// The directory relative paths of what a run writes (state, spools, dead letters,
    /// outboxes, write-ahead logs, file sinks) are resolved against: `data_dir:`
    /// (relative to the pipeline file), default the pipeline file's directory.
    pub data_dir: PathBuf,
    /// Where state that survives restarts is kept (`state_dir:`, relative to
    /// `data_dir`; default `.smartgrid/state/<pipeline>`).
    pub state_dir: PathBuf,
    /// How often state is checkpointed while the run goes on, when a source keeps a
    /// write-ahead log (`checkpoint_interval:`, default `10s`).
    pub checkpoint_interval: std::time::Duration,
    /// How the run can be watched (`http:`, `status_interval:`).
    pub observe: observe::ObserveSpec,
    /// The nodes, in file order.
    pub nodes: Vec<NodeSpec>,
}

/// One node of the pipeline, before its factory has looked at its settings.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The node's name (its key under `nodes:`).
    pub name: String,
    /// Where the name stands.
    pub at: Location,
    /// The `type:` value.
    pub kind: Spanned<String>,
    /// The `input:` / `inputs:` names (empty for sources).
    pub inputs: Vec<Spanned<String>>,
    /// The remaining keys, a YAML mapping with positions.
    pub settings: Node,
    /// The file name, for diagnostics.
    pub file: String,
    /// Environment lookup used for `${VAR}` substitution.
    pub env: Env,
    /// The `connection:` the node names, with where each of the keys it took from it
    /// stands (see [`NodeSpec::from_connection`]).
    pub connection: Option<(String, Vec<Location>)>,
}

/// How `${VAR}` is resolved: the process environment, or a fixed map (tests).
#[derive(Debug, Clone, Default)]
pub enum Env {
    /// `std::env::var`.
    #[default]
    Process,
    /// A fixed set of variables.
    Fixed(std::collections::BTreeMap<String, String>),
}

impl Env {
    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<String> {
        match self {
            Env::Process => std::env::var(name).ok(),
            Env::Fixed(map) => map.get(name).cloned(),
        }
    }
}

impl NodeSpec {
    /// Deserialize this node's settings into its config type (usually a struct with
    /// `#[serde(deny_unknown_fields)]`). Every error names this node, points at the key
    /// or value at fault, and carries a hint (an unknown key gets "did you mean …?" and
    /// the list of valid keys).
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, Vec<Diagnostic>> {
        de::from_node(&self.settings, &self.env).map_err(|errors| {
            errors
                .into_iter()
                .map(|d| d.node(&self.name).in_file(&self.file))
                .collect()
        })
    }

    /// The values `${VAR}`s in this node's settings expand to, each with the reference it
    /// replaced, for [`redact_secrets`].
    pub fn secrets(&self) -> Vec<(String, String)> {
        let mut secrets = Vec::new();
        de::collect_secrets(&self.settings, &self.env, &mut secrets);
        secrets
    }

    /// Every `${VAR}` in this node's settings that cannot be substituted (unset without
    /// a default, malformed), each at its scalar. Deserializing stops at the first
    /// problem of a value; this walk makes `validate` list them all at once.
    pub fn env_problems(&self) -> Vec<Diagnostic> {
        fn walk(node: &Node, env: &Env, out: &mut Vec<Diagnostic>) {
            match &node.value {
                NodeValue::Null => {}
                NodeValue::Scalar { text, .. } => {
                    if let Err(e) = env::substitute(text, env) {
                        let (message, hint) = e.describe(text);
                        out.push(Diagnostic::new(node.at, message).hint(hint));
                    }
                }
                NodeValue::Sequence(items) => items.iter().for_each(|n| walk(n, env, out)),
                NodeValue::Mapping(entries) => entries.iter().for_each(|(_, n)| walk(n, env, out)),
            }
        }
        let mut problems = Vec::new();
        walk(&self.settings, &self.env, &mut problems);
        problems
            .into_iter()
            .map(|mut d| {
                if let Some(connection) = self.from_connection(d.at) {
                    let hint = d.hint.take().unwrap_or_default();
                    d.hint = Some(format!("{hint} (from connection `{connection}`)"));
                }
                d.node(&self.name).in_file(&self.file)
            })
            .collect()
    }

    /// The scalar at `path` (keys joined by `.`, such as `retry.max_delay`): where it
    /// stands, its text as written, and its text after `${VAR}` substitution (`None` if
    /// that fails; deserializing reports why).
    pub fn scalar_at(&self, path: &str) -> Option<(Location, &str, Option<String>)> {
        let mut node = &self.settings;
        for key in path.split('.') {
            node = node.get(key)?;
        }
        match &node.value {
            NodeValue::Scalar { text, .. } => Some((
                node.at,
                text.as_str(),
                env::substitute(text, &self.env)
                    .ok()
                    .map(|s| s.text.into_owned()),
            )),
            _ => None,
        }
    }

    /// This node with only the settings whose key passes `keep`. A kind whose settings
    /// come in groups (common keys plus a format's own) deserializes each group into its
    /// own struct, keeping exact positions and `deny_unknown_fields` for both.
    pub fn select(&self, keep: impl Fn(&str) -> bool) -> NodeSpec {
        let mut part = self.clone();
        if let yaml::NodeValue::Mapping(entries) = &mut part.settings.value {
            entries.retain(|(k, _)| keep(&k.value));
        }
        part
    }

    /// Where `key` stands in this node's settings (the node's name if it is absent),
    /// for checks made after deserializing.
    pub fn key_at(&self, key: &str) -> Location {
        self.settings
            .entries()
            .iter()
            .find(|(k, _)| k.value == key)
            .map_or(self.at, |(k, _)| k.at)
    }

    /// The connection a problem at `at` came from, if `at` is in a setting this node
    /// took from its `connection:`.
    pub fn from_connection(&self, at: Location) -> Option<&str> {
        let (name, places) = self.connection.as_ref()?;
        places.contains(&at).then_some(name.as_str())
    }

    /// A diagnostic at `at` for this node, with the file filled in.
    pub fn error(&self, at: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(at, message)
            .node(&self.name)
            .in_file(&self.file)
    }
}

/// The largest pipeline file accepted: far above any real pipeline (a thousand nodes
/// take ~100 KiB), and small enough that parsing and checking one stays well under a
/// second.
pub const MAX_PIPELINE_BYTES: u64 = 4 * 1024 * 1024;

/// `text` with every value of `secrets` (from [`NodeSpec::secrets`]) replaced by the
/// `${VAR}` it came from.
pub fn redact_secrets(text: &str, secrets: &[(String, String)]) -> String {
    de::redact(text, secrets)
}

/// Read and parse a pipeline file. Structural problems (bad YAML, unknown top-level
/// keys, a node without `type`) are all reported together.
pub fn parse_file(path: &Path, env: Env) -> Result<PipelineSpec, Vec<Diagnostic>> {
    let too_big = |size: u64| {
        vec![
            Diagnostic::new(
                Location { line: 1, column: 1 },
                format!("the file is {size} bytes; a pipeline file may be at most {MAX_PIPELINE_BYTES} bytes (4 MiB)"),
            )
            .hint("split the pipeline, or generate a smaller one")
            .in_file(path.display().to_string()),
        ]
    };
    if let Ok(meta) = std::fs::metadata(path)
        && meta.len() > MAX_PIPELINE_BYTES
    {
        return Err(too_big(meta.len()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![
            Diagnostic::new(
                Location { line: 1, column: 1 },
                format!("cannot read the file: {e}"),
            )
            .in_file(path.display().to_string()),
        ]
    })?;
    if text.len() as u64 > MAX_PIPELINE_BYTES {
        // It grew between the size check and the read.
        return Err(too_big(text.len() as u64));
    }
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_str(&text, &path.display().to_string(), base_dir, env)
}

/// Read a YAML document that is not a pipeline (a pipeline test file) as a `T`, with a
/// pipeline file's positions, `${VAR}` substitution and hints ("did you mean …?" for an
/// unknown key): every problem is returned, each in `file` at its line and column.
pub fn parse_document<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    env: &Env,
) -> Result<T, Vec<Diagnostic>> {
    let in_file = |errors: Vec<Diagnostic>| -> Vec<Diagnostic> {
        errors.into_iter().map(|d| d.in_file(file)).collect()
    };
    let root = Node::parse(text).map_err(in_file)?;
    de::from_node(&root, env).map_err(in_file)
}

/// Parse pipeline text; `file` is the name shown in diagnostics.
pub fn parse_str(
    text: &str,
    file: &str,
    base_dir: PathBuf,
    env: Env,
) -> Result<PipelineSpec, Vec<Diagnostic>> {
    yaml::parse_pipeline(text, file, base_dir, env)
}
