//! The timely operator behind `decode`: payloads → readings, stamped with event time.
//!
//! Decoding is the first place event time is known (a source only sees bytes), so this
//! operator holds the watermark capability: it emits each batch at its current
//! watermark and then moves the capability to the new one. Its input is not connected
//! to its output in timely's progress tracking, which lets the watermark run ahead of the
//! sources' (arrival-time) timestamps. When every source has finished, the capability
//! is dropped and the windows downstream flush.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smartgrid_runtime::checkpoint::{AT_STOP, NodeState};
use smartgrid_runtime::liveness::Liveness;
use smartgrid_runtime::metrics::{Counter, MinGauge};
use smartgrid_runtime::operator::{Messages, Readings, Time};
use smartgrid_runtime::watermark::Watermark;
use smartgrid_runtime::{Reading, Row};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::progress::Antichain;

use super::errors::ErrorSink;
use crate::formats::DecodeError;
use crate::formats::PayloadDecoder;

/// Counters of one decode node.
#[derive(Clone, Debug, Default)]
pub struct DecodeCounters {
    /// Readings emitted.
    pub readings: Counter,
    /// Valid payloads of a type this decoder skips.
    pub skipped: Counter,
    /// The watermark (ms since the epoch), set when it moves: `smartgrid run --http`
    /// shows how far it trails the wall clock. With several workers, the slowest's.
    pub watermark: MinGauge,
}

/// How the decode operator keeps time.
#[derive(Clone, Debug)]
pub struct EventClock {
    /// How far the watermark trails the largest event time (out-of-order allowance).
    pub delay: Duration,
    /// After this long without readings from any sensor, the watermark follows the
    /// wall clock (while `liveness` says the sources are live); a sensor quiet this
    /// long no longer holds it back.
    pub idle: Duration,
    /// Readings stamped further ahead of the wall clock than this are refused (reason
    /// `future`): one device with a wrong clock must not move the watermark for all.
    pub max_future: Duration,
    /// Whether the sources upstream are connected and caught up.
    pub liveness: Liveness,
}

/// Adds `decode` to streams of payloads.
pub trait DecodeExt<'s> {
    /// Decode every payload; failures go to `errors` (counted, logged, dead-lettered)
    /// and the stream goes on.
    fn decode(
        self,
        name: &str,
        decoder: Arc<dyn PayloadDecoder>,
        clock: EventClock,
        counters: DecodeCounters,
        errors: ErrorSink,
        checkpoint: Option<DecodeCheckpoint>,
    ) -> Readings<'s>;
}

/// A decode node's part in the checkpoints (see `smartgrid_runtime::checkpoint`):
/// decode is where event time starts, so it announces them (in a cluster, where cuts
/// are common, it saves its position as its watermark passes each).
#[derive(Debug)]
pub struct DecodeCheckpoint {
    /// This node's handle.
    pub state: NodeState,
    /// The node it reads from: a replayable source's position goes with each part.
    pub source: String,
}

/// Readings per container handed downstream (30 KiB). Built here, a `Vec` push per
/// reading, rather than by timely's session builder (a capacity check per reading and an
/// 8 KiB container per 68 readings): 10 % more readings per second through decode and
/// the windows (BENCHMARKS.md, "Closing the gap").
const CONTAINER: usize = 256;

/// What the saved watermark means; a different one is not restored.
const STATE_FINGERPRINT: &str = "decode watermark v1";

/// The largest watermark the previous run's workers saved (0 if none).
fn restored_watermark(state: Option<&NodeState>) -> u64 {
    state
        .map(|s| s.restored(STATE_FINGERPRINT))
        .unwrap_or_default()
        .iter()
        .filter_map(|part| Some(u64::from_le_bytes(part.get(..8)?.try_into().ok()?)))
        .max()
        .unwrap_or(0)
}

impl<'s> DecodeExt<'s> for Messages<'s> {
    fn decode(
        self,
        name: &str,
        decoder: Arc<dyn PayloadDecoder>,
        clock: EventClock,
        counters: DecodeCounters,
        mut errors: ErrorSink,
        mut checkpoint: Option<DecodeCheckpoint>,
    ) -> Readings<'s> {
        let scope = self.scope();
        let mut builder = OperatorBuilder::new(name.to_owned(), scope);
        let activator = scope.activator_for(builder.operator_info().address);
        // No connection from input to output: see the module docs.
        let no_connection: Vec<(usize, Antichain<Time>)> = Vec::new();
        let mut input = builder.new_input_connection(self, Pipeline, no_connection);
        let (output, stream) = builder.new_output();
        let mut output: OutputBuilder<Time, _> = OutputBuilder::from(output);
        // This worker's own decoder: it may cache what it decoded before.
        let mut decoder = decoder.for_worker();
        builder.build(move |mut capabilities| {
            let mut capability = capabilities.pop();
            // A sensor more than `max_future` behind the others is not waited for: the
            // same bound on a wrong clock either way.
            // Restored, so a reading redelivered after a restart for a window already
            // emitted is late (a correction), not a new window of one reading.
            let mut watermark = Watermark::new(clock.delay, clock.idle, clock.max_future)
                .resume_at(restored_watermark(checkpoint.as_ref().map(|c| &c.state)));
            let max_future_ms = i64::try_from(clock.max_future.as_millis()).unwrap_or(i64::MAX);
            let mut batch: Vec<Reading> = Vec::with_capacity(CONTAINER);
            move |frontiers| {
                let now = Instant::now();
                let latest_ms = smartgrid_runtime::clock::now_ms().saturating_add(max_future_ms);
                let mut out = output.activate();
                // Counted locally and added once per activation: the counters are shared
                // by every worker, and an atomic add per reading on one cache line would
                // serialize them.
                let (mut decoded, mut skipped) = (0, 0);
                input.for_each(|_time, data| {
                    let Some(cap) = capability.as_ref() else {
                        return;
                    };
                    let mut session = out.session(cap);
                    for message in data.drain(..) {
                        let mut values = Row::new();
                        match decoder.decode(&message.topic, &message.payload, &mut values) {
                            Ok(Some(d)) if d.time_ms > latest_ms => {
                                let future = DecodeError::Future {
                                    ahead_ms: d.time_ms - (latest_ms - max_future_ms),
                                    allowed_ms: max_future_ms,
                                };
                                errors.record(&future, &message);
                            }
                            Ok(Some(d)) => {
                                watermark.observe(d.sensor, d.time_ms, now);
                                decoded += 1;
                                batch.push(Reading {
                                    sensor: d.sensor,
                                    time_ms: d.time_ms,
                                    values,
                                });
                                if batch.len() >= CONTAINER {
                                    session.give_container(&mut batch);
                                    batch.clear();
                                    batch.reserve(CONTAINER);
                                }
                            }
                            Ok(None) => skipped += 1,
                            Err(e) => errors.record(&e, &message),
                        }
                    }
                    if !batch.is_empty() {
                        session.give_container(&mut batch);
                        batch.clear();
                    }
                });
                counters.readings.add(decoded);
                counters.skipped.add(skipped);
                if frontiers[0].is_empty() {
                    if let Some(c) = checkpoint.as_mut() {
                        if c.state.keeps_on_stop() {
                            let mark = watermark.current().to_le_bytes();
                            let source = Some(c.source.as_str());
                            c.state
                                .take_with_position(AT_STOP, STATE_FINGERPRINT, &mark, source);
                        } else {
                            c.state.finished();
                        }
                    }
                    // Every source is done: release time so windows flush (or, on a
                    // stop that keeps state, save themselves).
                    capability = None;
                    errors.flush();
                } else if let Some(cap) = capability.as_mut() {
                    let mark = watermark.at(now, clock.liveness.live_since());
                    if mark > *cap.time() {
                        cap.downgrade(&mark);
                        counters
                            .watermark
                            .set(i64::try_from(mark).unwrap_or(i64::MAX));
                        if let Some(c) = checkpoint.as_mut() {
                            checkpoint_at(c, mark, now);
                        }
                    }
                    activator.activate_after(watermark.recheck_after());
                    errors.tick(now);
                }
            }
        });
        stream
    }
}

/// After moving the capability to `mark` (nothing was sent at `mark` yet): announce a
/// checkpoint there if one is due, and take every announced one `mark` has passed.
/// Everything decoded so far went out before them, with the source's position now.
/// In a cluster, cuts are common and not announced: the first one this decoder takes
/// is the first after its first watermark (what it sent before went out earlier).
fn checkpoint_at(c: &mut DecodeCheckpoint, mark: u64, now: Instant) {
    c.state.announce(mark, now);
    c.state.cuts_after(mark);
    while let Some(time) = c.state.barrier().filter(|&t| t <= mark) {
        let body = mark.to_le_bytes();
        c.state
            .take_with_position(time, STATE_FINGERPRINT, &body, Some(c.source.as_str()));
    }
}
