//! `smartgrid retrain`'s configuration (YAML, `--config FILE`, and/or flags that
//! override it; see docs/learning-loop-training.md). Every key has a default except the
//! sources and the registry.

use std::path::PathBuf;

use serde::Deserialize;
use smartgrid_runtime::spec::Duration;

/// The seed model's features: the three phase powers of the window and of the five
/// before it (the default `predict` node's, and models/default/model.txt's).
pub fn default_features() -> Vec<String> {
    let mut names = Vec::new();
    for lag in 0..=5 {
        for phase in ["p_l1", "p_l2", "p_l3"] {
            names.push(if lag == 0 {
                phase.to_owned()
            } else {
                format!("{phase}-{lag}")
            });
        }
    }
    names
}

fn phases() -> Vec<String> {
    vec!["p_l1".into(), "p_l2".into(), "p_l3".into()]
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrainConfig {
    /// Where triplets come from; at least one.
    #[serde(default)]
    pub sources: Sources,
    /// Triplets kept for training: the newest this many (default 200 000).
    #[serde(default = "default_store")]
    pub store: usize,
    /// The `sample_good` of the `compare_with_lag` node that made the triplets: a good
    /// prediction (`flagged: 0`) stands for 1/sample_good of them, and is weighted so.
    /// Between 0 (exclusive) and 1. Default 0.01, the default pipeline's.
    #[serde(default = "default_sample_good")]
    pub sample_good: f64,
    /// The model's features, in order (default: the seed's 18).
    #[serde(default = "default_features")]
    pub features: Vec<String>,
    /// Fields whose sum the model predicts the change from (as the `predict` node's
    /// `relative_to`); `[]` for a model of the level. Default `[p_l1, p_l2, p_l3]`.
    #[serde(default = "phases")]
    pub relative_to: Vec<String>,
    /// Fields summed to the current window's total, the persistence forecast
    /// ("next window = this one"). Default `[p_l1, p_l2, p_l3]`.
    #[serde(default = "phases")]
    pub persistence: Vec<String>,
    /// The most recent share of the store held out for evaluation (default 0.2).
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// A candidate is published only if its held-out MAE is below the active model's
    /// by this share (default 0.02: 2 % better). Without an active model it must beat
    /// persistence by the same margin.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// The fewest triplets worth training on (default 100).
    #[serde(default = "default_min_triplets")]
    pub min_triplets: usize,
    /// LightGBM's settings.
    #[serde(default)]
    pub training: Training,
    /// The versioned model registry (a directory). Required (here or `--registry`).
    #[serde(default)]
    pub registry: Option<PathBuf>,
    /// The ed25519 private key that signs published models (`smartgrid keys generate`);
    /// needed to publish (here or `--signing-key`), not for `--dry-run`.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Compare with this model file instead of the registry's active version (e.g. the
    /// model the devices run before the registry has one).
    #[serde(default)]
    pub active_model: Option<ActiveModel>,
    /// Announce a published model (retained MQTT message).
    #[serde(default)]
    pub announce: Option<Announce>,
    /// When the service (`--service`) trains again.
    #[serde(default)]
    pub trigger: Trigger,
}

fn default_store() -> usize {
    200_000
}
fn default_sample_good() -> f64 {
    0.01
}
fn default_holdout() -> f64 {
    0.2
}
fn default_margin() -> f64 {
    0.02
}
fn default_min_triplets() -> usize {
    100
}

/// Triplet sources.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// JSON-lines files (a triplet, or an array of them, per line), e.g. the `file`
    /// sink's `data/outbox/triplets.jsonl`. A file that is appended to is read on from
    /// where the last poll stopped.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Blobs written by IoT Hub message routing (JSON encoding).
    #[serde(default)]
    pub blob: Option<BlobSource>,
    /// An MQTT topic carrying triplets (e.g. a `mqtt_publish` sink of the drift node).
    #[serde(default)]
    pub mqtt: Option<MqttSource>,
}

/// A Blob Storage container in the routing layout `{hub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobSource {
    /// The account's blob endpoint: `https://ACCOUNT.blob.core.windows.net`, or
    /// Azurite's `http://127.0.0.1:10000/devstoreaccount1`.
    pub account_url: String,
    /// The container the routing endpoint writes to.
    pub container: String,
    /// Only blobs under this prefix (e.g. the hub's name and `/`).
    #[serde(default)]
    pub prefix: String,
    /// The storage account's name (for SharedKey authorization).
    #[serde(default)]
    pub account: Option<String>,
    /// The environment variable holding the account key (SharedKey). Default
    /// `AZURE_STORAGE_KEY`.
    #[serde(default)]
    pub key_env: Option<String>,
    /// The environment variable holding a SAS token, used instead of a key.
    #[serde(default)]
    pub sas_env: Option<String>,
}

/// An MQTT topic of triplets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSource {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// The topic filter.
    pub topic: String,
    /// The client id (default `smartgrid-retrain`); the session is persistent, so
    /// triplets sent while the trainer is away wait at the broker.
    #[serde(default)]
    pub client_id: Option<String>,
    /// One-shot runs listen this long (default 5s) before training.
    #[serde(default)]
    pub listen: Option<Duration>,
}

/// LightGBM settings (as `smartgrid model train`'s flags).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    #[serde(default = "default_trees")]
    pub trees: usize,
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    #[serde(default = "default_num_leaves")]
    pub num_leaves: usize,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// More LightGBM parameters, `key=value` (default `objective=regression_l1`, as
    /// the default model: the MAE is what is compared).
    #[serde(default = "default_params")]
    pub params: Vec<String>,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            trees: default_trees(),
            learning_rate: default_learning_rate(),
            num_leaves: default_num_leaves(),
            seed: default_seed(),
            params: default_params(),
        }
    }
}

fn default_trees() -> usize {
    200
}
fn default_learning_rate() -> f64 {
    0.05
}
fn default_num_leaves() -> usize {
    31
}
fn default_seed() -> u64 {
    42
}
fn default_params() -> Vec<String> {
    vec!["objective=regression_l1".into()]
}

/// A model file to compare with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveModel {
    pub path: PathBuf,
    /// Its `relative_to` (default: the same as the candidate's).
    #[serde(default)]
    pub relative_to: Option<Vec<String>>,
}

/// Where a published model is announced: a retained MQTT message, device twins, or
/// both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Announce {
    /// The broker of the retained message: `mqtt://host:port`.
    #[serde(default)]
    pub broker: Option<String>,
    /// The topic of the retained announcement (default `smartgrid/model`).
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Where devices fetch models: the `registry serve` address
    /// (`http://host:8900`); the announcement's `url` is
    /// `{base_url}/models/{version}/model.txt`.
    pub base_url: String,
    /// The environment variable holding a query (a read-only SAS token) appended to
    /// each model URL, when `base_url` is a blob container `registry push` fills.
    #[serde(default)]
    pub url_query_env: Option<String>,
    /// Also set the desired property `model` of these device twins.
    #[serde(default)]
    pub twin: Option<TwinConfig>,
}

/// IoT Hub device twins whose desired property `model` is set to the announcement.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwinConfig {
    /// The environment variable holding the hub's service connection string
    /// (`HostName=…;SharedAccessKeyName=service;SharedAccessKey=…`). Default
    /// `IOTHUB_SERVICE_CONNECTION_STRING`.
    #[serde(default)]
    pub connection_string_env: Option<String>,
    /// The device ids.
    pub devices: Vec<String>,
    /// The service endpoint (default `https://{HostName}`).
    #[serde(default)]
    pub endpoint: Option<String>,
}

fn default_topic() -> String {
    "smartgrid/model".into()
}

/// When the service trains.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// After this many new triplets (default 1000).
    #[serde(default = "default_new_triplets")]
    pub new_triplets: u64,
    /// Or this long after the last training, if there is anything new (default 1h).
    #[serde(default)]
    pub every: Option<Duration>,
    /// How often sources are polled (default 10s).
    #[serde(default)]
    pub poll: Option<Duration>,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger {
            new_triplets: default_new_triplets(),
            every: None,
            poll: None,
        }
    }
}

fn default_new_triplets() -> u64 {
    1000
}

impl RetrainConfig {
    /// Checks that serde cannot express; each message names the key.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.registry.is_some(),
            "registry: no registry directory (the file's `registry:` or --registry)"
        );
        anyhow::ensure!(
            self.sample_good > 0.0 && self.sample_good <= 1.0,
            "sample_good: {} is not a share in (0, 1]",
            self.sample_good
        );
        anyhow::ensure!(
            self.holdout > 0.0 && self.holdout < 1.0,
            "holdout: {} is not a share in (0, 1)",
            self.holdout
        );
        anyhow::ensure!(
            (0.0..1.0).contains(&self.margin),
            "margin: {} is not a share in [0, 1)",
            self.margin
        );
        anyhow::ensure!(!self.features.is_empty(), "features: none given");
        anyhow::ensure!(
            !self.persistence.is_empty(),
            "persistence: name the fields of the current window's total"
        );
        for name in &self.relative_to {
            anyhow::ensure!(
                self.features.contains(name),
                "relative_to: {name:?} is not one of the features"
            );
        }
        if let Some(announce) = &self.announce {
            anyhow::ensure!(
                announce.broker.is_some() || announce.twin.is_some(),
                "announce: give a broker, a twin, or both"
            );
        }
        anyhow::ensure!(
            !self.sources.files.is_empty()
                || self.sources.blob.is_some()
                || self.sources.mqtt.is_some(),
            "sources: give at least one of files, blob, mqtt"
        );
        Ok(())
    }
}
