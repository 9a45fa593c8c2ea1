//! The rollout controller: one thread per `predict` node with `updates:`. It receives
//! announcements, fetches and checks the models they name, opens a shadow evaluation
//! for an accepted one, and decides, from the live errors the operators tally, to
//! promote or reject it, then to keep or roll back a promotion. Every decision is
//! logged, counted and published on the status topic (or, with `updates.iothub`,
//! reported in the device twin: `twin.rs`).
//!
//! The operators only read what this thread sets (the slot, the challenger); it never
//! waits on them, and they never wait on the network.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::shutdown::Shutdown;

use super::super::slot::{LoadedModel, ModelSlot};
use super::Policy;
use super::evaluation::{Evaluation, Tally};
use super::fetch::{self, Accepted, Refusal};
use super::twin::{Next, TwinLink};
use crate::io::mqtt::{Publisher, Qos, RecvTimeoutError, Subscriber};

/// Where announcements come from.
pub enum Source {
    /// A retained message on the announcement topic.
    Mqtt(Subscriber),
    /// The device twin's desired property `model`; decisions go back as its reported
    /// property `model`.
    Twin(TwinLink),
}

impl Source {
    fn next(&mut self, timeout: Duration) -> Next {
        match self {
            Source::Mqtt(subscriber) => match subscriber.recv_timeout(timeout) {
                Ok(message) => Next::Announced(message.payload),
                Err(RecvTimeoutError::Timeout) => Next::Idle,
                Err(RecvTimeoutError::Disconnected) => Next::Ended,
            },
            Source::Twin(link) => link.next(timeout),
        }
    }
}

/// How often the tallies are looked at when no announcement arrives.
const TICK: Duration = Duration::from_millis(100);

/// What the controller counts, as `<node>.model_<what>`.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub refused: Counter,
    pub promoted: Counter,
    pub rejected: Counter,
    pub rolled_back: Counter,
    pub kept: Counter,
}

enum Phase {
    /// Only the active model runs.
    Idle,
    /// `candidate` runs beside the active model; its predictions are compared, not sent.
    Shadow { candidate: Box<Accepted> },
    /// A promotion is watched: `previous` runs beside the promoted model, ready to be
    /// put back.
    Watch {
        previous: Arc<LoadedModel>,
        previous_version: String,
        previous_sha: Option<String>,
    },
}

/// A decision, as published.
struct Decision<'a> {
    decision: &'static str,
    version: &'a str,
    model_version: Option<u32>,
    reason: String,
    tally: Option<(Tally, &'static str)>,
}

pub struct Controller {
    pub node: String,
    pub slot: Arc<ModelSlot>,
    pub evaluation: Arc<Evaluation>,
    pub key: VerifyingKey,
    pub policy: Policy,
    pub counters: Counters,
    pub status: Option<(Publisher, String)>,
    source: Source,
    /// The active model's version as announced (its manifest's), or the file's.
    pub active_version: String,
    /// The active model's sha256 if it is a kept (promoted) model.
    pub active_sha: Option<String>,
    phase: Phase,
    /// An accepted model that arrived during a shadow or a watch: the latest one waits.
    waiting: Option<Box<Accepted>>,
    /// The last refused announcement, as received: the same retained message comes
    /// again on every reconnect and is not fetched, refused and reported again.
    last_refused: Option<bytes::Bytes>,
}

impl Controller {
    pub fn new(
        node: String,
        slot: Arc<ModelSlot>,
        evaluation: Arc<Evaluation>,
        key: VerifyingKey,
        policy: Policy,
        counters: Counters,
        source: Source,
    ) -> Self {
        Controller {
            node,
            slot,
            evaluation,
            key,
            policy,
            counters,
            status: None,
            source,
            active_version: String::new(),
            active_sha: None,
            phase: Phase::Idle,
            waiting: None,
            last_refused: None,
        }
    }

    /// Runs until `stop` or `process` (the run's stop flag): announcements from
    /// the source, decisions every tick.
    pub fn run(mut self, stop: Shutdown, process: Shutdown) {
        let stopping = || stop.is_triggered() || process.is_triggered();
        while !stopping() {
            match self.source.next(TICK) {
                Next::Announced(payload) => {
                    if self.last_refused.as_ref() == Some(&payload) {
                        tracing::debug!("{}: a refused announcement again; ignored", self.node);
                    } else if self.announced(&payload).is_err() {
                        self.last_refused = Some(payload);
                    }
                }
                Next::Idle => {}
                Next::Ended => {
                    if !stopping() {
                        tracing::error!(
                            "{}: the announcement subscription ended; no more model updates",
                            self.node
                        );
                    }
                    break;
                }
            }
            self.tick();
        }
        if let Source::Twin(link) = &mut self.source {
            link.close();
        }
        if let Some((publisher, _)) = self.status.take()
            && let Err(e) = publisher.flush_and_close(Duration::from_secs(2))
        {
            tracing::warn!("{}: model status messages may be lost: {e}", self.node);
        }
    }

    /// One announcement: checked, then shadowed (or kept waiting); `Err` if refused.
    fn announced(&mut self, payload: &[u8]) -> Result<(), ()> {
        let announcement = match fetch::parse(payload) {
            Ok(a) => a,
            Err(refusal) => return self.refuse("?", &refusal),
        };
        let version = announcement.manifest.version.clone();
        let known = version == self.active_version
            || matches!(&self.phase, Phase::Shadow { candidate } if candidate.manifest.version == version)
            || self
                .waiting
                .as_ref()
                .is_some_and(|w| w.manifest.version == version);
        if known {
            // a retained announcement is delivered again on every reconnect
            tracing::debug!(
                "{}: model {version} announced again; nothing to do",
                self.node
            );
            return Ok(());
        }
        tracing::info!(
            "{}: model {version} announced at {}; fetching and checking it",
            self.node,
            crate::io::shown_url(&announcement.url)
        );
        let row = self.evaluation.last_row();
        let accepted = match fetch::fetch_and_check(
            &announcement,
            &self.key,
            self.slot.names(),
            row.as_deref(),
        ) {
            Ok(a) => a,
            Err(refusal) => return self.refuse(&version, &refusal),
        };
        let mut protect = vec![accepted.manifest.model_sha256.as_str()];
        protect.extend(self.active_sha.as_deref());
        if let Phase::Watch {
            previous_sha: Some(sha),
            ..
        } = &self.phase
        {
            protect.push(sha);
        }
        if let Err(e) = fetch::store(&self.policy.dir, &accepted, self.policy.keep, &protect) {
            tracing::warn!(
                "{}: cannot keep model {version} in {}: {e}",
                self.node,
                self.policy.dir.display()
            );
        }
        match self.phase {
            Phase::Idle => self.shadow(Box::new(accepted)),
            _ => {
                tracing::info!(
                    "{}: model {version} waits until the current evaluation ends",
                    self.node
                );
                self.waiting = Some(Box::new(accepted));
            }
        }
        Ok(())
    }

    /// Log, count and report a refusal; always `Err`, for `announced` to return.
    fn refuse(&mut self, version: &str, refusal: &Refusal) -> Result<(), ()> {
        self.counters.refused.inc();
        tracing::warn!(
            "{}: refusing model {version}, keeping {}: {refusal}",
            self.node,
            self.active_version
        );
        self.report(Decision {
            decision: "refused",
            version,
            model_version: None,
            reason: refusal.to_string(),
            tally: None,
        });
        Err(())
    }

    fn shadow(&mut self, candidate: Box<Accepted>) {
        tracing::info!(
            "{}: model {} (version {:08x}) runs in shadow beside {} for {} of event time",
            self.node,
            candidate.manifest.version,
            candidate.model.version(),
            self.active_version,
            humantime::format_duration(Duration::from_millis(self.policy.shadow_ms as u64))
        );
        self.evaluation.open(Some(Arc::clone(&candidate.model)));
        self.report(Decision {
            decision: "shadowing",
            version: &candidate.manifest.version,
            model_version: Some(candidate.model.version()),
            reason: format!("evaluated beside {}", self.active_version),
            tally: None,
        });
        self.phase = Phase::Shadow { candidate };
    }

    fn tick(&mut self) {
        let tally = self.evaluation.tally();
        let enough = tally.active.count >= self.policy.min_comparisons;
        let policy = &self.policy;
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Idle => {
                if let Some(next) = self.waiting.take() {
                    self.shadow(next);
                }
            }
            Phase::Shadow { candidate } if enough && tally.span_ms() >= policy.shadow_ms => {
                let (active, challenger) = (tally.active.mae(), tally.challenger.mae());
                let bar = active * (1.0 - policy.promote_margin);
                if challenger < bar {
                    self.promote(candidate, tally);
                } else {
                    self.counters.rejected.inc();
                    let reason = format!(
                        "live MAE {challenger:.3} is not below {bar:.3} (the active model's {active:.3} less the {} margin)",
                        policy.promote_margin
                    );
                    tracing::warn!(
                        "{}: model {} rejected, keeping {}: {reason}",
                        self.node,
                        candidate.manifest.version,
                        self.active_version
                    );
                    self.evaluation.open(None);
                    self.report(Decision {
                        decision: "rejected",
                        version: &candidate.manifest.version,
                        model_version: Some(candidate.model.version()),
                        reason,
                        tally: Some((tally, "candidate")),
                    });
                }
            }
            Phase::Watch {
                previous,
                previous_version,
                previous_sha,
            } => {
                let (active, before) = (tally.active.mae(), tally.challenger.mae());
                let bar = before * (1.0 + policy.rollback_margin);
                if enough && active > bar {
                    self.counters.rolled_back.inc();
                    let dropped = std::mem::replace(&mut self.active_version, previous_version);
                    let reason = format!(
                        "live MAE {active:.3} is above {bar:.3} (the previous model's {before:.3} plus the {} margin)",
                        policy.rollback_margin
                    );
                    self.slot.install(Arc::clone(&previous));
                    self.evaluation.open(None);
                    self.record_active(previous_sha);
                    tracing::warn!(
                        "{}: model {dropped} rolled back to {}: {reason}",
                        self.node,
                        self.active_version
                    );
                    self.report(Decision {
                        decision: "rolled_back",
                        version: &dropped,
                        model_version: Some(previous.version()),
                        reason,
                        tally: Some((tally, "previous")),
                    });
                } else if enough && tally.span_ms() >= policy.watch_ms {
                    self.counters.kept.inc();
                    let reason = format!(
                        "live MAE {active:.3} stayed within {bar:.3} (the previous model's {before:.3} plus the {} margin)",
                        policy.rollback_margin
                    );
                    tracing::info!(
                        "{}: model {} kept: {reason}",
                        self.node,
                        self.active_version
                    );
                    self.evaluation.open(None);
                    let version = self.active_version.clone();
                    self.report(Decision {
                        decision: "kept",
                        version: &version,
                        model_version: Some(self.slot.current().version()),
                        reason,
                        tally: Some((tally, "previous")),
                    });
                } else {
                    self.phase = Phase::Watch {
                        previous,
                        previous_version,
                        previous_sha,
                    };
                }
            }
            phase => self.phase = phase,
        }
    }

    fn promote(&mut self, candidate: Box<Accepted>, tally: Tally) {
        self.counters.promoted.inc();
        let (active, challenger) = (tally.active.mae(), tally.challenger.mae());
        let reason = format!(
            "live MAE {challenger:.3} beats the active model's {active:.3} by more than the {} margin",
            self.policy.promote_margin
        );
        let version = candidate.manifest.version.clone();
        let previous = self.slot.install(Arc::clone(&candidate.model));
        // the previous model now runs beside the promoted one, to be put back if the
        // promotion turns out worse
        self.evaluation.open(Some(Arc::clone(&previous)));
        let previous_version = std::mem::replace(&mut self.active_version, version.clone());
        tracing::info!(
            "{}: model {version} (version {:08x}) promoted over {previous_version}: {reason}",
            self.node,
            candidate.model.version()
        );
        self.report(Decision {
            decision: "promoted",
            version: &version,
            model_version: Some(candidate.model.version()),
            reason,
            tally: Some((tally, "candidate")),
        });
        let previous_sha = self.active_sha.clone();
        self.record_active(Some(candidate.manifest.model_sha256.clone()));
        self.phase = Phase::Watch {
            previous,
            previous_version,
            previous_sha,
        };
    }

    /// The kept model with `sha256` is active from now on (`None`: the node's own
    /// `model:`), also for the next run.
    fn record_active(&mut self, sha256: Option<String>) {
        if let Err(e) = fetch::record_active(&self.policy.dir, sha256.as_deref()) {
            tracing::warn!(
                "{}: cannot record the active model in {}; a restart starts from `model:`: {e}",
                self.node,
                self.policy.dir.display()
            );
        }
        self.active_sha = sha256;
    }

    fn report(&self, d: Decision<'_>) {
        if self.status.is_none() && !matches!(self.source, Source::Twin(_)) {
            return;
        }
        let mut status = serde_json::json!({
            "node": self.node,
            "decision": d.decision,
            "version": d.version,
            "active": self.active_version,
            "reason": d.reason,
            "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        });
        if let Some(v) = d.model_version {
            status["model_version"] = serde_json::json!(v);
        }
        if let Some((tally, other)) = d.tally {
            let mut mae = serde_json::Map::new();
            mae.insert("active".into(), tally.active.mae().into());
            mae.insert(other.into(), tally.challenger.mae().into());
            status["mae"] = mae.into();
            status["comparisons"] = serde_json::json!(tally.active.count);
        }
        if let Source::Twin(link) = &self.source {
            link.report(&status);
        }
        let Some((publisher, topic)) = &self.status else {
            return;
        };
        // never wait for a broker that is away: decisions go on, and are logged anyway
        match publisher.try_publish(topic, status.to_string(), Qos::AtLeastOnce) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "{}: the model status queue is full (broker away?); this status is dropped",
                self.node
            ),
            Err(e) => tracing::warn!("{}: cannot publish the model status: {e}", self.node),
        }
    }
}
