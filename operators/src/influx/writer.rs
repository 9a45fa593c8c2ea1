//! The writer thread: batches lines, sends them, retries, spools, dead-letters.
//!
//! The dataflow hands it encoded lines through a bounded channel ([`Msg`]); HTTP never
//! runs on a timely worker. Order is kept: while the spool holds anything, new batches
//! go behind it, and the spool is replayed oldest first.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::operator::open_output;

use super::client::{Backoff, Client, Outcome};
use crate::spool::{Spool, SpoolError};

/// What the sink operator sends to the writer.
pub enum Msg {
    /// Encoded lines (each ending in `\n`) and how many there are.
    Lines { text: Vec<u8>, points: usize },
    /// The input ended: send or spool everything, then stop.
    Close,
}

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
    /// Points rejected by the server, in the dead-letter file.
    pub dead_letters: Counter,
    /// Batches deleted unsent by `when_full: drop_oldest`.
    pub dropped: Counter,
    /// Failed attempts (connection errors, 5xx, 429, …).
    pub failures: Counter,
}

/// How often an ongoing outage is logged.
const LOG_EVERY: Duration = Duration::from_secs(30);
/// The longest stretch of spool replay before new input is looked at again.
const REPLAY_SLICE: Duration = Duration::from_millis(200);

/// The writer thread's state.
pub struct Writer {
    node: String,
    client: Client,
    spool: Spool,
    dead_letter_path: PathBuf,
    dead_letters: Option<std::io::BufWriter<std::fs::File>>,
    settings: Settings,
    counters: Counters,
    batch: Vec<u8>,
    batch_points: usize,
    batch_since: Option<Instant>,
    backoff: Backoff,
    /// No attempt before this (after a failure).
    retry_at: Option<Instant>,
    /// Since when the server has been failing, and when that was last logged.
    outage: Option<(Instant, Instant)>,
    dropped_seen: u64,
    /// Set while draining on shutdown: a full spool waits no longer than this.
    drain_deadline: Option<Instant>,
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
        dead_letter_path: PathBuf,
        settings: Settings,
        counters: Counters,
    ) -> Self {
        let backoff = Backoff::new(settings.retry_initial, settings.retry_max);
        Self {
            node,
            client,
            spool,
            dead_letter_path,
            dead_letters: None,
            batch: Vec::new(),
            batch_points: 0,
            batch_since: None,
            backoff,
            retry_at: None,
            outage: None,
            dropped_seen: 0,
            drain_deadline: None,
            settings,
            counters,
        }
    }

    /// Run until [`Msg::Close`] (or every sender is gone), then drain.
    pub fn run(mut self, rx: Receiver<Msg>) {
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
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Msg::Lines { text, points }) => {
                    if self.batch.is_empty() {
                        self.batch_since = Some(Instant::now());
                    }
                    self.batch.extend_from_slice(&text);
                    self.batch_points += points;
                    if self.batch_points >= self.settings.batch_size {
                        self.ship_batch();
                    }
                }
                Ok(Msg::Close) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
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
        if let Some(f) = &mut self.dead_letters {
            let _ = f.flush();
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
                    self.dead_letter(&batch, status, &message);
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
                    self.ack();
                    self.delivered(points_in(&record));
                    if self.spool.is_empty() {
                        tracing::info!(node = %self.node, "the spool is empty again");
                    }
                }
                Outcome::Rejected { status, message } => {
                    self.dead_letter(&record, status, &message);
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
        self.backoff.reset();
        self.retry_at = None;
        if let Some((since, _)) = self.outage.take() {
            tracing::info!(
                node = %self.node,
                "{} accepts writes again after {:.1}s; {} batches to replay",
                self.client.url(),
                since.elapsed().as_secs_f64(),
                self.spool.len()
            );
        }
    }

    /// Note a failed attempt, log it (once, then every [`LOG_EVERY`]) and schedule the
    /// next one. Returns when it is due.
    fn failed(&mut self, reason: &str, config: bool, after: Option<Duration>) -> Instant {
        self.counters.failures.inc();
        let now = Instant::now();
        let log = match &mut self.outage {
            None => {
                self.outage = Some((now, now));
                true
            }
            Some((_, logged)) if now.duration_since(*logged) >= LOG_EVERY => {
                *logged = now;
                true
            }
            Some(_) => false,
        };
        if log {
            let pending = self.spool.len();
            if config {
                tracing::error!(
                    node = %self.node,
                    url = %self.client.url(),
                    "the server refuses the writes: {reason}; check the url, org/bucket or db, and the credentials (batches wait in the spool, {pending} now)"
                );
            } else {
                tracing::warn!(
                    node = %self.node,
                    url = %self.client.url(),
                    "write failed: {reason}; retrying with backoff (batches wait in the spool, {pending} now)"
                );
            }
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
                    let dropped = self.spool.dropped();
                    if dropped > self.dropped_seen {
                        tracing::warn!(
                            node = %self.node,
                            "spool full: {} oldest batches deleted unsent (when_full: drop_oldest)",
                            dropped - self.dropped_seen
                        );
                        self.counters.dropped.add(dropped - self.dropped_seen);
                        self.dropped_seen = dropped;
                    }
                    return;
                }
                Err(SpoolError::Full { .. })
                    if self.drain_deadline.is_some_and(|d| Instant::now() >= d) =>
                {
                    // Shutting down, the server away and the spool full: the dead-letter
                    // file is the last place on disk for the batch.
                    self.dead_letter(batch, 0, "not sent: the spool was full at shutdown");
                    return;
                }
                Err(SpoolError::Full { .. }) => {
                    if let Some(at) = self.retry_at {
                        std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    }
                    self.replay(REPLAY_SLICE);
                }
                Err(e) => {
                    tracing::error!(node = %self.node, "cannot spool a batch: {e}; it goes to the dead-letter file");
                    self.dead_letter(batch, 0, &format!("not spooled: {e}"));
                    return;
                }
            }
        }
    }

    /// Write a batch the server rejected (or that could not be spooled) as one JSON line.
    fn dead_letter(&mut self, batch: &[u8], status: u16, message: &str) {
        let points = points_in(batch);
        self.counters.dead_letters.add(points);
        tracing::error!(
            node = %self.node,
            status,
            "a batch of {points} points goes to the dead-letter file {}: {message}",
            self.dead_letter_path.display()
        );
        let letter = serde_json::json!({
            "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "node": self.node,
            "status": status,
            "error": message,
            "points": points,
            "lines": String::from_utf8_lossy(batch),
        });
        if self.dead_letters.is_none() {
            match open_output(&self.dead_letter_path, false) {
                Ok(f) => self.dead_letters = Some(f),
                Err(e) => {
                    tracing::error!(node = %self.node, "cannot open the dead-letter file: {e}");
                    return;
                }
            }
        }
        if let Some(f) = &mut self.dead_letters {
            let written = writeln!(f, "{letter}").and_then(|()| f.flush());
            if let Err(e) = written {
                tracing::error!(node = %self.node, "cannot write a dead letter: {e}");
            }
        }
    }
}
