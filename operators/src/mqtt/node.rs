//! The `mqtt` source node: its settings planned once into the connection layer's typed
//! options (every problem located at its key, TLS files read and checked), one
//! subscriber per process that subscribes (the first, or every one of a cluster: see
//! `cluster.rs`), started before the workers and drained into the dataflow by the
//! process's first worker without blocking.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use smartgrid_runtime::metrics::Gauge;
use smartgrid_runtime::operator::open_output;
use smartgrid_runtime::source::{Poll, poll_source};
use smartgrid_runtime::{
    AnyStream, BrokerLink, Claim, Inputs, Limit, Location, Message, Node, PlanContext, PortType,
    RenderContext, Resource, StartContext, StartError,
};

use super::cluster::{self, PlannedCluster};
use super::config::{DEFAULT_TOPIC, MqttConfig};
use super::wal::{self, PlannedWal, RunningWal};
use crate::io::mqtt::{
    ClientIdentity, ConnectOptions, Endpoint, MAX_PACKET_SIZE, MqttError, Password, Qos, Refused,
    Retry, SubscribeOptions, Subscriber, TlsOptions, TryRecvError, embedded_broker,
    spawn_logged_subscriber, spawn_subscriber,
};

/// Messages handed to the dataflow per activation, so one source cannot starve a worker.
const BATCH: usize = 1024;

/// What a running `mqtt` source holds, in each process that subscribes.
pub struct Running {
    subscriber: Arc<Subscriber>,
    dead_letters: Option<Arc<Mutex<std::io::BufWriter<std::fs::File>>>>,
    wal: Option<RunningWal>,
    /// 1 while the subscriptions are in place: registered at start, so a readiness
    /// probe sees the source (as not ready) before any worker runs.
    subscribed: Gauge,
}

/// Worker 0's record of the messages refused for their size: counted, and written to
/// the dead-letter file by topic and size (never their body).
struct Refusals {
    node: String,
    limit: usize,
    file: Option<Arc<Mutex<std::io::BufWriter<std::fs::File>>>>,
    counter: smartgrid_runtime::metrics::Counter,
}

impl Refusals {
    fn record(&mut self, refused: Vec<Refused>) {
        if refused.is_empty() {
            return;
        }
        self.counter.add(refused.len() as u64);
        let Some(file) = &self.file else { return };
        let mut file = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in refused {
            let error = format!(
                "a payload of {} bytes is over max_message_size ({} bytes)",
                r.size, self.limit
            );
            let mut letter = crate::delivery::dead_letter::letter(&self.node, "oversized", &error);
            letter["topic"] = (*r.topic).into();
            letter["size"] = r.size.into();
            let written = writeln!(file, "{letter}").and_then(|()| file.flush());
            if let Err(e) = written {
                tracing::error!(node = %self.node, "cannot write a dead letter: {e}");
            }
        }
    }
}

/// A planned `mqtt` source.
pub struct MqttSource {
    connect: ConnectOptions,
    subscribe: SubscribeOptions,
    client_id_at: Location,
    /// The dead-letter file for refused messages, and where it is named.
    dead_letter: Option<(std::path::PathBuf, Location)>,
    /// The write-ahead log, if `wal:` is set.
    wal: Option<PlannedWal>,
    /// How the processes of a cluster share the subscription.
    cluster: PlannedCluster,
}

impl Node for MqttSource {
    const KIND: &'static str = "mqtt";
    const SUMMARY: &'static str = "source: subscribe to MQTT topics (QoS 0/1, persistent session, TLS, reconnect with backoff)";
    const INPUTS: Inputs = Inputs::None;
    const RENAMED_KEYS: &'static [(&'static str, &'static str)] = &[
        ("ca_file", "tls.ca_file"),
        ("client_cert", "tls.client_cert"),
        ("client_key", "tls.client_key"),
        ("reconnect_min", "retry.initial_delay"),
        ("reconnect_max", "retry.max_delay"),
    ];
    const LIMITS: &'static [(&'static str, Limit)] = &[
        ("max_message_size", Limit::bytes(1024, 256 << 20)),
        // The channel allocates its slots up front.
        ("channel_capacity", Limit::count(1, 1_000_000)),
        ("retry.initial_delay", Limit::seconds(0, 3600)),
        ("retry.max_delay", Limit::seconds(0, 86_400)),
        ("wal.max_size", Limit::bytes(1 << 20, 1 << 40)),
        ("wal.commit_interval", Limit::millis_to_seconds(0, 1)),
    ];

    type Config = MqttConfig;

    /// The subscriber, in each process that subscribes.
    type State = Option<Running>;

    fn plan(config: MqttConfig, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let client_id = config.client_id(ctx.pipeline, &ctx.node.name);
        let endpoint = plan_endpoint(&config, ctx);
        let subscribe = plan_subscription(&config, ctx);
        let identity = plan_identity(&config, client_id, endpoint.as_ref(), ctx);
        let keep_alive = plan_keep_alive(&config, ctx);
        let retry = plan_retry(&config, ctx);
        let wal = wal::plan(&config, max_message_size(&config), ctx);
        let cluster = cluster::plan(&config, ctx);
        let tls = match &endpoint {
            Some(endpoint) => plan_tls(&config, endpoint, ctx),
            None => None,
        };
        let mut connect = ConnectOptions::new(endpoint?, identity?);
        connect.tls = tls?;
        connect.keep_alive = keep_alive?;
        connect.clean_session = config.clean_session;
        connect.retry = retry?;
        let dead_letter = config
            .dead_letter
            .as_ref()
            .map(|d| (ctx.resolve_data(&d.file), ctx.node.key_at("dead_letter")));
        Some(MqttSource {
            connect,
            subscribe: subscribe?,
            client_id_at: ctx.node.key_at("client_id"),
            dead_letter,
            wal: wal?,
            cluster: cluster?,
        })
    }

    fn output(&self) -> Option<PortType> {
        Some(PortType::Messages)
    }

    /// With a write-ahead log, a checkpoint's position can be replayed.
    fn replayable(&self) -> bool {
        self.wal.is_some()
    }

    fn broker_links(&self) -> Vec<BrokerLink> {
        self.subscribe
            .topics
            .iter()
            .map(|topic| BrokerLink {
                broker: self.connect.endpoint.to_string(),
                topic: topic.clone(),
                publishes: false,
            })
            .collect()
    }

    fn resources(&self) -> Vec<Claim> {
        let mut claims = vec![Claim {
            resource: Resource::MqttClientId {
                broker: self.connect.endpoint.to_string(),
                client_id: self.connect.identity.client_id.clone(),
            },
            at: self.client_id_at,
        }];
        if let Some((path, at)) = &self.dead_letter {
            claims.push(Claim {
                resource: Resource::FileWritten(path.clone()),
                at: *at,
            });
        }
        if let Some(wal) = &self.wal {
            claims.push(Claim {
                resource: Resource::Directory(wal.options.dir.clone()),
                at: wal.at,
            });
        }
        claims
    }

    fn start(&self, ctx: &StartContext<'_>) -> Result<Self::State, StartError> {
        // One connection per process that subscribes; its first worker drains it and
        // the decoded readings are spread over every worker of the cluster by sensor.
        let Some(share) = self.cluster.share(
            &self.connect,
            &self.subscribe,
            ctx.process_index,
            ctx.process_count,
        ) else {
            return Ok(None);
        };
        if share.connect.endpoint == Endpoint::Embedded {
            embedded_broker()
                .map_err(|e| StartError::other(format!("cannot start the embedded broker: {e}")))?;
        }
        let dead_letters = match &self.dead_letter {
            Some((path, _)) => {
                let path =
                    cluster::per_process(path, usize::from(share.own_files) * ctx.process_index);
                Some(Arc::new(Mutex::new(open_output(&path, false)?)))
            }
            None => None,
        };
        let (subscriber, wal) = match &self.wal {
            Some(planned) => {
                // Each process logs what it received, in a log of its own, and replays
                // its own tail after a crash.
                let mut planned = planned.clone();
                if share.own_files {
                    planned.options.dir =
                        cluster::per_process(&planned.options.dir, ctx.process_index);
                }
                let (journal, wal) = RunningWal::open(&planned, ctx)?;
                let flag = ctx.shutdown.flag();
                let subscriber =
                    spawn_logged_subscriber(&share.connect, &share.subscribe, flag, journal);
                (subscriber, Some(wal))
            }
            None => (
                spawn_subscriber(&share.connect, &share.subscribe, ctx.shutdown.flag()),
                None,
            ),
        };
        let subscriber = subscriber.map_err(StartError::other)?;
        subscriber.report_connection_to(ctx.gauge("connected"));
        let subscribed = ctx.gauge("subscribed");
        subscribed.set(i64::from(subscriber.is_subscribed()));
        Ok(Some(Running {
            subscriber: Arc::new(subscriber),
            dead_letters,
            wal,
            subscribed,
        }))
    }

    fn render<'s>(
        &self,
        state: &Self::State,
        ctx: &RenderContext<'s>,
        _inputs: Vec<AnyStream<'s>>,
    ) -> Option<AnyStream<'s>> {
        let Some(running) = state
            .as_ref()
            .filter(|_| ctx.worker == ctx.process_first_worker())
        else {
            let empty = poll_source(ctx.scope, ctx.node, |_: &mut Vec<Message>| Poll::Done);
            return Some(AnyStream::Messages(empty));
        };
        let subscriber = Arc::clone(&running.subscriber);
        let mut refusals = Refusals {
            node: ctx.node.to_string(),
            limit: self.subscribe.max_message_size,
            file: running.dead_letters.clone(),
            counter: ctx.counter("oversized"),
        };
        let received = ctx.counter("messages");
        let sessions_lost = ctx.counter("sessions_lost");
        let mut lost_counted = 0;
        let mut positions = running.wal.as_ref().map(|wal| wal.positions(ctx));
        let node = ctx.node.to_string();
        let mut announced = false;
        // Event time may follow the clock only while this subscription is in place and
        // nothing waits in its channel: see `smartgrid_runtime::liveness`.
        let mut liveness = ctx.process.liveness.source();
        let subscribed_gauge = running.subscribed.clone();
        let stream = poll_source(ctx.scope, ctx.node, move |out: &mut Vec<Message>| {
            refusals.record(subscriber.take_refused());
            let lost = subscriber.sessions_lost();
            sessions_lost.add(lost - lost_counted);
            lost_counted = lost;
            let subscribed = subscriber.is_subscribed();
            // Per poll (a batch of up to BATCH messages), not per message.
            subscribed_gauge.set(i64::from(subscribed));
            if !announced && subscribed {
                tracing::info!(node = %node, "subscribed");
                announced = true;
            }
            // What the log kept from before goes first; the live messages wait.
            if let Some(positions) = positions.as_mut()
                && positions.replay(out, BATCH)
            {
                liveness.set(false);
                return Poll::More;
            }
            while out.len() < BATCH {
                match subscriber.try_recv() {
                    Ok(message) => out.push(message),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        received.add(out.len() as u64);
                        if let Some(positions) = positions.as_mut() {
                            positions.live(out.len());
                        }
                        return if out.is_empty() {
                            Poll::Done
                        } else {
                            Poll::More
                        };
                    }
                }
            }
            received.add(out.len() as u64);
            if let Some(positions) = positions.as_mut() {
                positions.live(out.len());
            }
            let caught_up = out.len() < BATCH;
            liveness.set(subscribed && caught_up);
            if caught_up { Poll::Idle } else { Poll::More }
        });
        Some(AnyStream::Messages(stream))
    }

    /// A source that never subscribed in the whole run received nothing: that is an
    /// error to exit with, not a quiet success.
    fn finish(&self, state: Self::State, _ctx: &StartContext<'_>) -> Result<(), StartError> {
        let Some(running) = state else {
            return Ok(());
        };
        if let Some(failure) = running.wal.as_ref().and_then(RunningWal::failure) {
            return Err(StartError::other(format!(
                "the write-ahead log failed, and the subscriber stopped: {failure}"
            )));
        }
        let stats = running.subscriber.stats();
        if stats.ever_subscribed {
            return Ok(());
        }
        let why = stats
            .last_error
            .map_or_else(|| "no answer".to_string(), |e| e.to_string());
        Err(StartError::other(format!(
            "never subscribed to {} during the run ({why}); nothing was received",
            self.connect.endpoint
        )))
    }
}

/// Reports a problem at `key` with a hint.
fn problem(ctx: &mut PlanContext<'_>, key: &str, message: impl Into<String>, hint: &str) {
    ctx.error_at_key(key, message).with_hint(hint.to_string());
}

/// Where `outer.inner` stands (`tls: { ca_file: … }`), else where `outer` does.
pub(super) fn nested_at(ctx: &PlanContext<'_>, outer: &str, inner: &str) -> Location {
    ctx.node
        .settings
        .get(outer)
        .and_then(|mapping| mapping.entries().iter().find(|(k, _)| k.value == inner))
        .map_or_else(|| ctx.node.key_at(outer), |(k, _)| k.at)
}

pub(super) fn nested_problem(
    ctx: &mut PlanContext<'_>,
    outer: &str,
    inner: &str,
    message: impl Into<String>,
    hint: &str,
) {
    let at = nested_at(ctx, outer, inner);
    ctx.error(at, message).with_hint(hint.to_string());
}

fn plan_endpoint(config: &MqttConfig, ctx: &mut PlanContext<'_>) -> Option<Endpoint> {
    match Endpoint::parse(&config.url) {
        Ok(endpoint) => Some(endpoint),
        Err(e) => {
            let hint = "write mqtt://host:port, mqtts://host:port or `embedded`";
            problem(ctx, "url", e.to_string(), hint);
            None
        }
    }
}

fn plan_subscription(config: &MqttConfig, ctx: &mut PlanContext<'_>) -> Option<SubscribeOptions> {
    let mut ok = true;
    if config.topics.is_empty() {
        let hint = format!("subscribe to at least one filter, e.g. `{DEFAULT_TOPIC}`");
        problem(ctx, "topics", "no topic filter given", &hint);
        ok = false;
    }
    for topic in &config.topics {
        if topic.is_empty() {
            problem(
                ctx,
                "topics",
                "an empty topic filter",
                "remove it or write a filter",
            );
            ok = false;
        } else if !rumqttc::valid_filter(topic) {
            let hint = "`+` must fill a whole level and `#` must be the last level, e.g. `data/+/feature/#`";
            problem(
                ctx,
                "topics",
                format!("`{topic}` is not a valid topic filter"),
                hint,
            );
            ok = false;
        }
    }
    let qos = match Qos::try_from(config.qos) {
        Ok(qos) => Some(qos),
        Err(_) => {
            let hint = "use 1 (at least once, the default) or 0 (at most once)";
            problem(
                ctx,
                "qos",
                format!("QoS {} is not supported", config.qos),
                hint,
            );
            None
        }
    };
    let qos = qos?;
    ok.then(|| SubscribeOptions {
        topics: config.topics.clone(),
        qos,
        channel_capacity: config.channel_capacity,
        max_message_size: max_message_size(config),
    })
}

fn max_message_size(config: &MqttConfig) -> usize {
    config.max_message_size.map_or(MAX_PACKET_SIZE, |s| {
        usize::try_from(s.0).unwrap_or(usize::MAX)
    })
}

fn plan_identity(
    config: &MqttConfig,
    client_id: String,
    endpoint: Option<&Endpoint>,
    ctx: &mut PlanContext<'_>,
) -> Option<ClientIdentity> {
    let mut ok = true;
    if client_id.is_empty() {
        let hint = "remove the key to use smartgrid-<pipeline>-<node>, or give a unique id";
        problem(ctx, "client_id", "the client id is empty", hint);
        ok = false;
    } else if client_id.len() > 128 {
        problem(
            ctx,
            "client_id",
            "the client id is longer than 128 bytes",
            "use a short id",
        );
        ok = false;
    } else if let Some(c) = client_id
        .chars()
        .find(|c| matches!(c, '/' | '+' | '#') || c.is_whitespace() || c.is_control())
    {
        // Brokers build topic paths and log lines from client ids: `/` made the
        // embedded broker panic, and wildcards and spaces are refused by others.
        let message = format!("the client id may not contain {c:?}");
        let hint = "use letters, digits, `-`, `_`, `.` and `:`";
        problem(ctx, "client_id", message, hint);
        ok = false;
    }
    if config.password.is_some() && config.username.is_none() {
        let hint = "MQTT 3.1.1 sends a password only with a username; set `username`";
        problem(ctx, "password", "a password without a username", hint);
        ok = false;
    }
    if endpoint == Some(&Endpoint::Embedded)
        && (config.username.is_some() || config.password.is_some())
    {
        let key = if config.username.is_some() {
            "username"
        } else {
            "password"
        };
        let hint = "remove the credentials, or use an external broker";
        problem(ctx, key, "the embedded broker does not check logins", hint);
        ok = false;
    }
    let mut identity = ClientIdentity::new(client_id);
    if let Some(username) = &config.username {
        identity =
            identity.with_login(username.clone(), config.password.clone().map(Password::new));
    }
    ok.then_some(identity)
}

fn plan_keep_alive(config: &MqttConfig, ctx: &mut PlanContext<'_>) -> Option<StdDuration> {
    let keep_alive = config.keep_alive.0;
    if !keep_alive.is_zero() && keep_alive < StdDuration::from_secs(1) {
        let hint = "use whole seconds, e.g. `30s`, or `0s` to disable pings";
        let message = format!("{keep_alive:?} is shorter than a second");
        problem(ctx, "keep_alive", message, hint);
        None
    } else if keep_alive > StdDuration::from_secs(u64::from(u16::MAX)) {
        let message = format!("{keep_alive:?} is longer than MQTT allows (65535 s)");
        problem(ctx, "keep_alive", message, "use e.g. `30s`");
        None
    } else {
        Some(keep_alive)
    }
}

fn plan_retry(config: &MqttConfig, ctx: &mut PlanContext<'_>) -> Option<Retry> {
    let (initial, max) = (config.retry.initial_delay.0, config.retry.max_delay.0);
    if initial.is_zero() {
        let message = "a zero reconnect delay would hammer an unreachable broker";
        let hint = "use e.g. `1s` (the default)";
        nested_problem(ctx, "retry", "initial_delay", message, hint);
        return None;
    }
    if max < initial {
        let message = format!("max_delay ({max:?}) is shorter than initial_delay ({initial:?})");
        let hint = "make max_delay at least initial_delay";
        nested_problem(ctx, "retry", "max_delay", message, hint);
        return None;
    }
    Some(Retry::new(initial, max))
}

/// The TLS files, resolved against the pipeline file, read and parsed now: a file that
/// is missing or holds no certificate or key is refused here, at its key.
fn plan_tls(
    config: &MqttConfig,
    endpoint: &Endpoint,
    ctx: &mut PlanContext<'_>,
) -> Option<TlsOptions> {
    if !endpoint.is_tls() {
        let keys: Vec<&str> = config.tls.files().map(|(key, _)| key).collect();
        for key in &keys {
            let message = format!("`tls.{key}` only applies to TLS connections");
            let hint = "use an mqtts:// URL, or remove the key";
            nested_problem(ctx, "tls", key, message, hint);
        }
        return keys.is_empty().then(TlsOptions::default);
    }
    let resolved = config.tls.resolved(|p| ctx.resolve(p));
    match TlsOptions::load(&resolved) {
        Ok(tls) => Some(tls),
        Err(errors) => {
            for error in errors {
                let (key, message) = match &error {
                    MqttError::TlsFile { key, path, source } => {
                        (*key, format!("cannot read {}: {source}", path.display()))
                    }
                    MqttError::TlsPem { key, path, message } => {
                        (*key, format!("{} {message}", path.display()))
                    }
                    MqttError::InvalidConfig { key, message } => (*key, message.clone()),
                    other => ("ca_file", other.to_string()),
                };
                nested_problem(ctx, "tls", key, message, tls_hint(key));
            }
            None
        }
    }
}

fn tls_hint(key: &str) -> &'static str {
    match key {
        "ca_file" => {
            "give the PEM file of the CA that signed the broker's certificate (relative paths \
             start at the pipeline file's folder), or remove `ca_file` to use the system's \
             trusted roots"
        }
        "client_cert" => {
            "give the PEM file with the client's certificate chain and set `client_key` to its \
             private key (relative paths start at the pipeline file's folder)"
        }
        _ => {
            "give the PEM file with the private key of `client_cert` (PKCS#8, PKCS#1 or SEC1; \
             relative paths start at the pipeline file's folder)"
        }
    }
}

#[cfg(test)]
mod tests {
    use smartgrid_runtime::plan::plan;
    use smartgrid_runtime::spec::{Env, parse_str};

    /// Plans a pipeline with one `mqtt` node `broker` (with `settings`, indented as
    /// its keys) read by a decoder; the errors as `smartgrid validate` prints them.
    fn planned(settings: &str, dir: &std::path::Path) -> Result<(), String> {
        let text = format!(
            "nodes:\n  broker:\n    type: mqtt\n{settings}  d: {{ type: decode, input: broker, format: clemap }}\n  out: {{ type: stdout, input: d }}\n"
        );
        let env = Env::Fixed([("PW".to_string(), "hunter2".to_string())].into());
        let spec =
            parse_str(&text, "p.yaml", dir.to_path_buf(), env).map_err(|e| format!("{e:?}"))?;
        plan(&spec, &crate::builtin_registry())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_complete_config_plans() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = "    url: mqtt://broker.local:1883\n    topics: [a/+, b/#]\n    qos: 0\n    username: meter\n    password: ${PW}\n    keep_alive: 1m\n    retry: { initial_delay: 500ms, max_delay: 1m }\n";
        planned(yaml, dir.path()).expect("plans");
    }

    #[test]
    fn every_problem_is_located_at_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = "    url: mqtt://127.0.0.1:1883\n    qos: 2\n    topics: [a/#/b]\n    password: ${PW}\n    channel_capacity: 0\n    keep_alive: 500ms\n    tls: { ca_file: ca.pem }\n    retry: { initial_delay: 10s, max_delay: 5s }\n";
        let errors = planned(yaml, dir.path()).expect_err("refused");
        for expected in [
            "p.yaml:5:5: node `broker`: QoS 2 is not supported",
            "p.yaml:6:5: node `broker`: `a/#/b` is not a valid topic filter",
            "p.yaml:7:5: node `broker`: a password without a username",
            "p.yaml:8:23: node `broker`: `channel_capacity` is 0; it must be from 1 to 1000000",
            "p.yaml:9:5: node `broker`: 500ms is shorter than a second",
            "p.yaml:10:12: node `broker`: `tls.ca_file` only applies to TLS connections",
            "p.yaml:11:34: node `broker`: max_delay (5s) is shorter than initial_delay (10s)",
        ] {
            assert!(errors.contains(expected), "{expected}\nin\n{errors}");
        }
        assert!(!errors.contains("hunter2"), "{errors}");
    }

    #[test]
    fn old_keys_are_refused_naming_the_new_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml = "    url: mqtts://broker.local\n    ca_file: ca.pem\n    reconnect_min: 1s\n";
        let errors = planned(yaml, dir.path()).expect_err("refused");
        assert!(
            errors.contains("`ca_file` is now `tls.ca_file`"),
            "{errors}"
        );
        assert!(
            errors.contains("`reconnect_min` is now `retry.initial_delay`"),
            "{errors}"
        );
    }

    #[test]
    fn tls_files_must_exist_and_hold_pem() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").expect("write");
        let yaml = "    url: mqtts://broker.local\n    tls:\n      ca_file: missing.pem\n      client_cert: junk.pem\n      client_key: junk.pem\n";
        let errors = planned(yaml, dir.path()).expect_err("refused");
        assert!(
            errors.contains("p.yaml:6:7: node `broker`: cannot read ")
                && errors.contains("missing.pem"),
            "{errors}"
        );
        assert!(
            errors.contains("p.yaml:7:7: node `broker`: ")
                && errors.contains("holds no `BEGIN CERTIFICATE` section"),
            "{errors}"
        );
        assert!(
            errors.contains("p.yaml:8:7: node `broker`: ")
                && errors.contains("holds no private key"),
            "{errors}"
        );
    }

    #[test]
    fn a_share_group_must_be_one_topic_level() {
        let dir = tempfile::tempdir().expect("tempdir");
        let yaml =
            "    url: mqtt://127.0.0.1:1883\n    cluster: { subscribe: shared, group: a/b }\n";
        let errors = planned(yaml, dir.path()).expect_err("refused");
        assert!(
            errors.contains("p.yaml:5:")
                && errors.contains("`a/b` cannot be a shared subscription's group"),
            "{errors}"
        );
        let yaml = "    url: mqtt://127.0.0.1:1883\n    cluster: { subscribe: topics }\n";
        planned(yaml, dir.path()).expect("plans");
        let yaml = "    url: mqtt://127.0.0.1:1883\n    cluster: { subscribe: everyone }\n";
        assert!(planned(yaml, dir.path()).is_err());
    }

    #[test]
    fn embedded_brokers_take_no_login() {
        let dir = tempfile::tempdir().expect("tempdir");
        let errors =
            planned("    url: embedded\n    username: u\n", dir.path()).expect_err("refused");
        assert!(
            errors.contains("the embedded broker does not check logins"),
            "{errors}"
        );
        let errors = planned("    url: htp://x\n", dir.path()).expect_err("refused");
        assert!(
            errors.contains("p.yaml:4:5: node `broker`: invalid MQTT broker URL"),
            "{errors}"
        );
    }
}
