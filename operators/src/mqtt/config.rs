//! The settings of the `mqtt` source node as written in YAML ([`MqttConfig`], whose
//! doc comments are the user docs). `node.rs` plans them into the connection layer's
//! typed options (`crate::io::mqtt`) once.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer};
use smartgrid_runtime::spec::{ByteSize, Duration};

use crate::io::TlsConfig;

/// The topic filter subscribed to when `topics` is not given: every Clemap monitor's
/// real-time feature stream.
pub const DEFAULT_TOPIC: &str = "data/realtime/feature/+";

fn default_topics() -> Vec<String> {
    vec![DEFAULT_TOPIC.to_string()]
}

fn default_qos() -> u8 {
    1
}

fn default_keep_alive() -> Duration {
    Duration(StdDuration::from_secs(30))
}

fn default_channel_capacity() -> usize {
    10_000
}

fn default_initial_delay() -> Duration {
    Duration(StdDuration::from_secs(1))
}

fn default_max_delay() -> Duration {
    Duration(StdDuration::from_secs(300))
}

/// `retry:` of the `mqtt` source: how long to wait between connection attempts.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// The wait before the first reconnect attempt after a connection failure
    /// (default `1s`); it doubles with each failed attempt (with ±25 % jitter) and
    /// starts again after a successful connection.
    #[serde(default = "default_initial_delay")]
    pub initial_delay: Duration,
    /// The longest wait between attempts (default `300s`).
    #[serde(default = "default_max_delay")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_delay: default_initial_delay(),
            max_delay: default_max_delay(),
        }
    }
}

/// The default `wal.max_size`.
pub const DEFAULT_WAL_SIZE: u64 = 1 << 30;

/// When the write-ahead log syncs (`wal.fsync`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WalFsync {
    /// An fsync and an acknowledgement per message.
    Always,
    /// One fsync for a group of messages, then their acknowledgements.
    #[default]
    Group,
}

/// `wal:` of the `mqtt` source: a write-ahead log on disk. Every message is written
/// and synced to it before it is acknowledged to the broker, and checkpoints (every
/// `checkpoint_interval`) record how far the pipeline got in it, so after a crash
/// (even `kill -9` or a power loss) the next run replays what the last checkpoint did
/// not cover: nothing the broker considers delivered is lost. An empty `wal:` takes
/// every default.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    /// The log's directory, relative to `data_dir` (default
    /// `data/<node>.wal`): one per source, locked while the pipeline runs. It belongs
    /// with the state directory: a checkpoint names positions in this log.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// The most disk the log takes, e.g. `1GiB` (the default; at least twice
    /// `max_message_size`). It holds what the last checkpoint does not cover, about
    /// `checkpoint_interval` of messages. When it is full the source stops reading from
    /// the broker (which keeps the messages) until a checkpoint frees space: nothing is
    /// dropped.
    #[serde(default)]
    pub max_size: Option<ByteSize>,
    /// `group` (default): one fsync for every message that arrived while the previous
    /// one ran, then their acknowledgements; `always`: an fsync and an acknowledgement
    /// per message (far slower; see BENCHMARKS.md).
    #[serde(default)]
    pub fsync: WalFsync,
    /// `group` only: how long a group waits for more messages before its fsync, up to
    /// `1s` (default `0s`: it does not wait; under load groups form while the previous
    /// fsync runs). Fewer fsyncs for more latency.
    #[serde(default)]
    pub commit_interval: Option<Duration>,
}

/// `wal:` with no value is a log with every default, not no log.
fn wal_table<'de, D: Deserializer<'de>>(d: D) -> Result<Option<WalConfig>, D::Error> {
    Ok(Some(
        Option::<WalConfig>::deserialize(d)?.unwrap_or_default(),
    ))
}

/// Settings of the `mqtt` source: subscribe to topics on a broker and emit each
/// message's topic and payload.
#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker to connect to: `mqtt://host:port` (plain TCP, port 1883 if omitted),
    /// `mqtts://host:port` (TLS, port 8883 if omitted), or `embedded` to start a broker
    /// inside this process on 127.0.0.1 (shared by every node that says `embedded`;
    /// useful with the simulator and for tests).
    pub url: String,

    /// Topic filters to subscribe to; `+` matches one level, `#` the rest.
    /// Default: `["data/realtime/feature/+"]`.
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,

    /// Delivery guarantee: `1` (default) acknowledges a message only after it was handed
    /// to the pipeline, so a crash or disconnect never loses an acknowledged message
    /// (it may deliver one twice); `0` is cheaper but loses messages in flight when the
    /// connection drops.
    #[serde(default = "default_qos")]
    pub qos: u8,

    /// The MQTT client id. The broker keeps a persistent session under this id, so
    /// it must be unique among the broker's clients and stable across restarts.
    /// Default: `smartgrid-<pipeline>-<node>`.
    #[serde(default)]
    pub client_id: Option<String>,

    /// `false` (default): a persistent session; the broker keeps the subscriptions and
    /// queues QoS 1 messages while this pipeline is down, and delivers them when it
    /// reconnects (across a restart of the broker only if it persists sessions, e.g.
    /// mosquitto's `persistence true`). A reconnect the broker answers without that
    /// session is counted (`<node>.sessions_lost`) and logged as a warning. `true`:
    /// start afresh on every connect; messages published while disconnected are lost,
    /// and nothing counts them.
    #[serde(default)]
    pub clean_session: bool,

    /// User name for brokers that require a login.
    #[serde(default)]
    pub username: Option<String>,

    /// Password for `username`. Write it as `${VAR}` to take it from the environment
    /// instead of the file; it is never logged.
    #[serde(default)]
    pub password: Option<String>,

    /// `mqtts://` only: `{ ca_file, client_cert, client_key }`, PEM files relative to
    /// the pipeline file: the CA that signed the broker's certificate (default: the
    /// system's trusted roots) and, for brokers that check clients by certificate, the
    /// client's certificate and key. Each file is read and checked when the pipeline
    /// is validated.
    #[serde(default)]
    pub tls: TlsConfig,

    /// How often to ping the broker when idle, e.g. `30s` (default). The broker drops
    /// the connection after 1.5 × this without traffic. `0s` disables pings; otherwise
    /// between 1 s and 65535 s.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: Duration,

    /// How many received messages may wait for the pipeline (default 10000). When the
    /// pipeline falls behind and this fills up, the client stops reading from the
    /// broker (and stops acknowledging) until there is room: memory stays bounded.
    #[serde(default = "default_channel_capacity")]
    pub channel_capacity: usize,

    /// `{ initial_delay, max_delay }`: the wait between reconnect attempts, from
    /// `initial_delay` (default `1s`) doubling with jitter up to `max_delay` (default
    /// `300s`); reset after a successful connection.
    #[serde(default)]
    pub retry: RetryConfig,

    /// The largest payload taken (default `1MiB`). A larger message is acknowledged,
    /// counted (`<node>.oversized`) and dead-lettered by topic and size, without its
    /// body, so one such message cannot stop ingestion.
    #[serde(default)]
    pub max_message_size: Option<ByteSize>,

    /// `{ file: path }`: where refused messages are recorded (JSON lines: time, node,
    /// topic, reason, error, size), relative to `data_dir`.
    #[serde(default)]
    pub dead_letter: Option<SourceDeadLetter>,

    /// `{ dir, max_size, fsync, commit_interval }`: a write-ahead log, so that a crash
    /// loses nothing the broker considers delivered (see [`WalConfig`]). Default: none;
    /// a message is then acknowledged once it is handed to the pipeline, and one the
    /// pipeline had not finished with when it crashed is lost.
    #[serde(default, deserialize_with = "wal_table")]
    pub wal: Option<WalConfig>,

    /// `{ subscribe, group }`: how the processes of a cluster run (`--hosts`) share
    /// the messages (see [`ClusterConfig`]). A single process ignores it.
    #[serde(default)]
    pub cluster: ClusterConfig,
}

/// How the processes of a cluster share one `mqtt` source (`cluster.subscribe`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClusterSubscribe {
    /// Every process subscribes to `$share/<group>/<filter>` with a client id of its
    /// own (`<client_id>-p<process>`); the broker hands each message to one of them
    /// (MQTT 5 and mosquitto ≥ 1.6 with 3.1.1 clients, EMQX, HiveMQ, VerneMQ).
    #[default]
    Shared,
    /// For brokers without shared subscriptions: process `i` of `n` subscribes to
    /// the filters at positions `i`, `i + n`, … of `topics` (give at least as many
    /// filters as processes, e.g. one per site or meter group), with its own client id.
    Topics,
    /// Only the first process subscribes (what a single machine's broker link needs;
    /// every message crosses into process 0's network link).
    First,
}

/// `cluster:` of the `mqtt` source.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `shared` (default), `topics` or `first`: see [`ClusterSubscribe`]. An
    /// `embedded` broker lives in the first process, so it is always `first` there.
    #[serde(default)]
    pub subscribe: ClusterSubscribe,
    /// The shared subscription's group name (`shared` only; default
    /// `smartgrid-<pipeline>-<node>`). Two pipelines that must each see every message
    /// need different groups.
    #[serde(default)]
    pub group: Option<String>,
}

/// Where an `mqtt` source records the messages it refuses.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceDeadLetter {
    /// A JSON-lines file.
    pub file: PathBuf,
}

impl MqttConfig {
    /// The shared subscription's group: `cluster.group` if set, else
    /// `smartgrid-<pipeline>-<node>` (the default client id, which names the same thing).
    pub fn share_group(&self, pipeline: &str, node: &str) -> String {
        match &self.cluster.group {
            Some(group) => group.clone(),
            None => format!("smartgrid-{pipeline}-{node}"),
        }
    }

    /// The client id: `client_id` if set, else `smartgrid-<pipeline>-<node>`.
    pub fn client_id(&self, pipeline: &str, node: &str) -> String {
        match &self.client_id {
            Some(id) => id.clone(),
            None => format!("smartgrid-{pipeline}-{node}"),
        }
    }
}

impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("topics", &self.topics)
            .field("qos", &self.qos)
            .field("client_id", &self.client_id)
            .field("clean_session", &self.clean_session)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("keep_alive", &self.keep_alive.0)
            .field("channel_capacity", &self.channel_capacity)
            .field("retry", &self.retry)
            .field("max_message_size", &self.max_message_size)
            .field("dead_letter", &self.dead_letter)
            .field("wal", &self.wal)
            .field("cluster", &self.cluster)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_as_documented() {
        let cfg: MqttConfig =
            serde_json::from_str(r#"{"url": "mqtt://127.0.0.1:1883"}"#).expect("valid");
        assert_eq!(cfg.topics, vec!["data/realtime/feature/+".to_string()]);
        assert_eq!(cfg.qos, 1);
        assert!(!cfg.clean_session);
        assert_eq!(cfg.channel_capacity, 10_000);
        assert_eq!(cfg.retry.initial_delay.0, StdDuration::from_secs(1));
        assert_eq!(cfg.retry.max_delay.0, StdDuration::from_secs(300));
        assert_eq!(cfg.keep_alive.0, StdDuration::from_secs(30));
        assert_eq!(cfg.tls, TlsConfig::default());
        assert_eq!(cfg.client_id("home", "meters"), "smartgrid-home-meters");
        assert_eq!(cfg.wal, None);
    }

    #[test]
    fn an_empty_wal_takes_every_default() {
        for text in [
            r#"{"url": "embedded", "wal": null}"#,
            r#"{"url": "embedded", "wal": {}}"#,
        ] {
            let cfg: MqttConfig = serde_json::from_str(text).expect("valid");
            assert_eq!(cfg.wal, Some(WalConfig::default()), "{text}");
        }
        let wal = WalConfig::default();
        assert_eq!(
            (wal.dir, wal.max_size, wal.fsync),
            (None, None, WalFsync::Group)
        );
        let cfg: MqttConfig = serde_json::from_str(
            r#"{"url": "embedded", "wal": {"dir": "w", "fsync": "always", "max_size": "64MiB"}}"#,
        )
        .expect("valid");
        let wal = cfg.wal.expect("a log");
        assert_eq!(wal.fsync, WalFsync::Always);
        assert_eq!(wal.max_size, Some(ByteSize(64 << 20)));
        let err = serde_json::from_str::<MqttConfig>(r#"{"url": "embedded", "wal": {"sync": 1}}"#)
            .expect_err("unknown wal key");
        assert!(err.to_string().contains("sync"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_str::<MqttConfig>(r#"{"url": "embedded", "qso": 1}"#)
            .expect_err("unknown key");
        assert!(err.to_string().contains("qso"), "{err}");
        let err = serde_json::from_str::<MqttConfig>(
            r#"{"url": "embedded", "retry": {"initial": "1s"}}"#,
        )
        .expect_err("unknown retry key");
        assert!(err.to_string().contains("initial"), "{err}");
    }

    #[test]
    fn debug_redacts_the_password() {
        let mut cfg: MqttConfig =
            serde_json::from_str(r#"{"url": "mqtt://127.0.0.1:1883"}"#).expect("valid");
        cfg.username = Some("meter".into());
        cfg.password = Some("hunter2".into());
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
