//! What the tests of one-shot commands (`model`, `registry`, `retrain`, `keys`) share:
//! running the binary quietly and showing what it printed when an assertion fails.

use std::path::Path;
use std::process::{Command, Output};

/// The `smartgrid` binary, logging warnings only (the commands' own output is what is
/// asserted).
pub fn smartgrid() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smartgrid"));
    command.env("SMARTGRID_LOG", "warn");
    command
}

/// `smartgrid ARGS`, run to its end.
pub fn run(args: &[&str]) -> Output {
    smartgrid().args(args).output().expect("run smartgrid")
}

/// A command's exit status and output, for a failed assertion's message.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A path as a command-line argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A seeded xorshift in [0, 1): the same test data on every run.
pub struct Noise(pub u64);

impl Noise {
    /// The next number.
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}
