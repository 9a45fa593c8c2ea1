//! Signed model files: ed25519 key pairs (`keys`) and the signed manifest written beside
//! a model (`manifest`). See docs/models-signing.md for the formats and the commands.
//!
//! Errors are typed here (`KeyError`, `ManifestError`); the commands in `sign_cmd`
//! show them through `anyhow` with their causes.

pub mod announcement;
pub mod keys;
pub mod manifest;
