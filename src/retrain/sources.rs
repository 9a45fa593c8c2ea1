//! Where triplets come from: JSON-lines files, the blobs IoT Hub message routing
//! writes, an MQTT topic. Each source's `poll` adds what is new since its last poll to
//! the store; a one-shot run polls each once.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use smartgrid_operators::io::mqtt::{
    ClientIdentity, ConnectOptions, Endpoint, RecvTimeoutError, SubscribeOptions, Subscriber,
    spawn_subscriber,
};

use super::config::{BlobSource, MqttSource};
use super::store::Store;
use super::triplet::{BadTriplet, Fields, parse_text, parse_value};
use crate::registry::blob::{Auth, Container};

/// One source of triplets.
pub trait Source {
    /// Add the triplets that arrived since the last poll. `first` is true on a one-shot
    /// run's only poll (an MQTT source then listens for its `listen` time).
    fn poll(&mut self, store: &mut Store, fields: &Fields, first: bool) -> anyhow::Result<()>;
}

/// JSON-lines files, each read on from where the last poll stopped (complete lines
/// only, so a line being written is read whole next time).
pub struct Files {
    files: Vec<(PathBuf, u64, u64)>,
}

impl Files {
    pub fn new(paths: &[PathBuf]) -> Self {
        Files {
            files: paths.iter().map(|p| (p.clone(), 0, 0)).collect(),
        }
    }
}

impl Source for Files {
    fn poll(&mut self, store: &mut Store, fields: &Fields, _first: bool) -> anyhow::Result<()> {
        for (path, offset, line_no) in &mut self.files {
            let reading = || format!("reading {}", path.display());
            let mut file = std::fs::File::open(&*path).with_context(reading)?;
            let size = file.metadata().with_context(reading)?.len();
            if size < *offset {
                // replaced or truncated (rotated): read it from the start
                *offset = 0;
                *line_no = 0;
            }
            // only what is new since the last poll: an outbox file grows for ever
            let mut new = Vec::new();
            file.seek(SeekFrom::Start(*offset))
                .and_then(|_| file.read_to_end(&mut new))
                .with_context(reading)?;
            let complete = new.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in new[..complete].split_inclusive(|&b| b == b'\n') {
                *line_no += 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let n = *line_no;
                for parsed in parse_text(line, fields) {
                    store.add(parsed, || format!("{} line {n}", path.display()));
                }
            }
            *offset += complete as u64;
        }
        Ok(())
    }
}

/// The blobs of IoT Hub message routing (JSON encoding): each blob is JSON lines of
/// `{"EnqueuedTimeUtc", "Properties", "SystemProperties", "Body"}`, where `Body` is
/// the message itself when it was sent as `application/json` in UTF-8, and its base64
/// otherwise. Blobs already read are skipped (routing never changes a finished blob).
pub struct Blobs {
    container: Container,
    prefix: String,
    seen: HashSet<String>,
}

impl Blobs {
    pub fn new(config: &BlobSource) -> anyhow::Result<Self> {
        let auth = if let Some(var) = &config.sas_env {
            Auth::Sas(std::env::var(var).with_context(|| {
                format!("sources.blob.sas_env: the environment variable {var} is not set")
            })?)
        } else {
            let var = config.key_env.as_deref().unwrap_or("AZURE_STORAGE_KEY");
            let key = std::env::var(var).with_context(|| {
                format!("sources.blob: the environment variable {var} (the account key) is not set")
            })?;
            let account = config
                .account
                .clone()
                .context("sources.blob.account: the account name is needed with a key")?;
            let key = crate::registry::blob::decode_key(&key).context("sources.blob")?;
            Auth::SharedKey { account, key }
        };
        Ok(Blobs {
            container: Container::new(&config.account_url, &config.container, auth)?,
            prefix: config.prefix.clone(),
            seen: HashSet::new(),
        })
    }
}

impl Source for Blobs {
    fn poll(&mut self, store: &mut Store, fields: &Fields, _first: bool) -> anyhow::Result<()> {
        let names = self.container.list(&self.prefix)?;
        for name in names {
            if self.seen.contains(&name) {
                continue;
            }
            let bytes = self.container.get_blob(&name)?;
            for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let place = || format!("blob {name} line {}", i + 1);
                for parsed in routed_message(line, fields) {
                    store.add(parsed, place);
                }
            }
            self.seen.insert(name);
        }
        Ok(())
    }
}

/// The triplets of one line of a routing blob.
pub fn routed_message(line: &[u8], fields: &Fields) -> Vec<Result<super::Triplet, BadTriplet>> {
    let envelope: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return vec![Err(BadTriplet::Json(e.to_string()))],
    };
    match envelope.get("Body") {
        // a JSON message: routing embeds it as is
        Some(Value::Object(_) | Value::Array(_)) => {
            parse_value(envelope.get("Body").unwrap_or(&Value::Null), fields)
        }
        // any other message: base64 of its bytes
        Some(Value::String(encoded)) => match BASE64.decode(encoded) {
            Ok(bytes) => parse_text(&bytes, fields),
            Err(_) => vec![Err(BadTriplet::Json(
                "`Body` is a string but not base64".into(),
            ))],
        },
        Some(_) => vec![Err(BadTriplet::NotAnObject)],
        None => vec![Err(BadTriplet::Missing("Body".into()))],
    }
}

/// An MQTT topic, subscribed with a persistent session for the life of the source.
pub struct Mqtt {
    subscriber: Subscriber,
    listen: Duration,
    topic: String,
    received: u64,
    _shutdown: Arc<AtomicBool>,
}

impl Mqtt {
    pub fn new(config: &MqttSource) -> anyhow::Result<Self> {
        let endpoint = Endpoint::parse(&config.url).context("sources.mqtt.url")?;
        let identity = ClientIdentity::new(
            config
                .client_id
                .clone()
                .unwrap_or_else(|| "smartgrid-retrain".into()),
        );
        let connect = ConnectOptions::new(endpoint, identity);
        let shutdown = Arc::new(AtomicBool::new(false));
        let subscriber = spawn_subscriber(
            &connect,
            &SubscribeOptions::new([config.topic.clone()]),
            Arc::clone(&shutdown),
        )
        .context("sources.mqtt")?;
        // listening starts once the broker has the subscription, so that a one-shot
        // run's `listen` time is all spent receiving
        subscriber
            .wait_subscribed(Duration::from_secs(30))
            .with_context(|| format!("sources.mqtt: subscribing to {}", config.topic))?;
        eprintln!("subscribed to {}", config.topic);
        Ok(Mqtt {
            subscriber,
            listen: config.listen.map_or(Duration::from_secs(5), Into::into),
            topic: config.topic.clone(),
            received: 0,
            _shutdown: shutdown,
        })
    }
}

impl Source for Mqtt {
    fn poll(&mut self, store: &mut Store, fields: &Fields, first: bool) -> anyhow::Result<()> {
        let deadline = first.then(|| Instant::now() + self.listen);
        loop {
            let message = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match self.subscriber.recv_timeout(left) {
                        Ok(message) => Some(message),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => {
                            anyhow::bail!("sources.mqtt: the subscriber stopped")
                        }
                    }
                }
                None => self.subscriber.try_recv().ok(),
            };
            let Some(message) = message else {
                if deadline.is_none() {
                    break;
                }
                continue;
            };
            self.received += 1;
            let n = self.received;
            let topic = &self.topic;
            for parsed in parse_text(&message.payload, fields) {
                store.add(parsed, || format!("MQTT message {n} on {topic}"));
            }
        }
        Ok(())
    }
}

/// Every configured source.
pub fn open(config: &super::config::Sources) -> anyhow::Result<Vec<Box<dyn Source>>> {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if !config.files.is_empty() {
        sources.push(Box::new(Files::new(&config.files)));
    }
    if let Some(blob) = &config.blob {
        sources.push(Box::new(Blobs::new(blob)?));
    }
    if let Some(mqtt) = &config.mqtt {
        sources.push(Box::new(Mqtt::new(mqtt)?));
    }
    Ok(sources)
}

/// Counts of bad records, for the summary line.
pub fn bad_summary(bad: &BTreeMap<String, u64>) -> String {
    bad.iter()
        .map(|(reason, n)| format!("{n} × {reason}"))
        .collect::<Vec<_>>()
        .join(", ")
}
