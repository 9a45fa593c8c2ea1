//! The `smartgrid` command line, as a library: `main_with(registry)` runs the same
//! commands with any set of operator kinds, so a crate adding its own kinds needs only
//! a three-line `main`.
//!
//! ```no_run
//! let mut registry = smartgrid::builtin_registry();
//! // registry.register(MyOperatorFactory);
//! std::process::exit(smartgrid::main_with(registry) as i32 as i32);
//! ```

mod bench;
mod cli;
mod commands;

pub use cli::main_with;
pub use smartgrid_operators::builtin_registry;
