//! Dead letters of the records an operator refuses in the middle of a pipeline (a
//! `window_mean`'s readings that came too late): the `dead_letter:` key, shaped as
//! decode's (`file` and/or `topic` with its broker `url`), what it claims, what it opens
//! at start and how lines reach the file and the topic.
//!
//! ```yaml
//! dead_letter:
//!   file: data/late.jsonl             # relative to `data_dir`
//!   topic: smartgrid/dead-letters     # and/or publish them (QoS 1)
//!   url: mqtt://127.0.0.1:1883        # the broker for `topic`; default `embedded`
//! ```
//!
//! There is no default destination: without the key letters are only counted and logged.
//! In a cluster run every process but the first writes `<stem>.p<index>.<ext>` beside
//! the file, so processes sharing a folder never interleave their lines. Workers write a
//! batch of letters at a time (one lock, one flush per batch), never one per record, and
//! a full publish queue drops (counted) rather than block the dataflow.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use smartgrid_runtime::metrics::Counter;
use smartgrid_runtime::operator::open_output;
use smartgrid_runtime::{Claim, Location, PlanContext, Resource, StartContext, StartError};

use crate::io::mqtt::{Publisher, PublisherOptions, Qos};

/// How long finishing waits for the broker to acknowledge the letters it was sent.
const DRAIN: Duration = Duration::from_secs(5);

/// Where a node's dead letters go (the `dead_letter:` key of `decode` and of
/// `window_mean`). A letter holds the time, the node, the reason, the error and what was
/// refused (a payload in hex, or the reading).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LetterConfig {
    /// A JSON-lines file (relative to `data_dir`), one letter per line.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// An MQTT topic to publish the same JSON to (QoS 1).
    #[serde(default)]
    pub topic: Option<String>,
    /// The broker for `topic`: `mqtt://…`, `mqtts://…` or `embedded` (default).
    #[serde(default)]
    pub url: Option<String>,
}

/// A node's planned dead-letter destinations.
#[derive(Debug)]
pub struct LetterTargets {
    file: Option<PathBuf>,
    topic: Option<(String, String)>,
    /// One client id per node, so two nodes (or processes, see `start`) do not knock
    /// each other off the broker.
    client_id: String,
    at: Location,
}

impl LetterTargets {
    /// The destinations `config` names for the node `ctx` plans, the file resolved
    /// against the pipeline's folder; `None` without the key, or (reported) with a key
    /// that names no destination.
    pub fn plan(config: Option<LetterConfig>, ctx: &mut PlanContext<'_>) -> Option<Self> {
        let config = config?;
        if config.file.is_none() && config.topic.is_none() {
            ctx.error_at_key("dead_letter", "dead_letter names no destination")
                .with_hint("add `file:` and/or `topic:`");
            return None;
        }
        let url = config.url.unwrap_or_else(|| "embedded".to_string());
        Some(LetterTargets {
            file: config.file.map(|f| ctx.resolve_data(&f)),
            topic: config.topic.map(|t| (t, url)),
            client_id: format!("smartgrid-{}-{}-dead-letters", ctx.pipeline, ctx.node.name),
            at: ctx.node.key_at("dead_letter"),
        })
    }

    /// The file written and the client id used on the broker.
    pub fn claims(&self) -> Vec<Claim> {
        let file = self
            .file
            .iter()
            .map(|path| Resource::FileWritten(path.clone()));
        let client = self.topic.iter().map(|(_, url)| Resource::MqttClientId {
            broker: url.clone(),
            client_id: self.client_id.clone(),
        });
        file.chain(client)
            .map(|resource| Claim {
                resource,
                at: self.at,
            })
            .collect()
    }

    /// Open this process's file and connect the publisher. Letters the publisher cannot
    /// queue count as `<node>.dead_letters.dropped`.
    pub fn start(&self, ctx: &StartContext<'_>) -> Result<StartedLetters, StartError> {
        let mut letters = Letters::default();
        if let Some(path) = &self.file {
            let path = per_process(path, ctx.process_index);
            letters.file = Some(Arc::new(Mutex::new(open_output(&path, false)?)));
        }
        let mut owned = None;
        if let Some((topic, url)) = &self.topic {
            let publisher = dead_letter_publisher(url, &self.client_id, ctx)?;
            let publisher = Arc::new(Mutex::new(Some(publisher)));
            owned = Some(Arc::clone(&publisher));
            letters.topic = Some(Arc::new(Topic {
                topic: topic.clone(),
                publisher,
                dropped: ctx.counter("dead_letters.dropped"),
            }));
        }
        Ok(StartedLetters {
            letters,
            publisher: owned,
        })
    }
}

/// The dead-letter file of process `index`: `path` itself for the first, else
/// `<stem>.p<index>.<ext>` beside it.
/// The publisher of a dead-letter topic for this process: one client id per process
/// (`<id>-p<index>` in a cluster), and never the embedded broker outside the first
/// process (each would start a broker nobody reads).
pub fn dead_letter_publisher(
    url: &str,
    client_id: &str,
    ctx: &StartContext<'_>,
) -> Result<Publisher, StartError> {
    if url == "embedded" && ctx.process_index != 0 {
        return Err(StartError::other(
            "in a cluster the embedded broker runs in the first process only: \
             give the dead-letter topic a broker `url`",
        ));
    }
    let client_id = if ctx.process_count > 1 {
        format!("{client_id}-p{}", ctx.process_index)
    } else {
        client_id.to_string()
    };
    Publisher::connect(url, client_id, PublisherOptions::default())
        .map_err(|e| StartError::other(format!("dead-letter topic: {e}")))
}

/// `path` for process `index`: `<stem>.p<index>.<ext>` after the first process, so the
/// processes of a cluster never write one file.
pub fn per_process(path: &Path, index: usize) -> PathBuf {
    if index == 0 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.p{index}.{}", ext.to_string_lossy()),
        None => format!("{stem}.p{index}"),
    };
    path.with_file_name(name)
}

/// What [`LetterTargets::start`] opened: the letters for the workers, and the
/// publisher to drain when the run ends.
pub struct StartedLetters {
    /// Cloned into every worker's operator.
    pub letters: Letters,
    publisher: Option<Arc<Mutex<Option<Publisher>>>>,
}

impl StartedLetters {
    /// Wait (a few seconds at most) for the broker to acknowledge every letter.
    pub fn finish(self) -> Result<(), StartError> {
        let publisher = self
            .publisher
            .and_then(|p| p.lock().unwrap_or_else(PoisonError::into_inner).take());
        match publisher {
            Some(publisher) => publisher
                .flush_and_close(DRAIN)
                .map_err(|e| StartError::other(format!("dead letters not all delivered: {e}"))),
            None => Ok(()),
        }
    }
}

struct Topic {
    topic: String,
    publisher: Arc<Mutex<Option<Publisher>>>,
    dropped: Counter,
}

/// A node's open destinations, shared by its workers.
#[derive(Clone, Default)]
pub struct Letters {
    file: Option<Arc<Mutex<std::io::BufWriter<std::fs::File>>>>,
    topic: Option<Arc<Topic>>,
}

impl Letters {
    /// Letters to an open file only.
    pub fn from_file(file: std::io::BufWriter<std::fs::File>) -> Self {
        Letters {
            file: Some(Arc::new(Mutex::new(file))),
            topic: None,
        }
    }

    /// Whether letters go anywhere (if not, there is no need to build them).
    pub fn is_some(&self) -> bool {
        self.file.is_some() || self.topic.is_some()
    }

    /// Write `letters` (one JSON object each): the file gets them under one lock and is
    /// flushed once, so they survive a crash that follows; each is published apart.
    /// Failures are logged under `node`; nothing here stops the pipeline.
    pub fn write(&self, node: &str, letters: &[serde_json::Value]) {
        if letters.is_empty() {
            return;
        }
        if let Some(topic) = &self.topic {
            let publisher = topic
                .publisher
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for letter in letters {
                let sent = publisher
                    .as_ref()
                    .map(|p| p.try_publish(&topic.topic, letter.to_string(), Qos::AtLeastOnce));
                if !matches!(sent, Some(Ok(true))) {
                    topic.dropped.inc();
                }
            }
        }
        if let Some(file) = &self.file {
            let mut text = String::new();
            for letter in letters {
                text.push_str(&letter.to_string());
                text.push('\n');
            }
            let mut f = file.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.flush()) {
                tracing::error!(node, "cannot write dead letters: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_after_the_first_write_beside_the_file() {
        let path = Path::new("data/late.jsonl");
        assert_eq!(per_process(path, 0), path);
        assert_eq!(per_process(path, 2), Path::new("data/late.p2.jsonl"));
        assert_eq!(per_process(Path::new("late"), 1), Path::new("late.p1"));
    }

    #[test]
    fn a_batch_is_appended_one_letter_per_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("late.jsonl");
        let letters = Letters::from_file(open_output(&path, false).expect("open"));
        assert!(letters.is_some());
        letters.write(
            "n",
            &[serde_json::json!({"a": 1}), serde_json::json!({"b": 2})],
        );
        letters.write("n", &[serde_json::json!({"c": 3})]);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        assert!(!Letters::default().is_some());
    }
}
