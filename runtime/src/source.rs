//! A timely source fed by polling: the glue between a transport's background thread
//! (MQTT client, simulator, file reader) and a worker.
//!
//! Records are stamped with their arrival time (wall clock, ms); event time is assigned
//! downstream by the node that can read it (see the `decode` operator).

use std::time::Duration;

use timely::dataflow::StreamVec;
use timely::dataflow::operators::generic::operator::source;

use crate::operator::{Scope, Time};
use crate::pressure::Pressure;

/// What one poll found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Records were pushed and more may be waiting: poll again soon.
    More,
    /// Nothing is waiting now: poll again after the idle interval.
    Idle,
    /// The source has ended: no more records, ever.
    Done,
}

/// How long an idle source waits before it polls again. Short enough that a reading
/// reaches the dataflow within a few ms, long enough to cost nothing when quiet.
pub const IDLE_POLL: Duration = Duration::from_millis(5);

/// Build a source that calls `poll` on every activation. `poll` appends records to the
/// buffer it is given (at most what it wants per call, so one source cannot starve
/// the worker) and says whether it is done. While the worker's [`Pressure`] is raised,
/// `poll` is not called: the source acts as if idle.
///
/// ```
/// use smartgrid_runtime::source::{Poll, poll_source};
/// use timely::dataflow::operators::Capture;
/// use timely::dataflow::operators::capture::Extract;
///
/// let captured = timely::example(|scope| {
///     let mut next = 0u32;
///     poll_source(scope, "count", move |out: &mut Vec<u32>| {
///         if next == 3 { return Poll::Done }
///         out.push(next);
///         next += 1;
///         Poll::More
///     })
///     .capture()
/// });
/// let seen: Vec<u32> = captured.extract().into_iter().flat_map(|(_, data)| data).collect();
/// assert_eq!(seen, vec![0, 1, 2]);
/// ```
pub fn poll_source<'s, D, P>(scope: Scope<'s>, name: &str, mut poll: P) -> StreamVec<'s, Time, D>
where
    D: Clone + 'static,
    P: FnMut(&mut Vec<D>) -> Poll + 'static,
{
    source(scope, name, move |capability, info| {
        let activator = scope.activator_for(info.address);
        let mut capability = Some(capability);
        let mut buffer: Vec<D> = Vec::new();
        move |output| {
            let Some(cap) = capability.as_mut() else {
                return;
            };
            if Pressure::raised_on_this_worker() {
                // A sink holds more than its queue takes: leave the records where they
                // wait (the broker, the simulator's clock) until it has drained.
                advance_to_now(cap);
                activator.activate_after(IDLE_POLL);
                return;
            }
            let state = poll(&mut buffer);
            if !buffer.is_empty() {
                output.session(&*cap).give_container(&mut buffer);
                buffer.clear();
            }
            match state {
                Poll::Done => capability = None,
                Poll::More => {
                    advance_to_now(cap);
                    activator.activate();
                }
                Poll::Idle => {
                    advance_to_now(cap);
                    activator.activate_after(IDLE_POLL);
                }
            }
        }
    })
}

fn advance_to_now(cap: &mut timely::dataflow::operators::Capability<Time>) {
    let now = u64::try_from(crate::clock::now_ms()).unwrap_or(0);
    if now > *cap.time() {
        cap.downgrade(&now);
    }
}
