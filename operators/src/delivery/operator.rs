//! What every sink node shares around its writer thread: the state `start` returns,
//! and worker 0's operator that encodes readings and hands them over.

use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use smartgrid_runtime::operator::Readings;
use smartgrid_runtime::timely::dataflow::channels::pact::Exchange;
use smartgrid_runtime::timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use smartgrid_runtime::{Reading, RenderContext, StartContext, StartError};

use super::handoff::{Chunk, Handoff, Inbox, Lines, handoff};

/// How soon an operator holding pending chunks tries the queue again.
const RETRY_PENDING: Duration = Duration::from_millis(2);

/// A running sink: the hand-off worker 0 takes when it renders, and the writer thread.
/// Only the process of worker 0 has them (every record is routed there).
pub struct SinkState<C> {
    handoff: Mutex<Option<Handoff<C>>>,
    thread: Option<JoinHandle<()>>,
}

impl<C: Chunk> SinkState<C> {
    /// The state of a process that has no writer (not worker 0's).
    pub fn idle() -> Self {
        SinkState {
            handoff: Mutex::new(None),
            thread: None,
        }
    }

    /// Start the writer thread `run` on the inbox of a new hand-off of `queue` chunks
    /// (called from `Node::start`).
    pub fn start<F>(ctx: &StartContext<'_>, queue: usize, run: F) -> Result<Self, StartError>
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
            thread: Some(thread),
        })
    }

    /// Wait for the writer thread to deliver what it holds and stop (from
    /// `Node::finish`, after every worker has stopped).
    pub fn finish(mut self) -> Result<(), StartError> {
        // A hand-off no worker took (nothing rendered) closes the inbox now.
        drop(self.take());
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

/// Render a sink: every reading is routed to worker 0, encoded there by `encode` into
/// chunks and handed to the writer thread without ever blocking the worker. When the
/// queue is full the operator keeps the chunks, raises the process's pressure (the
/// sources pause) and activates itself again until they are handed over; at the end of
/// its input it hands over the rest and closes the hand-off.
pub fn render_sink<'s, C, E>(
    ctx: &RenderContext<'s>,
    input: Readings<'s>,
    state: &SinkState<C>,
    mut encode: E,
) where
    C: Chunk,
    E: FnMut(&Reading, &mut C) + 'static,
{
    ctx.process.pressure.watch_on_this_worker();
    let mut handoff = if ctx.worker == 0 { state.take() } else { None };
    let records = ctx.counter("records");
    let scope = ctx.scope;
    let mut builder = OperatorBuilder::new(ctx.node.to_owned(), scope);
    let activator = scope.activator_for(builder.operator_info().address);
    let mut input = builder.new_input(input, Exchange::new(|_: &Reading| 0));
    builder.build(move |_capabilities| {
        move |frontiers| {
            let Some(out) = handoff.as_mut() else {
                input.for_each(|_, _| {});
                return;
            };
            let mut chunk = C::default();
            let mut count = 0;
            input.for_each(|_time, data| {
                for reading in data.iter() {
                    encode(reading, &mut chunk);
                    if chunk.is_full() {
                        count += chunk.records();
                        out.push(std::mem::take(&mut chunk));
                    }
                }
            });
            count += chunk.records();
            out.push(chunk);
            records.add(count as u64);
            let handed_over = out.flush();
            if frontiers[0].is_empty() {
                // The input ended (sources stopped, e.g. on SIGTERM): the rest goes
                // over without waiting, and the writer drains once it has read it.
                handoff = None;
            } else if !handed_over {
                activator.activate_after(RETRY_PENDING);
            }
        }
    });
}
