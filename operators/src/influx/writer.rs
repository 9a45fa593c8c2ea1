//! The writer thread: batches lines, sends them, retries, spools, dead-letters.
//!
//! The dataflow hands it encoded lines through the sink toolkit's hand-off
//! ([`crate::delivery`]); HTTP never runs on a timely worker. Order is kept: while the spool holds anything, new batches
//! go behind it, and the spool is replayed oldest first.
//!
//! At a checkpoint mark the open batch is shipped at once, and the mark is taken once
//! the server accepted it or it is in the spool: everything before the checkpoint is
//! then safe. The part is empty, as nothing needs restoring: a replay after a crash
//! writes the same points again, and a point written twice is stored once.

use std::time::{Duration, Instant};

use smartgrid_runtime::metrics::{Counter, Gauge};
use smartgrid_runtime::shutdown::Shutdown;

use super::client::{Client, Outcome};
use crate::delivery::{DeadLetters, Inbox, Lines, Payload, Reason, Received, ThrottledLog};

/// What the sink's (empty) checkpoint part means.
const FINGERPRINT: &str = "influx v1";
use crate::io::Backoff;
use crate::spool::{Spool, SpoolError};

/// Timing and sizes of the writer.
#[derive(Clone, Debug)]
pub struct Settings {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub drain_timeout: Duration,
    pub attempts_before_spool: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

/// The writer's counters (`<node>.written`, …).
pub struct Counters {
    /// Points the server accepted.
    pub written: Counter,
    /// Batches put in the spool.
    pub spooled: Counter,
    /// Batches deleted unsent by `when_full: drop_oldest`.
    pub dropped: Counter,
    /// Failed attempts (connection errors, 5xx, 429, …).
    pub failures: Counter,
    /// 1 while the server fails past the retries (batches go to the spool), 0 once it
    /// accepts writes again: what `/ready` of `smartgrid run --http` looks at.
    pub failing: Gauge,
}

/// The longest stretch of spool replay before new input is looked at again.
const REPLAY_SLICE: Duration = Duration::from_millis(200);

/// The writer thread's state.
pub struct Writer {
    node: String,
    client: Client,
    spool: Spool,
    dead_letters: DeadLetters,
    log: ThrottledLog,
    settings: Settings,
    counters: Counters,
    batch: Vec<u8>,
    batch_points: usize,
    batch_since: Option<Instant>,
    backoff: Backoff,
    /// No attempt before this (after a failure).
    retry_at: Option<Instant>,
    /// Since when the server has been failing.
    outage: Option<Instant>,
    dropped_seen: u64,
    /// Set while draining on shutdown: a full spool waits no longer than this.
    drain_deadline: Option<Instant>,
    /// The process's stop flag: a writer waiting for room in a full spool must not hold
    /// up a shutdown (the dataflow cannot drain while it waits).
    shutdown: Option<Shutdown>,
}

/// Points in a batch: one per line.
fn points_in(lines: &[u8]) -> u64 {
    lines.iter().filter(|&&b| b == b'\n').count() as u64
}

impl Writer {
    /// A writer over an opened spool.
    pub fn new(
        node: String,
        client: Client,
        spool: Spool,
        dead_letters: DeadLetters,
        settings: Settings,
        counters: Counters,
    ) -> Self {
        let backoff = Backoff::new(settings.retry_initial, settings.retry_max);
        Self {
            log: ThrottledLog::new(&node),
            node,
            client,
            spool,
            dead_letters,
            batch: Vec::new(),
            batch_points: 0,
            batch_since: None,
            backoff,
            retry_at: None,
            outage: None,
            dropped_seen: 0,
            drain_deadline: None,
            shutdown: None,
            settings,
            counters,
        }
    }

    /// Watch this stop flag while waiting for room in a full spool.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Run until the input ends (the inbox is closed and read), then drain.
    pub fn run(mut self, inbox: Inbox<Lines>) {
        if !self.spool.is_empty() {
            tracing::info!(
                node = %self.node,
                "{} batches ({} bytes) in the spool from an earlier run; replaying them first",
                self.spool.len(),
                self.spool.bytes()
            );
        }
        loop {
            self.replay(REPLAY_SLICE);
            let now = Instant::now();
            let mut wake = now + Duration::from_secs(1);
            if let Some(since) = self.batch_since {
                wake = wake.min(since + self.settings.flush_interval);
            }
            if !self.spool.is_empty() {
                wake = wake.min(self.retry_at.unwrap_or(now));
            }
            match inbox.recv_timeout(wake.saturating_duration_since(now)) {
                Received::Chunk(lines) => {
                    if self.batch.is_empty() {
                        self.batch_since = Some(Instant::now());
                    }
                    self.batch.extend_from_slice(lines.text.as_bytes());
                    self.batch_points += lines.records;
                    if self.batch_points >= self.settings.batch_size {
                        self.ship_batch();
                    }
                }
                Received::Mark(mark) => {
                    // Accepted, spooled or (rejected) dead-lettered: nothing before the
                    // mark is only in memory any more.
                    self.ship_batch();
                    mark.take(FINGERPRINT, &[]);
                }
                Received::Closed => break,
                Received::Timeout => {}
            }
            if self
                .batch_since
                .is_some_and(|since| since.elapsed() >= self.settings.flush_interval)
            {
                self.ship_batch();
            }
        }
        self.drain();
    }

    /// On shutdown: send what is left, for at most `drain_timeout`; the rest stays in the
    /// spool for the next start.
    fn drain(&mut self) {
        let deadline = Instant::now() + self.settings.drain_timeout;
        self.drain_deadline = Some(deadline);
        self.ship_batch();
        while !self.spool.is_empty() && Instant::now() < deadline {
            if let Some(at) = self.retry_at {
                std::thread::sleep(at.min(deadline).saturating_duration_since(Instant::now()));
            }
            self.replay(deadline.saturating_duration_since(Instant::now()));
        }
        if self.spool.is_empty() {
            tracing::info!(node = %self.node, "every batch delivered");
        } else {
            tracing::warn!(
                node = %self.node,
                "{} batches ({} bytes) stay in the spool {} and are sent at the next start",
                self.spool.len(),
                self.spool.bytes(),
                self.spool.dir().display()
            );
        }
    }

    /// Send the current batch: directly when nothing waits in the spool, retrying a
    /// few times; to the spool otherwise.
    fn ship_batch(&mut self) {
        if self.batch.is_empty() {
            self.batch_since = None;
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let points = std::mem::take(&mut self.batch_points);
        self.batch_since = None;
        if !self.spool.is_empty() || self.retry_at.is_some_and(|t| Instant::now() < t) {
            self.spool_batch(&batch);
            return;
        }
        let body = self.client.body(&batch);
        for attempt in 1..=self.settings.attempts_before_spool.max(1) {
            match self.client.send(&body) {
                Outcome::Accepted => {
                    self.delivered(points as u64);
                    return;
                }
                Outcome::Rejected { status, message } => {
                    self.dead_letter(
                        &batch,
                        Reason::Rejected,
                        &format!("HTTP {status}: {message}"),
                    );
                    return;
                }
                Outcome::Misconfigured { status, message } => {
                    self.failed(&format!("HTTP {status}: {message}"), true, None);
                    break;
                }
                Outcome::Retry { reason, after } => {
                    let at = self.failed(&reason, false, after);
                    if attempt < self.settings.attempts_before_spool {
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    }
                }
            }
        }
        self.spool_batch(&batch);
    }

    /// Send spooled batches, oldest first, for up to `budget`, unless a retry is not due.
    fn replay(&mut self, budget: Duration) {
        let until = Instant::now() + budget;
        while !self.spool.is_empty()
            && Instant::now() < until
            && self.retry_at.is_none_or(|t| Instant::now() >= t)
        {
            let record = match self.spool.peek() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    // Only a changed file gets here (the CRC was good at open): skip it.
                    tracing::error!(node = %self.node, "unreadable spooled batch skipped: {e}");
                    self.ack();
                    continue;
                }
            };
            let body = self.client.body(&record);
            match self.client.send(&body) {
                Outcome::Accepted => {
                    self.delivered(points_in(&record));
                    // After `delivered`: a failed ack schedules the next attempt.
                    self.ack();
                    if self.spool.is_empty() {
                        tracing::info!(node = %self.node, "the spool is empty again");
                    }
                }
                Outcome::Rejected { status, message } => {
                    self.dead_letter(
                        &record,
                        Reason::Rejected,
                        &format!("HTTP {status}: {message}"),
                    );
                    self.ack();
                }
                Outcome::Misconfigured { status, message } => {
                    self.failed(&format!("HTTP {status}: {message}"), true, None);
                }
                Outcome::Retry { reason, after } => {
                    self.failed(&reason, false, after);
                }
            }
        }
    }

    fn ack(&mut self) {
        if let Err(e) = self.spool.ack() {
            // The batch was delivered; at worst it is sent again (writes are idempotent).
            tracing::error!(node = %self.node, "cannot acknowledge a spooled batch: {e}");
            self.retry_at = Some(Instant::now() + self.settings.retry_max);
        }
    }

    fn delivered(&mut self, points: u64) {
        self.counters.written.add(points);
        self.counters.failing.set(0);
        self.backoff.reset();
        self.retry_at = None;
        if let Some(since) = self.outage.take() {
            self.log.clear("refused");
            self.log.clear("write_failed");
            tracing::info!(
                node = %self.node,
                "{} accepts writes again after {:.1}s; {} batches to replay",
                self.client.url(),
                since.elapsed().as_secs_f64(),
                self.spool.len()
            );
        }
    }

    /// Note a failed attempt, log it (throttled) and schedule the next one. Returns when
    /// it is due.
    fn failed(&mut self, reason: &str, config: bool, after: Option<Duration>) -> Instant {
        self.counters.failures.inc();
        self.outage.get_or_insert_with(Instant::now);
        let pending = self.spool.len();
        let url = self.client.url().to_string();
        if config {
            self.log.error(
                "refused",
                format_args!("{url} refuses the writes: {reason}; check the url, org/bucket or db, and the credentials (batches wait in the spool, {pending} now)"),
            );
        } else {
            self.log.warn(
                "write_failed",
                format_args!("write failed ({url}): {reason}; retrying with backoff (batches wait in the spool, {pending} now)"),
            );
        }
        let at = self.backoff.due(after);
        self.retry_at = Some(at);
        at
    }

    /// Put a batch behind the spooled ones. With `when_full: backpressure` this waits,
    /// replaying, until there is room (or, on shutdown, until the drain deadline).
    fn spool_batch(&mut self, batch: &[u8]) {
        loop {
            match self.spool.append(batch) {
                Ok(()) => {
                    self.counters.spooled.inc();
                    if self.outage.is_some() {
                        self.counters.failing.set(1);
                    }
                    let dropped = self.spool.dropped();
                    if dropped > self.dropped_seen {
                        self.log.warn(
                            "spool_dropped",
                            format_args!(
                                "spool full: {} oldest batches deleted unsent (when_full: drop_oldest)",
                                dropped - self.dropped_seen
                            ),
                        );
                        self.counters.dropped.add(dropped - self.dropped_seen);
                        self.dropped_seen = dropped;
                    }
                    return;
                }
                Err(SpoolError::Full { .. })
                    if self.drain_deadline.is_none()
                        && self.shutdown.as_ref().is_some_and(Shutdown::is_triggered) =>
                {
                    self.drain_deadline = Some(Instant::now() + self.settings.drain_timeout);
                }
                Err(SpoolError::Full { .. })
                    if self.drain_deadline.is_some_and(|d| Instant::now() >= d) =>
                {
                    // Shutting down, the server away and the spool full: the dead-letter
                    // file is the last place on disk for the batch.
                    self.dead_letter(
                        batch,
                        Reason::SpoolFull,
                        "not sent: the spool was full at shutdown",
                    );
                    return;
                }
                Err(SpoolError::Full { .. }) => {
                    if let Some(at) = self.retry_at {
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    }
                    self.replay(REPLAY_SLICE);
                }
                Err(e) => {
                    self.dead_letter(batch, Reason::Unspoolable, &format!("not spooled: {e}"));
                    return;
                }
            }
        }
    }

    /// Write a batch the server rejected (or that could not be spooled) as one letter.
    fn dead_letter(&mut self, batch: &[u8], reason: Reason, error: &str) {
        self.dead_letters
            .write(reason, error, points_in(batch), Payload::Lines(batch));
    }
}
