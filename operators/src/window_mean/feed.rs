//! What the operator's tests share: feeding batches at their timely times.

use smartgrid_runtime::Reading;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::{InputHandle, ProbeHandle};
use timely::worker::Worker;

/// The input handle the tests build dataflows from.
pub(super) type Input = InputHandle<u64, CapacityContainerBuilder<Vec<Reading>>>;

/// Sends each of `batches` (time, readings) at its time, then steps `worker` until
/// `probe` has passed it: the operator sees one batch per activation, in order.
pub(super) fn feed(
    worker: &mut Worker,
    input: &mut Input,
    probe: &ProbeHandle<u64>,
    batches: Vec<(u64, Vec<Reading>)>,
) {
    for (time, readings) in batches {
        input.advance_to(time);
        for r in readings {
            input.send(r);
        }
        input.advance_to(time + 1);
        while probe.less_than(input.time()) {
            worker.step();
        }
    }
}
