//! Payload and output formats, apart from the node kinds that use them (no timely code).
//!
//! **In: payloads → readings.** A [`PayloadDecoder`] turns one payload into one reading
//! (sensor, event time, row) or a [`DecodeError`] with a short machine-readable reason.
//! Three formats exist, chosen by a `decode` node's `format:` key ([`FormatConfig`]):
//!
//! * `clemap`: the Clemap binary messages ([`clemap`]), feature type 16 or 17;
//! * `struct`: any fixed-size binary record described in YAML ([`structs`]);
//! * `json`: JSON objects with a field mapping ([`json`]).
//!
//! **Out: readings → text.** An [`Encoder`] writes readings of one schema in one
//! [`Format`]: line protocol ([`line_protocol`]), JSON ([`json_record`]: the one JSON
//! record shape, also what the `iothub` sink sends), CSV ([`csv`]) or text ([`text`]).

pub mod clemap;
mod config;
mod convert;
pub mod csv;
mod decoder;
mod encoder;
pub mod json;
pub mod json_record;
pub mod line_protocol;
pub mod structs;
pub mod text;

pub use clemap::{ClemapConfig, ClemapDecoder};
pub use config::FormatConfig;
pub use convert::TimeUnit;
pub(crate) use convert::{
    MAX_EXACT_INT, bytes_at, div_exact_i64, div_exact_u64, float_time_ms, int_time_ms,
    sensor_from_int, sensor_from_topic,
};
pub use decoder::{DecodeError, Decoded, PayloadDecoder};
pub use encoder::{Encoder, Format, Precision, rfc3339};
pub use json::{JsonConfig, JsonDecoder};
pub use json_record::JsonRecord;
pub use line_protocol::{LineProtocol, escape_key, escape_measurement};
pub use structs::{StructConfig, StructDecoder};
