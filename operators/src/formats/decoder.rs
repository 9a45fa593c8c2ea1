//! What every payload decoder has in common: the [`PayloadDecoder`] trait, what a decode
//! yields ([`Decoded`]) and why it fails ([`DecodeError`], with a short stable reason).

use smartgrid_runtime::record::{Row, SensorId};
use smartgrid_runtime::schema::Schema;

/// What a successful decode yields besides the row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decoded {
    /// The reading's sensor.
    pub sensor: SensorId,
    /// Event time, ms since the Unix epoch.
    pub time_ms: i64,
}

/// Why a payload could not be decoded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Zero bytes.
    #[error("empty payload")]
    Empty,
    /// Shorter than its type's layout.
    #[error("truncated: feature type {feature_type} needs {expected} bytes, got {got}")]
    Truncated {
        feature_type: u8,
        expected: usize,
        got: usize,
    },
    /// Longer than its type's layout.
    #[error("extra bytes: feature type {feature_type} needs {expected} bytes, got {got}")]
    Extra {
        feature_type: u8,
        expected: usize,
        got: usize,
    },
    /// A feature type with no layout.
    #[error("unknown feature type {0}")]
    UnknownType(u8),
    /// A NaN or infinite value where a number is required.
    #[error("field `{0}` is not a finite number")]
    NonFinite(String),
    /// Anything else the format rejects (bad JSON, missing field, …).
    #[error("{0}")]
    Invalid(String),
    /// Shorter than a `struct` layout (which has no feature type to name).
    #[error("truncated: the layout needs {expected} bytes, got {got}")]
    LayoutTruncated { expected: usize, got: usize },
    /// Longer than a `struct` layout.
    #[error("extra bytes: the layout needs {expected} bytes, got {got}")]
    LayoutExtra { expected: usize, got: usize },
    /// Stamped further ahead of this machine's clock than the decoder allows: a wrong
    /// clock on the device, which would otherwise make every later reading late.
    #[error(
        "stamped {ahead_ms} ms ahead of this machine's clock (at most {allowed_ms} ms allowed)"
    )]
    Future { ahead_ms: i64, allowed_ms: i64 },
}

impl DecodeError {
    /// A short stable reason, used as the counter name and in dead letters:
    /// `empty`, `truncated`, `extra`, `unknown_type`, `non_finite`, `invalid`, `future`.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::Truncated { .. } | DecodeError::LayoutTruncated { .. } => "truncated",
            DecodeError::Extra { .. } | DecodeError::LayoutExtra { .. } => "extra",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::NonFinite(_) => "non_finite",
            DecodeError::Invalid(_) => "invalid",
            DecodeError::Future { .. } => "future",
        }
    }
}

/// Turns payloads of one format into readings of one schema.
///
/// A planned node holds one decoder and gives each worker its own
/// ([`for_worker`](Self::for_worker)), so decoding may keep per-worker caches.
pub trait PayloadDecoder: Send + Sync {
    /// The names of the values written into the row, in order.
    fn schema(&self) -> Schema;

    /// A decoder of the same settings for one worker, with empty caches.
    fn for_worker(&self) -> Box<dyn PayloadDecoder>;

    /// Decode `payload` (received on `topic`) into `row` (which is empty on entry).
    /// `Ok(None)` means a valid payload this decoder was told to skip (another
    /// feature type); it is counted, not an error.
    fn decode(
        &mut self,
        topic: &str,
        payload: &[u8],
        row: &mut Row,
    ) -> Result<Option<Decoded>, DecodeError>;
}
