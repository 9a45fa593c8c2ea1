//! The sinks' output encodings now live in [`crate::formats`].

// moved to crate::formats
pub use crate::formats::{Encoder, Format, Precision, escape_key, escape_measurement, rfc3339};
