//! What every sink node shares around its writer thread: the state `start` returns,
//! and worker 0's operator that encodes readings and hands them over, with the
//! checkpoint marks among them (see [`super::checkpoint`]).

use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use smartgrid_runtime::checkpoint::{AT_STOP, Held};
use smartgrid_runtime::operator::{Readings, Time};
use smartgrid_runtime::timely::dataflow::channels::pact::Exchange;
use smartgrid_runtime::timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use smartgrid_runtime::timely::progress::frontier::MutableAntichain;
use smartgrid_runtime::{Reading, RenderContext, StartContext, StartError};

use super::checkpoint::SinkCheckpoint;
use super::handoff::{Chunk, Handoff, Inbox, Lines, handoff};

/// How soon an operator holding pending chunks tries the queue again.
const RETRY_PENDING: Duration = Duration::from_millis(2);

/// Readings held back at a checkpoint barrier beyond which the sources pause (a
/// writer that takes its marks within milliseconds never gets near it).
const HOLD_LIMIT: usize = 1 << 16;

/// A running sink: the hand-off its writing worker takes when it renders, its part in
/// the checkpoints, and the writer thread. Only the process of worker 0 has them (every
/// record is routed there), unless the sink writes [from every
/// process](Self::in_every_process).
pub struct SinkState<C> {
    handoff: Mutex<Option<Handoff<C>>>,
    checkpoint: Option<SinkCheckpoint>,
    thread: Option<JoinHandle<()>>,
    /// Whether each process writes its own share (through its first worker) instead
    /// of sending every record to worker 0.
    every_process: bool,
}

impl<C: Chunk> SinkState<C> {
    /// The state of a process that has no writer (not worker 0's).
    pub fn idle() -> Self {
        SinkState {
            handoff: Mutex::new(None),
            checkpoint: None,
            thread: None,
            every_process: false,
        }
    }

    /// A sink whose server takes concurrent writers: in a cluster run every process
    /// starts its writer and writes what its own workers produced, so adding machines
    /// adds output capacity and no record crosses to process 0. Every process must
    /// start the sink this way.
    #[must_use]
    pub fn in_every_process(mut self) -> Self {
        self.every_process = true;
        self
    }

    /// Start the writer thread `run` on the inbox of a new hand-off of `queue` chunks
    /// (called from `Node::start`). With a `checkpoint`, the sink takes part in
    /// checkpoints: `run` receives a [`Mark`](super::Mark) for each, in order with the
    /// chunks, and must take it once what came before is durable. Without one (a sink
    /// whose output cannot be put back, such as stdout) it receives none.
    pub fn start<F>(
        ctx: &StartContext<'_>,
        queue: usize,
        checkpoint: Option<SinkCheckpoint>,
        run: F,
    ) -> Result<Self, StartError>
    where
        F: FnOnce(Inbox<C>) + Send + 'static,
    {
        let (handoff, inbox) = handoff(queue, &ctx.pressure);
        let thread = std::thread::Builder::new()
            .name(format!("sink-{}", ctx.node))
            .spawn(move || run(inbox))
            .map_err(|source| StartError::Io {
                context: format!("cannot start the writer thread of `{}`", ctx.node),
                source,
            })?;
        Ok(SinkState {
            handoff: Mutex::new(Some(handoff)),
            checkpoint,
            thread: Some(thread),
            every_process: false,
        })
    }

    /// Wait for the writer thread to deliver what it holds and stop (from
    /// `Node::finish`, after every worker has stopped).
    pub fn finish(mut self) -> Result<(), StartError> {
        // A hand-off no worker took (nothing rendered) closes the inbox now, and no
        // checkpoint may wait for this sink.
        if self.take().is_some()
            && let Some(checkpoint) = &self.checkpoint
        {
            checkpoint.finished();
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Err(_)) => Err(StartError::other("the sink's writer thread panicked")),
            _ => Ok(()),
        }
    }

    fn take(&self) -> Option<Handoff<C>> {
        self.handoff
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// [`render_sink`] for sinks that write text lines: each reading encoded by `encoder`.
pub fn render_lines<'s>(
    ctx: &RenderContext<'s>,
    input: Readings<'s>,
    state: &SinkState<Lines>,
    encoder: crate::formats::Encoder,
) {
    render_sink(ctx, input, state, move |reading, lines: &mut Lines| {
        encoder.encode(reading, &mut lines.text);
        lines.records += 1;
    });
}

/// What a sink that spools and dead-letters claims: its spool directory (when on disk)
/// and its dead-letter file, each at the key that names it.
pub fn spool_and_dead_letter_claims(
    spool_dir: Option<&std::path::Path>,
    spool_at: smartgrid_runtime::Location,
    dead_letter: &std::path::Path,
    dead_letter_at: smartgrid_runtime::Location,
) -> Vec<smartgrid_runtime::Claim> {
    use smartgrid_runtime::{Claim, Resource};
    let spool = spool_dir.map(|dir| Claim {
        resource: Resource::Directory(dir.to_path_buf()),
        at: spool_at,
    });
    spool
        .into_iter()
        .chain([Claim {
            resource: Resource::FileWritten(dead_letter.to_path_buf()),
            at: dead_letter_at,
        }])
        .collect()
}

/// Render a sink: every reading is routed to worker 0 (or, for a sink that writes in
/// every process, to the first worker of the process it was produced in), encoded there by `encode` into
/// chunks and handed to the writer thread without ever blocking the worker. When the
/// queue is full the operator keeps the chunks, raises the process's pressure (the
/// sources pause) and activates itself again until they are handed over; at the end of
/// its input it hands over the rest and closes the hand-off.
///
/// A sink that takes part in checkpoints holds input at or after the next checkpoint
/// until its input frontier has passed it, hands the writer a mark for it after every
/// record before it, and releases the held input once the writer has taken the mark.
/// At the end of its input it asks the writer for the stop's checkpoint if the stop
/// keeps state, and otherwise leaves the checkpoints.
pub fn render_sink<'s, C, E>(
    ctx: &RenderContext<'s>,
    input: Readings<'s>,
    state: &SinkState<C>,
    encode: E,
) where
    C: Chunk,
    E: FnMut(&Reading, &mut C) + 'static,
{
    ctx.process.pressure.watch_on_this_worker();
    // Records stay in the process they were produced in when every process writes:
    // the route runs on the sending worker, so this names the sender's own writer.
    let writer = if state.every_process {
        ctx.process_first_worker()
    } else {
        0
    };
    let handoff = if ctx.worker == writer {
        state.take()
    } else {
        None
    };
    // Only the worker that writes takes part: the others see no records.
    let checkpoint = handoff.as_ref().and(state.checkpoint.clone());
    let records = ctx.counter("records");
    let scope = ctx.scope;
    let mut builder = OperatorBuilder::new(ctx.node.to_owned(), scope);
    let address = builder.operator_info().address;
    let activator = scope.activator_for(std::rc::Rc::clone(&address));
    let wake = checkpoint
        .is_some()
        .then(|| scope.worker().sync_activator_for(address.to_vec()));
    let route = writer as u64;
    let mut input = builder.new_input(input, Exchange::new(move |_: &Reading| route));
    let mut sink = Sink {
        out: handoff,
        encode,
        chunk: C::default(),
        count: 0,
        checkpoint,
        held: Held::default(),
        held_records: 0,
        marked: None,
        wake,
    };
    builder.build_reschedule(move |_capabilities| {
        move |frontiers| {
            if sink.out.is_none() {
                input.for_each(|_, _| {});
                return false;
            }
            input.for_each(|capability, data| {
                // An unstamped batch claims no time: no checkpoint can hold it back.
                let time = capability.least().copied().unwrap_or(0);
                sink.arrive(time, data);
            });
            sink.checkpoints(&frontiers[0]);
            sink.flush_chunk();
            records.add(std::mem::take(&mut sink.count) as u64);
            let ended = frontiers[0].is_empty();
            if ended && sink.marked.is_none() {
                // Everything before went over; the writer drains once it has read it.
                sink.finish();
                return false;
            }
            let Some(out) = sink.out.as_mut() else {
                return false;
            };
            let handed_over = out.flush();
            out.hold_back(sink.marked.is_some() && sink.held_records > HOLD_LIMIT);
            if !handed_over {
                activator.activate_after(RETRY_PENDING);
            }
            // At the end of input, stay until the writer has taken the last mark (its
            // take wakes the operator) and the held input has followed it.
            ended
        }
    });
}

/// The writing worker's sink operator between activations.
struct Sink<C, E> {
    /// `None` on other workers, and once the input has ended.
    out: Option<Handoff<C>>,
    encode: E,
    chunk: C,
    /// Records encoded in this activation.
    count: usize,
    /// `None` for a sink that does not take part in checkpoints.
    checkpoint: Option<SinkCheckpoint>,
    held: Held<(), Reading>,
    held_records: usize,
    /// A checkpoint whose mark the writer has not taken yet.
    marked: Option<Time>,
    wake: Option<smartgrid_runtime::timely::scheduling::SyncActivator>,
}

impl<C: Chunk, E: FnMut(&Reading, &mut C)> Sink<C, E> {
    /// A batch at `time`: held if it is at or after the next checkpoint, encoded
    /// otherwise. While a mark waits for the writer, the barrier is still its time and
    /// every new batch is after it.
    fn arrive(&mut self, time: Time, data: &mut Vec<Reading>) {
        if let Some(c) = &self.checkpoint
            && c.lock().holds(time)
        {
            self.held_records += data.len();
            self.held.hold(time, (), std::mem::take(data));
            return;
        }
        self.encode_all(data);
    }

    fn encode_all(&mut self, data: &[Reading]) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        for reading in data {
            (self.encode)(reading, &mut self.chunk);
            if self.chunk.is_full() {
                self.count += self.chunk.records();
                out.push(std::mem::take(&mut self.chunk));
            }
        }
    }

    fn flush_chunk(&mut self) {
        self.count += self.chunk.records();
        if let Some(out) = self.out.as_mut() {
            out.push(std::mem::take(&mut self.chunk));
        }
    }

    /// Mark each checkpoint the input frontier has passed, one at a time: the next
    /// barrier is known only once the writer has taken the previous mark.
    fn checkpoints(&mut self, frontier: &MutableAntichain<Time>) {
        let Some(c) = self.checkpoint.clone() else {
            return;
        };
        loop {
            if let Some(time) = self.marked {
                if c.lock().barrier() == Some(time) {
                    return;
                }
                self.marked = None;
            }
            let released: Vec<_> = self.held.release(&c.lock()).collect();
            for (_, (), data) in released {
                self.held_records -= data.len();
                self.encode_all(&data);
            }
            let Some(time) = c.lock().due(frontier.frontier()) else {
                return;
            };
            self.flush_chunk();
            if let Some(out) = self.out.as_mut() {
                out.push_mark(c.mark(time, self.wake.clone()));
            }
            self.marked = Some(time);
        }
    }

    /// The input has ended and every checkpoint it passed is marked and taken.
    fn finish(&mut self) {
        let Some(mut out) = self.out.take() else {
            return;
        };
        if let Some(c) = &self.checkpoint {
            debug_assert!(self.held.is_empty(), "no barrier is left to hold input at");
            if c.lock().keeps_on_stop() {
                out.push_mark(c.mark(AT_STOP, None));
            } else {
                out.push_leave(c.clone());
            }
        }
        out.flush();
    }
}

#[cfg(test)]
mod tests;
