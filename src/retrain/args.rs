//! `smartgrid retrain`'s command line: every flag, and how it becomes [`RetrainArgs`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::{Overrides, RetrainArgs};

/// Retrain the model from triplets (feature `train`): read them from files, blobs or
/// MQTT, train a candidate, publish it to the registry only if it beats the active
/// model on the most recent data (docs/learning-loop-training.md).
#[derive(Debug, clap::Args)]
pub struct RetrainCli {
    /// The configuration file (YAML); the flags below override it, and can replace
    /// it (then --registry and a source such as --file are needed).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A JSON-lines file of triplets (repeatable; added to `sources.files`).
    #[arg(long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The registry directory (`registry:`).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// The private key that signs published models (`signing_key:`).
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// The devices' `sample_good` (`sample_good:`).
    #[arg(long)]
    sample_good: Option<f64>,
    /// How much better than the active model a candidate must be (`margin:`).
    #[arg(long)]
    margin: Option<f64>,
    /// The most recent share held out (`holdout:`).
    #[arg(long)]
    holdout: Option<f64>,
    /// Triplets kept (`store:`).
    #[arg(long)]
    store: Option<usize>,
    /// Announce published models, retained, on this broker (`announce.broker`).
    #[arg(long)]
    announce_broker: Option<String>,
    /// The announcement's topic (`announce.topic`).
    #[arg(long)]
    announce_topic: Option<String>,
    /// Where devices fetch models (`announce.base_url`).
    #[arg(long)]
    announce_base_url: Option<String>,
    /// Service: train after this many new triplets (`trigger.new_triplets`).
    #[arg(long)]
    new_triplets: Option<u64>,
    /// Service: train this often if anything is new (`trigger.every`, e.g. `1h`).
    #[arg(long, value_name = "DURATION")]
    every: Option<String>,
    /// Keep running: poll the sources and train again on the configured trigger.
    #[arg(long)]
    service: bool,
    /// Also write the training rows (CSV: sensor, time, features, actual, weight,
    /// held out) to this file.
    #[arg(long, value_name = "FILE")]
    rows_out: Option<PathBuf>,
    /// Train and evaluate, but publish nothing.
    #[arg(long)]
    dry_run: bool,
    /// Boosting rounds (overrides `training.trees`).
    #[arg(long)]
    trees: Option<usize>,
}

impl RetrainCli {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let every = self
            .every
            .as_deref()
            .map(crate::commands::parse_duration)
            .transpose()
            .context("--every")?;
        super::retrain(RetrainArgs {
            config: self.config,
            overrides: Overrides {
                files: self.files,
                registry: self.registry,
                signing_key: self.signing_key,
                sample_good: self.sample_good,
                margin: self.margin,
                holdout: self.holdout,
                store: self.store,
                trees: self.trees,
                announce_broker: self.announce_broker,
                announce_topic: self.announce_topic,
                announce_base_url: self.announce_base_url,
                new_triplets: self.new_triplets,
                every,
            },
            service: self.service,
            rows_out: self.rows_out,
            dry_run: self.dry_run,
        })
    }
}
