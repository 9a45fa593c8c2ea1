//! Clean shutdown: SIGINT/SIGTERM (or `--for`) set one flag; sources watch it and stop,
//! which drains the dataflow: open windows flush, sinks write what they hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The process's stop flag.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A flag not yet raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask everything to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for APIs that take an `Arc<AtomicBool>`.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }

    /// Raise the flag on SIGINT or SIGTERM. A second signal while draining exits
    /// at once (the user asked twice).
    pub fn on_signals(&self) -> std::io::Result<()> {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it sees the flag before this signal's own handler
            // sets it: exit on the second signal only.
            signal_hook::flag::register_conditional_shutdown(signal, 130, self.flag())?;
            signal_hook::flag::register(signal, self.flag())?;
        }
        Ok(())
    }

    /// Raise the flag after `after` (for `smartgrid run --for 30s`).
    pub fn after(&self, after: Duration) {
        let me = self.clone();
        std::thread::Builder::new()
            .name("smartgrid-timer".into())
            .spawn(move || {
                std::thread::sleep(after);
                me.trigger();
            })
            .map(drop)
            .unwrap_or_else(|e| tracing::warn!("cannot start the --for timer: {e}"));
    }
}
