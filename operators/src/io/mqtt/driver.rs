//! The connection driver: the one loop around rumqttc's event loop that every client
//! of this layer (subscriber, publisher, IoT Hub device client) runs on.
//!
//! rumqttc reconnects whenever its event loop is polled again after an error, with no
//! wait of its own. The [`Driver`] polls it on a dedicated thread and adds what every
//! client needs: a jittered, capped [`Backoff`](crate::io::Backoff) between attempts
//! (reset after a successful connection), the stop flags, the connection state and
//! counters the handles read ([`ConnectionState`]), and one throttled log of
//! connection errors. What a client does with the packets is its [`Handler`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rumqttc::{ConnAck, Event, EventLoop, Incoming, Outgoing};
use smartgrid_runtime::metrics::Gauge;

use super::error::MqttError;
use super::options::Retry;
use crate::io::Backoff;

/// How often a waiting thread looks at the stop flags.
pub(crate) const STOP_POLL: Duration = Duration::from_millis(100);

/// A streak of connection failures is logged at its first failure, then at most this
/// often (the rest at debug level), so an hour-long outage is a few lines, not
/// thousands.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Locks a mutex; a panic elsewhere while it was held cannot leave these simple values
/// half-updated, so a poisoned lock is used as is.
/// Why [`wait_until`] returned without its condition.
pub(crate) enum WaitEnd {
    /// The client's thread has ended.
    Finished,
    /// The deadline passed after waiting this long.
    TimedOut(Duration),
}

/// Polls `done` every 5 ms until it holds, the client's thread has ended (`finished`)
/// or `deadline` passes: how the publisher and the IoT Hub client wait for a
/// connection or for acknowledgements.
pub(crate) fn wait_until(
    deadline: Instant,
    done: impl Fn() -> bool,
    finished: impl Fn() -> bool,
) -> Result<(), WaitEnd> {
    let started = Instant::now();
    loop {
        if done() {
            return Ok(());
        }
        if finished() {
            return Err(WaitEnd::Finished);
        }
        if Instant::now() >= deadline {
            return Err(WaitEnd::TimedOut(started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The flags that end a connection thread: the pipeline's shutdown flag and the
/// handle's own stop flag.
#[derive(Clone)]
pub(crate) struct StopFlags {
    shutdown: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl StopFlags {
    /// Stopped by `shutdown` (the pipeline's) or by [`stop`](Self::stop).
    pub(crate) fn new(shutdown: Arc<AtomicBool>) -> Self {
        StopFlags {
            shutdown,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Stopped only by [`stop`](Self::stop).
    pub(crate) fn standalone() -> Self {
        Self::new(Arc::new(AtomicBool::new(false)))
    }

    /// Ask the thread to disconnect and end.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed) || self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps for `duration`, returning early (with `true`) if a stop flag is set.
    pub(crate) async fn pause(&self, duration: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            if self.stopping() {
                return true;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep((deadline - now).min(STOP_POLL)).await;
        }
    }

    /// Waits until a stop flag is set, then asks for a DISCONNECT through `disconnect`
    /// (retrying while the request channel is full). The event loop sends it next
    /// time it is polled, so a stop never cancels a poll half-way.
    pub(crate) async fn disconnect_on_stop(self, disconnect: impl Fn() -> bool) {
        let mut tick = tokio::time::interval(STOP_POLL);
        loop {
            tick.tick().await;
            if self.stopping() && disconnect() {
                return;
            }
        }
    }
}

/// The connection's state and counters, written by the driver and read by the
/// client's handle.
#[derive(Default)]
pub(crate) struct ConnectionState {
    connected: AtomicBool,
    connections: AtomicU64,
    connection_errors: AtomicU64,
    last_error: Mutex<Option<MqttError>>,
    /// Where `smartgrid run --http` sees the connection: 1 connected, 0 not.
    gauge: OnceLock<Gauge>,
}

impl ConnectionState {
    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        if let Some(gauge) = self.gauge.get() {
            gauge.set(i64::from(connected));
        }
    }

    /// Show the connection's state in `gauge` from now on (the first gauge given stays).
    pub(crate) fn report_to(&self, gauge: Gauge) {
        gauge.set(i64::from(self.connected()));
        let _ = self.gauge.set(gauge);
    }

    /// Connected right now.
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Successful connections so far (the first one included).
    pub(crate) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Successful connections after the first one.
    pub(crate) fn reconnects(&self) -> u64 {
        self.connections().saturating_sub(1)
    }

    /// Failed connection attempts and dropped connections.
    pub(crate) fn connection_errors(&self) -> u64 {
        self.connection_errors.load(Ordering::Relaxed)
    }

    /// The most recent error (a connection's, or one a handler recorded).
    pub(crate) fn last_error(&self) -> Option<MqttError> {
        lock(&self.last_error).clone()
    }

    pub(crate) fn set_error(&self, error: MqttError) {
        *lock(&self.last_error) = Some(error);
    }

    /// Forgets the last error if `stale` says it no longer applies.
    pub(crate) fn clear_error_if(&self, stale: impl Fn(&MqttError) -> bool) {
        let mut last = lock(&self.last_error);
        if last.as_ref().is_some_and(stale) {
            *last = None;
        }
    }

    /// The error that explains a wait that timed out: the last error while not
    /// connected, else `timed_out`.
    pub(crate) fn explain(&self, timed_out: MqttError) -> MqttError {
        match self.last_error() {
            Some(error) if !self.connected() => error,
            _ => timed_out,
        }
    }
}

/// The one log of connection errors: the first failure of a streak at warn level,
/// then at most once per [`LOG_EVERY`] with the number of failures so far.
struct ErrorLog {
    what: &'static str,
    broker: String,
    streak: u64,
    last_logged: Option<Instant>,
}

impl ErrorLog {
    fn failed(&mut self, error: &MqttError, retry_in: Duration) {
        self.streak += 1;
        if self.last_logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            self.last_logged = Some(Instant::now());
            tracing::warn!(
                broker = %self.broker,
                %error,
                failures = self.streak,
                retry_in = ?retry_in,
                "{} connection failed",
                self.what
            );
        } else {
            tracing::debug!(broker = %self.broker, %error, failures = self.streak, "{} connection failed", self.what);
        }
    }

    fn connected(&mut self, first: bool, session_present: bool) {
        if first {
            tracing::info!(broker = %self.broker, "connected to {}", self.what);
        } else {
            tracing::info!(
                broker = %self.broker,
                session_present,
                after_failures = self.streak,
                "reconnected to {}",
                self.what
            );
        }
        self.streak = 0;
        self.last_logged = None;
    }
}

/// Whether the driver goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Stop,
}

/// What a client does with its connection. Every method runs on the driver's thread
/// between two polls of the event loop.
pub(crate) trait Handler {
    /// Before each connection attempt (e.g. fresh credentials); `Stop` ends the driver
    /// instead of connecting.
    fn before_connect(&mut self, _eventloop: &mut EventLoop) -> Flow {
        Flow::Continue
    }

    /// After a CONNACK; the driver has counted it and reset the backoff.
    fn connected(&mut self, eventloop: &mut EventLoop, ack: &ConnAck, first: bool);

    /// Any other event but a sent DISCONNECT.
    fn event(&mut self, eventloop: &mut EventLoop, event: Event);

    /// A DISCONNECT was sent: `Stop` (the default) ends the driver, `Continue`
    /// reconnects.
    fn disconnected(&mut self, _eventloop: &mut EventLoop) -> Flow {
        Flow::Stop
    }

    /// The connection failed or broke, before the pause; `Stop` ends the driver
    /// instead of retrying.
    fn connection_lost(&mut self, _eventloop: &mut EventLoop) -> Flow {
        Flow::Continue
    }

    /// The longest pause before the next attempt (e.g. a closing client's deadline).
    fn max_pause(&self) -> Option<Duration> {
        None
    }

    /// After every poll.
    fn after_poll(&mut self) {}
}

/// The connection loop of one client. See the module documentation.
pub(crate) struct Driver {
    eventloop: EventLoop,
    broker: String,
    backoff: Backoff,
    flags: StopFlags,
    state: Arc<ConnectionState>,
    log: ErrorLog,
}

impl Driver {
    /// A driver for `eventloop` (connecting to `broker`, `host:port`, named in
    /// messages); `what` names the peer in its log lines ("connected to IoT Hub",
    /// "MQTT broker connection failed").
    pub(crate) fn new(
        eventloop: EventLoop,
        broker: String,
        retry: Retry,
        flags: StopFlags,
        state: Arc<ConnectionState>,
        what: &'static str,
    ) -> Self {
        Driver {
            eventloop,
            log: ErrorLog {
                what,
                broker: broker.clone(),
                streak: 0,
                last_logged: None,
            },
            broker,
            backoff: retry.backoff(),
            flags,
            state,
        }
    }

    /// Connects, dispatches to `handler`, reconnects with backoff, until a stop flag
    /// is set (and the DISCONNECT went out) or the handler says stop.
    pub(crate) async fn run(mut self, handler: &mut impl Handler) {
        let mut connected = false;
        let mut first = true;
        loop {
            if !connected
                && (self.flags.stopping()
                    || handler.before_connect(&mut self.eventloop) == Flow::Stop)
            {
                break;
            }
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    connected = true;
                    self.backoff.reset();
                    self.state.set_connected(true);
                    self.state.connections.fetch_add(1, Ordering::Relaxed);
                    self.log.connected(first, ack.session_present);
                    handler.connected(&mut self.eventloop, &ack, first);
                    first = false;
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    connected = false;
                    self.state.set_connected(false);
                    if handler.disconnected(&mut self.eventloop) == Flow::Stop {
                        break;
                    }
                }
                Ok(event) => handler.event(&mut self.eventloop, event),
                Err(error) => {
                    connected = false;
                    self.state.set_connected(false);
                    let flow = handler.connection_lost(&mut self.eventloop);
                    if self.flags.stopping() || flow == Flow::Stop {
                        break;
                    }
                    let error = MqttError::from_connection(&self.broker, &error);
                    self.state.connection_errors.fetch_add(1, Ordering::Relaxed);
                    let mut pause = self.backoff.delay(None);
                    if let Some(max) = handler.max_pause() {
                        pause = pause.min(max);
                    }
                    self.log.failed(&error, pause);
                    self.state.set_error(error);
                    if self.flags.pause(pause).await {
                        break;
                    }
                }
            }
            handler.after_poll();
        }
        self.state.set_connected(false);
        tracing::debug!(broker = %self.broker, "{} connection ended", self.log.what);
    }
}

/// Runs `make()`'s future on a new thread named `name`, on a current-thread tokio
/// runtime (built here, so failing to build it is reported to the caller).
pub(crate) fn spawn<F>(
    name: String,
    make: impl FnOnce() -> F + Send + 'static,
) -> Result<JoinHandle<()>, MqttError>
where
    F: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| MqttError::Spawn(Arc::new(e)))?;
    thread::Builder::new()
        .name(name)
        .spawn(move || runtime.block_on(make()))
        .map_err(|e| MqttError::Spawn(Arc::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn pause_returns_early_on_stop() {
        let flags = StopFlags::standalone();
        assert!(!flags.pause(Duration::from_millis(10)).await);
        flags.stop();
        let started = Instant::now();
        assert!(flags.pause(Duration::from_secs(10)).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_timeout_is_explained_by_the_last_error_while_disconnected() {
        let state = ConnectionState::default();
        let timeout = || MqttError::Closed;
        assert!(matches!(state.explain(timeout()), MqttError::Closed));
        state.set_error(MqttError::Tls("bad".into()));
        assert!(matches!(state.explain(timeout()), MqttError::Tls(_)));
        state.connected.store(true, Ordering::Relaxed);
        assert!(matches!(state.explain(timeout()), MqttError::Closed));
        state.clear_error_if(|e| matches!(e, MqttError::Tls(_)));
        assert!(state.last_error().is_none());
    }
}
