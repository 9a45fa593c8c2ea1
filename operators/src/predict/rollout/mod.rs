//! `updates:` of a `predict` node: the device side of the learning loop. A new model is
//! announced (a retained MQTT message holding a signed
//! [`Announcement`](smartgrid_models::signing::announcement::Announcement), or the same
//! JSON in an IoT Hub device twin's desired property `model`: `twin.rs`), fetched over
//! HTTP(S), checked (signature, sha256, feature names, a finite smoke prediction), run
//! in shadow beside the active model, promoted if its live error beats the active
//! model's, and rolled back if it gets worse than the model it replaced. See
//! docs/model-rollout.md.
//!
//! ```yaml
//! updates:
//!   mqtt: {url: mqtt://127.0.0.1:1883, topic: smartgrid/models/household}
//!   public_key: keys/model-signing.pub
//!   actual: [p_l1, p_l2, p_l3]
//!   shadow: 10m
//!   promote_margin: 0.05
//!   watch: 30m
//!   rollback_margin: 0.1
//!   keep: 3
//!   status_topic: smartgrid/models/household/status
//! ```

mod controller;
mod evaluation;
mod fetch;
mod twin;

pub use controller::Counters;
pub use evaluation::{Challenger, ErrorSum, Evaluation, Tally};
pub use fetch::MAX_MODEL_BYTES;
pub use twin::TwinConfig;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use smartgrid_models::signing::keys;
use smartgrid_runtime::shutdown::Shutdown;
use smartgrid_runtime::spec::{Duration, OneOrMany, Spanned};
use smartgrid_runtime::{
    BrokerLink, Claim, Location, PlanContext, Resource, Schema, StartContext, StartError,
};

use super::slot::ModelSlot;
use crate::io::mqtt::{
    ClientIdentity, ConnectOptions, Endpoint, Password, Publisher, Qos, SubscribeOptions,
    embedded_broker, spawn_subscriber,
};

fn default_shadow() -> Duration {
    Duration(std::time::Duration::from_secs(600))
}

fn default_watch() -> Duration {
    Duration(std::time::Duration::from_secs(1800))
}

fn default_promote_margin() -> Spanned<f64> {
    Spanned::new(0.05, Location::default())
}

fn default_rollback_margin() -> Spanned<f64> {
    Spanned::new(0.1, Location::default())
}

fn default_min_comparisons() -> u64 {
    30
}

fn default_keep() -> usize {
    3
}

/// `updates:` of a `predict` node: receive new models, check them, evaluate them in
/// shadow, promote them, roll them back.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatesConfig {
    /// Where announcements come from: `{url, topic}` of an MQTT broker; the latest
    /// announcement is expected as a retained message on `topic`. Give this or
    /// `iothub`.
    #[serde(default)]
    pub mqtt: Option<AnnouncementsConfig>,
    /// Or: the Azure IoT Hub device whose twin's desired property `model` holds the
    /// announcement; decisions go to its reported property `model`. The connection
    /// settings of the `iothub` sink (`connection_string`, `x509`, `host`, `port`,
    /// `tls`, `token_ttl`, `keep_alive`).
    #[serde(default)]
    pub iothub: Option<TwinConfig>,
    /// The public key file (`smartgrid keys generate`) models must be signed with,
    /// relative to the pipeline file; read and checked when the pipeline is validated.
    pub public_key: Spanned<PathBuf>,
    /// The input fields whose sum is the actual value a prediction is compared with
    /// (the window `horizon` later). Default: `relative_to`.
    #[serde(default)]
    pub actual: Option<OneOrMany>,
    /// How much event time of compared windows a candidate runs in shadow before it is
    /// promoted or rejected (default `10m`).
    #[serde(default = "default_shadow")]
    pub shadow: Duration,
    /// A candidate is promoted if its live MAE is below the active model's × (1 −
    /// `promote_margin`) (default `0.05`: at least 5 % better). Between −1 and 1.
    #[serde(default = "default_promote_margin")]
    pub promote_margin: Spanned<f64>,
    /// How much event time after a promotion the previous model keeps running beside the
    /// promoted one (default `30m`).
    #[serde(default = "default_watch")]
    pub watch: Duration,
    /// During `watch`, the promoted model is rolled back if its live MAE is above the
    /// previous model's × (1 + `rollback_margin`) (default `0.1`). Between −1 and 10.
    #[serde(default = "default_rollback_margin")]
    pub rollback_margin: Spanned<f64>,
    /// No decision is made on fewer compared windows than this (default `30`).
    #[serde(default = "default_min_comparisons")]
    pub min_comparisons: u64,
    /// How many accepted models stay on disk (default `3`).
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Where accepted models are kept, relative to `data_dir` (default
    /// `<node>-models`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// An MQTT topic (on the announcements' broker) every decision is published to, as
    /// JSON. Default: none (decisions are logged and counted only). Only with `mqtt`:
    /// with `iothub` decisions are the twin's reported property `model`.
    #[serde(default)]
    pub status_topic: Option<Spanned<String>>,
}

/// `updates.mqtt`: the broker and topic of announcements.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnouncementsConfig {
    /// `mqtt://host:port`, `mqtts://host:port` (system roots) or `embedded`.
    pub url: Spanned<String>,
    /// The topic announcements are published on (retained).
    pub topic: Spanned<String>,
    /// Client id prefix: the subscription uses `<client_id>-updates`, the status
    /// publisher `<client_id>-status`. Default `smartgrid-<pipeline>-<node>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name for brokers that require a login.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`; write it as `${VAR}`. Never logged.
    #[serde(default)]
    pub password: Option<String>,
}

/// The controller's thread while the pipeline runs.
pub struct Running {
    thread: JoinHandle<()>,
    /// Raised by [`Running::stop`]: a pipeline that ends by itself does not raise the
    /// process's stop flag.
    stop: Shutdown,
}

impl Running {
    /// Stop the controller and wait for it; false if it panicked.
    pub fn stop(self) -> bool {
        self.stop.trigger();
        self.thread.join().is_ok()
    }
}

impl std::fmt::Debug for AnnouncementsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnouncementsConfig")
            .field("url", &self.url.value)
            .field("topic", &self.topic.value)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// How decisions are made (the planned `updates:`).
#[derive(Clone, Debug)]
pub struct Policy {
    pub shadow_ms: i64,
    pub watch_ms: i64,
    pub promote_margin: f64,
    pub rollback_margin: f64,
    pub min_comparisons: u64,
    pub keep: usize,
    pub dir: PathBuf,
}

/// A planned `updates:` block.
pub struct Updates {
    pub policy: Policy,
    pub key: VerifyingKey,
    pub actual: Vec<usize>,
    pub evaluation: Arc<Evaluation>,
    channel: Channel,
    client_id_at: Location,
}

/// Where announcements come from and decisions go.
enum Channel {
    /// A retained message on `topic`; decisions on the status topic, if any.
    Mqtt {
        subscribe: ConnectOptions,
        status: Option<(ConnectOptions, String)>,
        topic: String,
    },
    /// The device twin: desired property `model` in, reported property `model` out.
    Twin(crate::iothub::DeviceClientOptions),
}

impl std::fmt::Debug for Updates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updates")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.0.as_millis()).unwrap_or(i64::MAX)
}

/// Plan `updates:`; every problem is reported at its key. `relative_to` is the node's
/// (the default `actual`).
pub fn plan(
    config: UpdatesConfig,
    input: &Schema,
    relative_to: &[usize],
    ctx: &mut PlanContext<'_>,
) -> Option<Updates> {
    let at = ctx.node.key_at("updates");
    let key_path = ctx.resolve(&config.public_key.value);
    let key = keys::read_public(&key_path)
        .map_err(|e| {
            ctx.error(config.public_key.at, e.to_string())
                .with_hint("give the `.pub` file `smartgrid keys generate` wrote");
        })
        .ok();
    let actual = match &config.actual {
        Some(fields) => {
            let mut found = Vec::new();
            for name in &fields.0 {
                match input.index_of(&name.value) {
                    Some(i) => found.push(i),
                    None => {
                        ctx.error(
                            name.at,
                            format!("no upstream node produces a field `{}`", name.value),
                        )
                        .with_hint(format!("the input has: {input}"));
                    }
                }
            }
            (found.len() == fields.0.len()).then_some(found)
        }
        None if !relative_to.is_empty() => Some(relative_to.to_vec()),
        None => {
            ctx.error(
                at,
                "`updates:` needs `actual:`, the fields a prediction is compared with",
            )
            .with_hint("e.g. `actual: [p_l1, p_l2, p_l3]` (defaults to `relative_to`)");
            None
        }
    };
    let mut margins_ok = true;
    for (name, margin, range) in [
        ("promote_margin", &config.promote_margin, (-1.0, 1.0)),
        ("rollback_margin", &config.rollback_margin, (-1.0, 10.0)),
    ] {
        if !(range.0..=range.1).contains(&margin.value) {
            let at = if margin.at == Location::default() {
                at
            } else {
                margin.at
            };
            ctx.error(
                at,
                format!(
                    "`{name}` is {}, outside {}..={}",
                    margin.value, range.0, range.1
                ),
            )
            .with_hint("a fraction: 0.05 is 5 %");
            margins_ok = false;
        }
    }
    let channel = match (config.mqtt, config.iothub) {
        (Some(mqtt), None) => plan_mqtt(mqtt, config.status_topic, ctx),
        (None, Some(iothub)) => {
            if let Some(status) = &config.status_topic {
                ctx.error(
                    status.at,
                    "`status_topic` is for `updates.mqtt`; with `updates.iothub` every decision is the twin's reported property `model`",
                )
                .with_hint("remove `status_topic`");
                margins_ok = false;
            }
            twin::plan(iothub, at, ctx).map(Channel::Twin)
        }
        (Some(_), Some(_)) => {
            ctx.error(at, "`updates:` takes `mqtt` or `iothub`, not both")
                .with_hint("announcements come from one place: remove one of them");
            None
        }
        (None, None) => {
            ctx.error(
                at,
                "`updates:` needs `mqtt` or `iothub`: where models are announced",
            )
            .with_hint(
                "e.g. `mqtt: {url: mqtt://127.0.0.1:1883, topic: smartgrid/models/household}` \
                     or `iothub: {connection_string: ${IOTHUB_CONNECTION_STRING}}`",
            );
            None
        }
    };
    if config.min_comparisons == 0 {
        ctx.error(at, "`min_comparisons` must be at least 1")
            .with_hint("decisions need live errors to compare");
        margins_ok = false;
    }
    let (key, actual, channel) = (key?, actual?, channel?);
    if !margins_ok {
        return None;
    }
    let dir = config
        .dir
        .unwrap_or_else(|| PathBuf::from(format!("{}-models", ctx.node.name)));
    Some(Updates {
        policy: Policy {
            shadow_ms: ms(config.shadow),
            watch_ms: ms(config.watch),
            promote_margin: config.promote_margin.value,
            rollback_margin: config.rollback_margin.value,
            min_comparisons: config.min_comparisons,
            keep: config.keep.max(1),
            dir: ctx.resolve_data(&dir),
        },
        key,
        actual,
        evaluation: Arc::new(Evaluation::default()),
        channel,
        client_id_at: at,
    })
}

/// `updates.mqtt` and `status_topic`.
fn plan_mqtt(
    mqtt: AnnouncementsConfig,
    status_topic: Option<Spanned<String>>,
    ctx: &mut PlanContext<'_>,
) -> Option<Channel> {
    let mut ok = true;
    let endpoint = Endpoint::parse(&mqtt.url.value)
        .map_err(|e| {
            ctx.error(mqtt.url.at, e.to_string())
                .with_hint("write mqtt://host:port, mqtts://host:port or `embedded`");
        })
        .ok();
    let topic = &mqtt.topic.value;
    if topic.is_empty() || !rumqttc::valid_topic(topic) {
        ctx.error(
            mqtt.topic.at,
            format!("`{topic}` is not a topic to subscribe to"),
        )
        .with_hint("a topic without wildcards, e.g. smartgrid/models/household");
        ok = false;
    }
    if let Some(status) = &status_topic
        && (status.value.is_empty() || !rumqttc::valid_topic(&status.value))
    {
        ctx.error(
            status.at,
            format!("`{}` is not a topic to publish to", status.value),
        )
        .with_hint("a topic without wildcards, e.g. smartgrid/models/household/status");
        ok = false;
    }
    let endpoint = endpoint?;
    if !ok {
        return None;
    }
    let prefix = mqtt
        .client_id
        .clone()
        .unwrap_or_else(|| format!("smartgrid-{}-{}", ctx.pipeline, ctx.node.name));
    let identity = |suffix: &str| {
        let identity = ClientIdentity::new(format!("{prefix}-{suffix}"));
        match &mqtt.username {
            Some(user) => {
                identity.with_login(user.clone(), mqtt.password.clone().map(Password::new))
            }
            None => identity,
        }
    };
    let mut subscribe = ConnectOptions::new(endpoint.clone(), identity("updates"));
    // the latest announcement is retained: nothing older is worth queueing
    subscribe.clean_session = true;
    let status = status_topic.map(|topic| {
        let mut connect = ConnectOptions::new(endpoint, identity("status"));
        connect.clean_session = true;
        (connect, topic.value)
    });
    Some(Channel::Mqtt {
        subscribe,
        status,
        topic: topic.clone(),
    })
}

impl Updates {
    /// The broker client ids and the model directory this node uses.
    pub fn resources(&self) -> Vec<Claim> {
        let mut claims: Vec<Claim> = match &self.channel {
            Channel::Mqtt {
                subscribe, status, ..
            } => std::iter::once(subscribe)
                .chain(status.as_ref().map(|(c, _)| c))
                .map(|c| Claim {
                    resource: Resource::MqttClientId {
                        broker: c.endpoint.to_string(),
                        client_id: c.identity.client_id.clone(),
                    },
                    at: self.client_id_at,
                })
                .collect(),
            // the `iothub` sink claims the same: one connection per device
            Channel::Twin(options) => vec![crate::iothub::device_claim(options, self.client_id_at)],
        };
        claims.push(Claim {
            resource: Resource::Directory(self.policy.dir.clone()),
            at: self.client_id_at,
        });
        claims
    }

    /// The announcement and status topics, for `smartgrid graph`.
    /// (None for the device twin: it is no broker topic of the pipeline.)
    pub fn broker_links(&self) -> Vec<BrokerLink> {
        let Channel::Mqtt {
            subscribe,
            status,
            topic,
        } = &self.channel
        else {
            return Vec::new();
        };
        let broker = subscribe.endpoint.to_string();
        let mut links = vec![BrokerLink {
            broker: broker.clone(),
            topic: topic.clone(),
            publishes: false,
        }];
        links.extend(status.as_ref().map(|(_, topic)| BrokerLink {
            broker: broker.clone(),
            topic: topic.clone(),
            publishes: true,
        }));
        links
    }

    /// Start the controller's thread (in the first process only: see the docs).
    pub fn start(
        &self,
        slot: &Arc<ModelSlot>,
        active_version: String,
        ctx: &StartContext<'_>,
    ) -> Result<Option<Running>, StartError> {
        if ctx.process_count > 1 {
            return Err(StartError::other(
                "`updates:` of a predict node cannot run in a cluster run yet: run it on one process",
            ));
        }
        let stop = Shutdown::new();
        let (source, status, listening) = match &self.channel {
            Channel::Mqtt {
                subscribe,
                status,
                topic,
            } => {
                if subscribe.endpoint == Endpoint::Embedded {
                    embedded_broker().map_err(|e| {
                        StartError::other(format!("cannot start the embedded broker: {e}"))
                    })?;
                }
                let mut options = SubscribeOptions::new([topic.clone()]);
                options.qos = Qos::AtLeastOnce;
                options.channel_capacity = 16;
                let subscriber =
                    spawn_subscriber(subscribe, &options, stop.flag()).map_err(|e| {
                        StartError::other(format!("cannot subscribe to announcements: {e}"))
                    })?;
                let status = match status {
                    Some((connect, topic)) => Some((
                        Publisher::start(connect, 100).map_err(|e| {
                            StartError::other(format!(
                                "cannot start the model status publisher: {e}"
                            ))
                        })?,
                        topic.clone(),
                    )),
                    None => None,
                };
                let listening = format!("on {} (topic {topic})", subscribe.endpoint);
                (controller::Source::Mqtt(subscriber), status, listening)
            }
            Channel::Twin(options) => {
                let link = twin::TwinLink::connect(ctx.node, options.clone()).map_err(|e| {
                    StartError::other(format!(
                        "cannot connect to IoT Hub for the device twin: {e}"
                    ))
                })?;
                link.wait_connected(std::time::Duration::from_secs(10));
                let listening = format!(
                    "in the device twin of {} (desired property `model`)",
                    options.connection.client_id()
                );
                (controller::Source::Twin(link), None, listening)
            }
        };
        let counters = Counters {
            refused: ctx.counter("model_refused"),
            promoted: ctx.counter("model_promoted"),
            rejected: ctx.counter("model_rejected"),
            rolled_back: ctx.counter("model_rolled_back"),
            kept: ctx.counter("model_kept"),
        };
        let mut controller = controller::Controller::new(
            ctx.node.to_owned(),
            Arc::clone(slot),
            Arc::clone(&self.evaluation),
            self.key,
            self.policy.clone(),
            counters,
            source,
        );
        controller.status = status;
        controller.active_version = active_version;
        match fetch::restore_active(&self.policy.dir, &self.key, slot.names()) {
            Ok(Some((model, manifest))) => {
                tracing::info!(
                    "{}: resuming with model {} (version {:08x}), promoted in an earlier run",
                    ctx.node,
                    manifest.version,
                    model.version()
                );
                slot.install(model);
                controller.active_version = manifest.version;
                controller.active_sha = Some(manifest.model_sha256);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "{}: starting from `model:`; the model promoted in an earlier run cannot be used: {e}",
                ctx.node
            ),
        }
        let (own, process) = (stop.clone(), ctx.shutdown.clone());
        tracing::info!(
            "{}: listening for model announcements {listening}",
            ctx.node
        );
        std::thread::Builder::new()
            .name(format!("{}-rollout", ctx.node))
            .spawn(move || controller.run(own, process))
            .map(|thread| Some(Running { thread, stop }))
            .map_err(|source| StartError::Io {
                context: "cannot start the model rollout thread".into(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_as_documented_and_the_password_is_never_shown() {
        let config: UpdatesConfig = serde_json::from_str(
            r#"{"mqtt": {"url": "mqtt://127.0.0.1:1883", "topic": "m", "username": "u",
                "password": "hunter2-secret"}, "public_key": "k.pub"}"#,
        )
        .expect("valid");
        assert_eq!(config.shadow.0, std::time::Duration::from_secs(600));
        assert_eq!(config.watch.0, std::time::Duration::from_secs(1800));
        assert_eq!(config.promote_margin.value, 0.05);
        assert_eq!(config.rollback_margin.value, 0.1);
        assert_eq!(config.min_comparisons, 30);
        assert_eq!(config.keep, 3);
        assert!(config.status_topic.is_none() && config.actual.is_none());
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let unknown = serde_json::from_str::<UpdatesConfig>(
            r#"{"mqtt": {"url": "embedded", "topic": "m"}, "public_key": "k", "shadow_for": "1m"}"#,
        );
        assert!(unknown.is_err(), "unknown keys are refused");
    }

    #[test]
    fn the_twin_takes_the_sinks_connection_keys_and_never_shows_the_key() {
        let config: UpdatesConfig = serde_json::from_str(
            r#"{"iothub": {"connection_string": "HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0",
                "host": "127.0.0.1", "port": 8884, "tls": {"ca_file": "ca.pem"}},
                "public_key": "k.pub"}"#,
        )
        .expect("valid");
        assert!(config.mqtt.is_none());
        let twin = config.iothub.as_ref().expect("iothub");
        assert_eq!((twin.port, twin.host.as_deref()), (8884, Some("127.0.0.1")));
        assert_eq!(twin.token_ttl.0, std::time::Duration::from_secs(3600));
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("SharedAccessKey"),
            "{shown}"
        );
        let unknown = serde_json::from_str::<UpdatesConfig>(
            r#"{"iothub": {"connection_string": "x", "topic": "m"}, "public_key": "k"}"#,
        );
        assert!(unknown.is_err(), "unknown keys under iothub are refused");
    }
}
