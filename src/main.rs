//! The `smartgrid` command. All logic lives in the library so that users' own crates
//! can add operator kinds and reuse the same command line (see `examples/custom-operator`).

fn main() -> std::process::ExitCode {
    smartgrid::main_with(smartgrid::builtin_registry())
}
