//! The last WARN and ERROR events of the log, for the status page (`GET /api/errors`).
//!
//! A [`tracing`] layer stacked under the same filter as the log's own output
//! (`cli::init_logging`), so it sees exactly what the log shows: the network libraries'
//! wire dumps never reach it, and the rule that nothing logged carries a secret (the
//! operators quote the pipeline file's `${VAR}`, not its value) holds here as well.
//! Bounded: a ring of [`KEPT`] events, and only WARN and ERROR (the decoders already
//! throttle their warnings), so it costs nothing on the hot path.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Events kept.
pub(crate) const KEPT: usize = 50;

/// One event as the page shows it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LogEvent {
    /// Wall clock, ms since the epoch.
    pub time_ms: i64,
    pub level: &'static str,
    /// The message, then the event's other fields as ` key=value`.
    pub message: String,
}

/// The process's ring (one per process, as the log is).
fn ring() -> &'static Mutex<VecDeque<LogEvent>> {
    static RING: OnceLock<Mutex<VecDeque<LogEvent>>> = OnceLock::new();
    RING.get_or_init(|| Mutex::new(VecDeque::with_capacity(KEPT)))
}

fn push(ring: &Mutex<VecDeque<LogEvent>>, event: LogEvent) {
    let mut ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
    if ring.len() == KEPT {
        ring.pop_front();
    }
    ring.push_back(event);
}

/// The kept events, oldest first, as JSON.
pub(crate) fn to_json() -> serde_json::Value {
    let ring = ring().lock().unwrap_or_else(PoisonError::into_inner);
    json!({
        "events": ring.iter().map(|e| json!({
            "time_ms": e.time_ms,
            "level": e.level,
            "message": e.message,
        })).collect::<Vec<_>>(),
    })
}

/// The layer that fills the ring.
pub(crate) struct RecentErrors;

impl<S: Subscriber> Layer<S> for RecentErrors {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            _ => return,
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        push(
            ring(),
            LogEvent {
                time_ms: smartgrid_runtime::clock::now_ms(),
                level,
                message: fields.message + &fields.rest,
            },
        );
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn warnings_and_errors_are_kept_and_the_oldest_leave_first() {
        let subscriber = tracing_subscriber::registry().with(RecentErrors);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not kept");
            tracing::warn!(node = "readings", "undecodable payload");
            for i in 0..KEPT {
                tracing::error!("failure {i}");
            }
        });
        let json = to_json();
        let events = json["events"].as_array().expect("events");
        assert_eq!(events.len(), KEPT);
        // Other tests of this process may log too: look for ours only.
        let ours: Vec<&str> = events
            .iter()
            .filter_map(|e| e["message"].as_str())
            .filter(|m| m.starts_with("failure ") || m.contains("payload"))
            .collect();
        assert_eq!(ours.first(), Some(&"failure 0"));
        assert_eq!(ours.last(), Some(&"failure 49"));
        assert!(!ours.iter().any(|m| m.contains("not kept")));

        let ring = Mutex::new(VecDeque::new());
        for i in 0..=KEPT {
            push(
                &ring,
                LogEvent {
                    time_ms: i as i64,
                    level: "WARN",
                    message: format!("{i}"),
                },
            );
        }
        let ring = ring.into_inner().expect("not poisoned");
        assert_eq!(ring.len(), KEPT);
        assert_eq!(ring.front().map(|e| e.time_ms), Some(1));
    }
}
