//! The sink toolkit: what the `influx`, `iothub`, `file` and `stdout` sinks share, so
//! that they deliver the same way and read the same keys.
//!
//! ```text
//!  worker 0: render_sink ──Handoff (never blocks)──▶ Inbox: the sink's writer thread
//!              │ queue full: keeps the chunk,           batches (size, delay), sends,
//!              │ raises the process's Pressure          retries (Backoff), spools,
//!              │ (sources pause), retries soon          dead-letters, drains on exit
//! ```
//!
//! * [`handoff`]: the bounded queue between the operator and the writer thread, with
//!   the operator's pending buffer and the pressure it raises while the queue is full.
//! * [`checkpoint`]: a sink's part in the checkpoints: marks that travel with the
//!   chunks, taken by the writer once what precedes them is durable.
//! * [`operator`]: the sink's state (hand-off and writer thread; started in
//!   `Node::start`, joined in `Node::finish`) and worker 0's operator.
//! * [`dead_letter`]: the one JSON-lines dead-letter file and record shape.
//! * [`record_letters`]: the `dead_letter:` key of an operator that refuses records
//!   mid-pipeline (`window_mean`'s late readings): file and/or topic, per process.
//! * [`throttle`]: one log line per reason per 10 s, with a count of what was held back.
//! * [`config`]: the keys every sink reads the same way: `retry`, `spool`, `queue`,
//!   `drain_timeout`, `dead_letter` (and `tls`, in [`crate::io::TlsConfig`]).

pub mod checkpoint;
pub mod config;
pub mod dead_letter;
pub mod handoff;
pub mod operator;
pub mod record_letters;

pub use crate::io::ThrottledLog;
pub use checkpoint::{Mark, SinkCheckpoint};
pub use config::{RetryConfig, SpoolConfig};
pub use dead_letter::{DeadLetters, Payload, Reason};
pub use handoff::{Chunk, Handoff, Inbox, Lines, Received, handoff};
pub use operator::{SinkState, render_lines, render_sink, spool_and_dead_letter_claims};
pub use smartgrid_runtime::spec::ByteSize;
