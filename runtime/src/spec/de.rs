//! A serde [`Deserializer`](serde::Deserializer) over a [`Node`] tree.
//!
//! What it does beyond a plain YAML deserializer:
//!
//! * every error carries the position of the innermost key or value at fault (an error a
//!   value's own `Deserialize` impl returns through [`serde::de::Error::custom`] gets the
//!   value's position too);
//! * `${VAR}` / `${VAR:-default}` is substituted in every scalar value as it is read, and
//!   error messages quote the value as written, never the substituted text;
//! * plain scalars resolve like the YAML 1.2 core schema when the type does not say
//!   (`deserialize_any`); a typed request (`u16`, `f64`, `bool`, `String`…) reads the text
//!   as that type, quoted or not, so `port: ${PORT:-1883}` is a fine `u16`;
//! * an unknown key gets "did you mean …?" and the list of valid keys, and every unknown
//!   key of the mapping is reported, not only the first.
//!
//! A plain scalar that is empty after substitution (`${PASSWORD:-}`) reads as `None` for
//! an `Option`; quote it (`"${PASSWORD:-}"`) to get `Some("")`. An empty value (`tls:`)
//! reads as a struct with every key missing, so a struct whose fields all have defaults
//! can be switched on with its name alone.
//!
//! `node` deserializes one node and hands the rest to `scalar`, `access` (lists
//! and mappings) and `enums`; all of them raise `error`'s problems, which alone
//! knows how they are worded.

mod access;
mod enums;
mod error;
mod node;
mod scalar;

use serde::de::DeserializeOwned;

use super::Env;
use super::yaml::Node;
use crate::diagnostic::Diagnostic;
use node::NodeDe;

pub use error::error_with_hint;
pub(crate) use error::{collect_secrets, redact};

/// Deserialize `node` as a `T`, substituting `${VAR}` from `env`. Every problem found is
/// returned, each at its position (without a file or node name).
pub(crate) fn from_node<T: DeserializeOwned>(node: &Node, env: &Env) -> Result<T, Vec<Diagnostic>> {
    T::deserialize(NodeDe { node, env }).map_err(|e| e.locate(node, env).into_diagnostics())
}

#[cfg(test)]
mod tests;
