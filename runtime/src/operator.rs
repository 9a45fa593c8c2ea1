//! The streams nodes exchange: timestamps, scopes, port types.
//!
//! What a node kind implements is in [`crate::node`].

use timely::dataflow::StreamVec;

use crate::node::StartError;
use crate::record::{Message, Reading};
use crate::schema::Schema;

/// Timely timestamps are event time in milliseconds since the Unix epoch.
pub type Time = u64;
/// The scope every node renders into.
pub type Scope<'s> = timely::dataflow::Scope<'s, Time>;
/// A stream of readings.
pub type Readings<'s> = StreamVec<'s, Time, Reading>;
/// A stream of raw payloads.
pub type Messages<'s> = StreamVec<'s, Time, Message>;

/// What a node's output carries, known at plan time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortType {
    /// Raw payloads (from a transport).
    Messages,
    /// Readings with this schema.
    Readings(Schema),
}

impl std::fmt::Display for PortType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortType::Messages => f.write_str("raw payloads"),
            PortType::Readings(schema) => write!(f, "readings [{schema}]"),
        }
    }
}

/// A rendered stream of either kind.
#[derive(Clone)]
pub enum AnyStream<'s> {
    /// Raw payloads.
    Messages(Messages<'s>),
    /// Readings.
    Readings(Readings<'s>),
}

/// Open `path` for writing (appending unless `truncate`), creating its folders: how
/// sinks and dead-letter files open their output in [`Node::start`](crate::node::Node::start).
pub fn open_output(
    path: &std::path::Path,
    truncate: bool,
) -> Result<std::io::BufWriter<std::fs::File>, StartError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StartError::Io {
            context: format!("cannot create {}", dir.display()),
            source,
        })?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(!truncate)
        .truncate(truncate)
        .open(path)
        .map_err(|source| StartError::Io {
            context: format!("cannot open {}", path.display()),
            source,
        })?;
    Ok(std::io::BufWriter::new(file))
}

/// `stream` exchanged so each sensor's readings are on worker `route_hash % peers`, the
/// worker keyed operators expect them on. In a pipeline the renderer does this where a
/// node reads an input [by sensor](crate::node::Routing::BySensor); code that builds a
/// dataflow by hand calls it before a keyed operator.
pub fn route_by_sensor(stream: Readings<'_>) -> Readings<'_> {
    use timely::dataflow::operators::Exchange;
    stream.exchange(|r: &Reading| r.sensor.route_hash())
}
