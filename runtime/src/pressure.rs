//! Backpressure without blocking a worker: a sink whose hand-off queue is full raises
//! the process's pressure; while it is raised, [`poll_source`](crate::source::poll_source)
//! stops calling its sources (an MQTT subscription stops reading and the broker holds
//! the messages; a simulator pauses), so the dataflow stops growing while every worker
//! keeps running: a full sink never stalls the other sinks on its worker, and the sink
//! keeps retrying what it holds.
//!
//! Each [`Valve`] (one per sink) counts once however often it is raised, so the
//! pressure falls only when every sink that raised it has drained.
//!
//! In a cluster run, pressure is per process: the sink's process pauses its own sources.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The process's pressure signal: raised while any sink's queue is full.
#[derive(Clone, Debug, Default)]
pub struct Pressure(Arc<AtomicUsize>);

impl Pressure {
    /// A signal not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether some sink holds more than its queue takes.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }

    /// A sink's handle on the signal.
    pub fn valve(&self) -> Valve {
        Valve {
            pressure: self.clone(),
            raised: false,
        }
    }

    /// Make this the pressure the sources of the current worker thread watch. A node
    /// that can raise it calls this from `render` (which runs on the worker thread
    /// before any source is polled), so sources need not be told.
    pub fn watch_on_this_worker(&self) {
        WORKER.with(|w| *w.borrow_mut() = Some(self.clone()));
    }

    /// Whether the pressure watched on this worker thread is raised (false when none is).
    pub fn raised_on_this_worker() -> bool {
        WORKER.with(|w| w.borrow().as_ref().is_some_and(Pressure::is_raised))
    }
}

thread_local! {
    /// The pressure of the process this worker thread belongs to, once a node that can
    /// raise it has rendered here.
    static WORKER: RefCell<Option<Pressure>> = const { RefCell::new(None) };
}

/// One sink's part of the [`Pressure`]: raising it twice counts once.
#[derive(Debug)]
pub struct Valve {
    pressure: Pressure,
    raised: bool,
}

impl Valve {
    /// The sink's queue is full.
    pub fn raise(&mut self) {
        if !self.raised {
            self.raised = true;
            self.pressure.0.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The sink has handed over everything it held.
    pub fn lower(&mut self) {
        if self.raised {
            self.raised = false;
            self.pressure.0.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether this sink raised it.
    pub fn is_raised(&self) -> bool {
        self.raised
    }
}

impl Drop for Valve {
    fn drop(&mut self) {
        // A sink that goes away (end of input, a panic) must not pause the sources forever.
        self.lower();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_falls_when_every_valve_is_lowered() {
        let pressure = Pressure::new();
        let (mut a, mut b) = (pressure.valve(), pressure.valve());
        a.raise();
        a.raise();
        b.raise();
        assert!(pressure.is_raised());
        a.lower();
        assert!(pressure.is_raised(), "b still holds it");
        drop(b);
        assert!(!pressure.is_raised());
        assert!(!Pressure::raised_on_this_worker(), "nothing watched yet");
        pressure.watch_on_this_worker();
        a.raise();
        assert!(Pressure::raised_on_this_worker());
    }
}
