//! A user's own smartgrid binary: the built-in kinds plus `ewma`.
//!
//! ```text
//! cargo run -p custom-operator -- run examples/custom-operator/pipeline.yaml
//! ```

mod ewma;

fn main() -> std::process::ExitCode {
    let mut registry = smartgrid::builtin_registry();
    registry.register::<ewma::Ewma>();
    smartgrid::main_with(registry)
}
