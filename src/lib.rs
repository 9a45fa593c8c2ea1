//! The `smartgrid` command line, as a library: `main_with(registry)` runs the same
//! commands with any set of operator kinds, so a crate adding its own kinds needs only
//! a three-line `main`.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     let registry = smartgrid::builtin_registry();
//!     // registry.register::<MyNode>();
//!     smartgrid::main_with(registry)
//! }
//! ```

mod bench;
mod cli;
mod commands;
mod lost_peer;
mod model_cmd;
mod observe;
mod pipeline_test;
mod registry;
#[cfg(feature = "train")]
mod retrain;
mod schema_cmd;
mod sign_cmd;

pub use cli::main_with;
pub use smartgrid_operators::builtin_registry;
