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
//!
//! A node kind is an [`operator::OperatorFactory`] registered by name in a
//! [`registry::Registry`]; built-in kinds and users' crates register the same way.

pub mod context;
pub mod diagnostic;
pub mod graph;
pub mod metrics;
pub mod operator;
pub mod plan;
pub mod record;
pub mod registry;
pub mod render;
pub mod schema;
pub mod shutdown;
pub mod source;
pub mod spec;
pub mod watermark;

pub use context::ProcessContext;
pub use diagnostic::{Diagnostic, Diagnostics, Location};
pub use operator::{
    AnyStream, Arity, Fused, NodeOperator, OperatorFactory, PlanContext, PortType, RenderContext,
    RenderError,
};
pub use record::{Message, Reading, Row, SensorId};
pub use registry::Registry;
pub use schema::Schema;
