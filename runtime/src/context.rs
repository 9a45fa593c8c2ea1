//! Process-wide services shared by every worker of a run.

use std::path::PathBuf;
use std::sync::Arc;

use crate::checkpoint::Checkpoints;
use crate::liveness::Liveness;
use crate::metrics::Metrics;
use crate::pressure::Pressure;
use crate::shutdown::Shutdown;

/// What every node may use, once per process.
#[derive(Clone, Debug)]
pub struct ProcessContext {
    /// The pipeline's name (a tag on stored points).
    pub pipeline: String,
    /// The pipeline file's directory; relative paths resolve against it.
    pub base_dir: PathBuf,
    /// Counters.
    pub metrics: Metrics,
    /// The stop flag.
    pub shutdown: Shutdown,
    /// Raised while a sink's hand-off queue is full: sources pause (see [`Pressure`]).
    pub pressure: Pressure,
    /// Whether the sources are connected and caught up (see [`Liveness`]); built on
    /// `pressure`.
    pub liveness: Liveness,
    /// What the previous run left and this run keeps (see [`Checkpoints`]).
    pub checkpoints: Arc<Checkpoints>,
    /// Workers per process.
    pub workers: usize,
    /// This process's index in a cluster run (0 for a single process).
    pub process_index: usize,
    /// How many processes the run has (1 for a single process).
    pub process_count: usize,
    /// Live samples of the nodes' outputs (`smartgrid tap`); `None` (no tap points,
    /// not even their one load per batch) unless the run serves them.
    pub taps: Option<crate::tap::Taps>,
}
