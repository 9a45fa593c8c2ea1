//! `decode`: the node kind that turns raw payloads into readings.
//!
//! The payload formats themselves (the [`PayloadDecoder`] trait, [`FormatConfig`], the
//! Clemap, `struct` and JSON decoders) live in [`crate::formats`]; this node runs one of
//! them, counts errors per reason, logs them rate-limited, optionally dead-letters them,
//! and goes on.

pub mod errors;
pub mod node;
pub mod operator;
