//! smartgrid's runtime: the pipeline DSL, validation, the plan, and its rendering into a
//! timely dataflow.
//!
//! ```text
//! pipeline.yaml ──parse──▶ spec ──validate──▶ plan (typed DAG) ──render──▶ timely dataflow
//! ```
//!
//! - [`spec`]: YAML with positions, `${ENV}` substitution, durations. Nothing runs.
//! - [`plan`]: every error at once; schemas flow from node to node.
//! - [`render`]: asks each planned node to build its timely operator, then runs.
//! - [`harness`]: runs a plan as a pipeline test does (sources fed, sinks recording).
//!
//! A node kind is a type implementing [`node::Node`] (its settings and the node
//! lifecycle: plan, start, render, finish), registered by name in a
//! [`registry::Registry`]; built-in kinds and users' crates register the same way.
//!
//! The crate re-exports the [`timely`] it is built on, so an outside operator crate
//! renders into the same version.

pub mod checkpoint;
pub mod clock;
pub mod config_schema;
pub mod context;
pub mod dense_map;
pub mod diagnostic;
mod erased;
pub mod graph;
pub mod harness;
pub mod liveness;
pub mod metrics;
pub mod node;
pub mod operator;
pub mod plan;
pub mod pressure;
pub mod record;
pub mod registry;
pub mod render;
pub mod schema;
pub mod shutdown;
pub mod source;
pub mod spec;
pub mod state;
pub mod tap;
pub mod watermark;

pub use context::ProcessContext;
pub use diagnostic::{Diagnostic, Diagnostics, Location};
pub use node::{
    BrokerLink, Claim, Inputs, Limit, Member, Node, PlanContext, RenderContext, Resource, Routing,
    SourcePartitioning, StartContext, StartError,
};
pub use operator::{AnyStream, PortType};
pub use record::{Message, Reading, Row, SensorId};
pub use registry::Registry;
pub use schema::Schema;
/// The JSON Schema derive config types use (`#[derive(schemars::JsonSchema)]`).
pub use schemars;
/// The timely dataflow this runtime renders into: use it (not a `timely` of your own
/// choosing) in operator crates, so the versions cannot differ.
pub use timely;
