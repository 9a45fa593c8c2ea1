//! `smartgrid retrain` (feature `train`): the training side of the learning loop.
//!
//! Triplets (from JSON-lines files, IoT Hub routing blobs, an MQTT topic) fill a
//! bounded store; a cycle turns the store into weighted rows, trains a LightGBM
//! candidate on all but the most recent slice, measures it, the active model and
//! persistence on that slice, and publishes the candidate — signed, into the registry,
//! announced — only when it beats the active model by the configured margin. One-shot
//! (one poll of every source, one cycle) or as a service (`--service`: poll, and run a
//! cycle after N new triplets or a period). See docs/learning-loop-training.md.

mod args;
mod config;
mod dataset;
mod sources;
mod store;
mod triplet;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use smartgrid_models::Model;
use smartgrid_models::signing::keys;
use smartgrid_models::signing::manifest::SignOptions;
use smartgrid_runtime::spec::{self, Env};

use crate::registry::{Registry, announce};
pub use args::RetrainCli;
use config::RetrainConfig;
use dataset::Dataset;
use store::Store;
use triplet::Fields;
pub use triplet::Triplet;

/// Settings given as flags; each replaces the file's (paths relative to the current
/// directory).
#[derive(Debug, Default)]
pub struct Overrides {
    /// Added to `sources.files`.
    pub files: Vec<PathBuf>,
    pub registry: Option<PathBuf>,
    pub signing_key: Option<PathBuf>,
    pub sample_good: Option<f64>,
    pub margin: Option<f64>,
    pub holdout: Option<f64>,
    pub store: Option<usize>,
    pub trees: Option<usize>,
    pub announce_broker: Option<String>,
    pub announce_topic: Option<String>,
    pub announce_base_url: Option<String>,
    pub new_triplets: Option<u64>,
    pub every: Option<std::time::Duration>,
}

/// What `smartgrid retrain` was given on the command line.
pub struct RetrainArgs {
    /// The YAML file, if any (flags alone can configure a run).
    pub config: Option<PathBuf>,
    pub overrides: Overrides,
    /// Keep running: poll the sources and train on the trigger.
    pub service: bool,
    /// Write the training rows (CSV) here before training.
    pub rows_out: Option<PathBuf>,
    /// Train and evaluate, publish nothing.
    pub dry_run: bool,
}

/// `smartgrid retrain --config FILE`
pub fn retrain(args: RetrainArgs) -> anyhow::Result<ExitCode> {
    let config = load(args.config.as_deref(), &args.overrides)?;
    let Some(registry_dir) = &config.registry else {
        anyhow::bail!("no registry directory");
    };
    let fields = Fields {
        features: config.features.clone(),
        current: config.persistence.clone(),
    };
    let registry = Registry::open(registry_dir)?;
    let mut sources = sources::open(&config.sources)?;
    let mut store = Store::new(config.store);
    if !args.service {
        for source in &mut sources {
            source.poll(&mut store, &fields, true)?;
        }
        store.take_new();
        let report = cycle(&store, &config, &registry, &args)?;
        println!("{report}");
        return Ok(ExitCode::SUCCESS);
    }
    let poll = config
        .trigger
        .poll
        .map_or(Duration::from_secs(10), Into::into);
    let every: Option<Duration> = config.trigger.every.map(Into::into);
    let mut last = Instant::now();
    let mut pending = 0u64;
    // SIGINT/SIGTERM end the service between steps: a training cycle under way is
    // finished and published first (a second signal exits at once).
    let stop = smartgrid_runtime::shutdown::Shutdown::new();
    stop.on_signals()
        .context("cannot watch for SIGINT/SIGTERM")?;
    eprintln!(
        "retrain service: polling every {poll:?}; training after {} new triplets{}",
        config.trigger.new_triplets,
        every.map_or(String::new(), |e| format!(" or every {e:?}"))
    );
    loop {
        for source in &mut sources {
            // a source that fails now may work on the next poll (a broker restarting)
            if let Err(e) = source.poll(&mut store, &fields, false) {
                eprintln!("warning: {e:#}");
            }
        }
        pending += store.take_new();
        let due = pending >= config.trigger.new_triplets
            || (pending > 0 && every.is_some_and(|e| last.elapsed() >= e));
        if due {
            match cycle(&store, &config, &registry, &args) {
                Ok(report) => println!("{report}"),
                Err(e) => eprintln!("error: training cycle: {e:#}"),
            }
            pending = 0;
            last = Instant::now();
        }
        let next = Instant::now() + poll;
        while Instant::now() < next {
            if stop.is_triggered() {
                eprintln!("retrain service: stopped");
                return Ok(ExitCode::SUCCESS);
            }
            std::thread::sleep(Duration::from_millis(50).min(poll));
        }
    }
}

/// Read the YAML file (relative paths in it are relative to the file), then apply
/// the flags.
fn load(path: Option<&Path>, flags: &Overrides) -> anyhow::Result<RetrainConfig> {
    let (text, name) = match path {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            path.display().to_string(),
        ),
        None => ("{}".to_owned(), "the command line".to_owned()),
    };
    let path = path.unwrap_or(Path::new(""));
    let mut config: RetrainConfig =
        spec::parse_document(&text, &name, &Env::Process).map_err(|diagnostics| {
            anyhow::anyhow!(
                "{}",
                diagnostics
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    };
    config.sources.files.iter_mut().for_each(resolve);
    config.registry.iter_mut().for_each(resolve);
    config.signing_key.iter_mut().for_each(resolve);
    if let Some(active) = &mut config.active_model {
        resolve(&mut active.path);
    }
    config.sources.files.extend(flags.files.iter().cloned());
    let set = |target: &mut f64, value: Option<f64>| {
        if let Some(v) = value {
            *target = v;
        }
    };
    set(&mut config.sample_good, flags.sample_good);
    set(&mut config.margin, flags.margin);
    set(&mut config.holdout, flags.holdout);
    if let Some(v) = &flags.registry {
        config.registry = Some(v.clone());
    }
    if let Some(v) = &flags.signing_key {
        config.signing_key = Some(v.clone());
    }
    if let Some(v) = flags.store {
        config.store = v;
    }
    if let Some(v) = flags.trees {
        config.training.trees = v;
    }
    if let Some(v) = flags.new_triplets {
        config.trigger.new_triplets = v;
    }
    if let Some(v) = flags.every {
        config.trigger.every = Some(v.into());
    }
    if flags.announce_broker.is_some() || flags.announce_base_url.is_some() {
        let base_url = flags
            .announce_base_url
            .clone()
            .or_else(|| config.announce.as_ref().map(|a| a.base_url.clone()))
            .context("--announce-broker needs --announce-base-url (where devices fetch models)")?;
        let announce = config.announce.get_or_insert_with(|| config::Announce {
            broker: None,
            topic: "smartgrid/model".into(),
            base_url: base_url.clone(),
            url_query_env: None,
            twin: None,
        });
        announce.base_url = base_url;
        if let Some(broker) = &flags.announce_broker {
            announce.broker = Some(broker.clone());
        }
    }
    if let (Some(topic), Some(announce)) = (&flags.announce_topic, &mut config.announce) {
        announce.topic = topic.clone();
    }
    config.check().with_context(|| format!("in {name}"))?;
    Ok(config)
}

/// One training cycle; returns the one-line JSON report.
fn cycle(
    store: &Store,
    config: &RetrainConfig,
    registry: &Registry,
    args: &RetrainArgs,
) -> anyhow::Result<serde_json::Value> {
    if store.bad_total() > 0 {
        eprintln!(
            "skipped {} bad triplet(s): {}",
            store.bad_total(),
            sources::bad_summary(&store.bad)
        );
    }
    let data = Dataset::new(store, config);
    if let Some(path) = &args.rows_out {
        data.write_csv(path)?;
    }
    let mut report = json!({
        "triplets": data.actual.len(),
        "bad_triplets": store.bad_total(),
        "training_rows": data.split,
        "held_out_rows": data.actual.len() - data.split,
        "published": null,
    });
    if data.actual.len() < config.min_triplets || data.split == 0 {
        report["reason"] = json!(format!(
            "too few triplets: {} (min_triplets {})",
            data.actual.len(),
            config.min_triplets
        ));
        return Ok(report);
    }

    let base = data.positions(&config.relative_to, "relative_to")?;
    let rows = &data.features[..data.split];
    let labels: Vec<f64> = (0..data.split).map(|i| data.label(i, &base)).collect();
    let params = smartgrid_models::train::TrainParams {
        trees: config.training.trees,
        learning_rate: config.training.learning_rate,
        num_leaves: config.training.num_leaves,
        seed: config.training.seed,
        extra: config.training.params.clone(),
    };
    eprintln!(
        "training on {} rows ({} held out), {} features",
        data.split,
        data.actual.len() - data.split,
        data.feature_names.len()
    );
    let started = Instant::now();
    let bar = progress_bar(params.trees)?;
    let text = smartgrid_models::train::train_lightgbm_weighted(
        rows,
        &labels,
        Some(&data.weights[..data.split]),
        &data.feature_names,
        &params,
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let train_seconds = started.elapsed().as_secs_f64();
    let candidate = Model::parse(text.as_bytes()).context("the trained model")?;

    let candidate_mae = data.model_mae(&candidate, &config.relative_to, "the candidate")?;
    let persistence_mae = data.held_out_mae(|i| data.current[i]);
    let active = active_model(config, registry)?;
    let active_mae = match &active {
        Some((model, relative_to, _)) => {
            Some(data.model_mae(model, relative_to, "the active model")?)
        }
        None => None,
    };
    report["active_model"] = json!(active.as_ref().map(|(_, _, name)| name));
    report["train_seconds"] = json!(train_seconds);
    report["mae"] = json!({
        "candidate": candidate_mae,
        "active": active_mae,
        "persistence": persistence_mae,
    });
    let (to_beat, what) = match active_mae {
        Some(mae) => (mae, "the active model"),
        None => (persistence_mae, "persistence (no active model)"),
    };
    let needed = to_beat * (1.0 - config.margin);
    // NaN (no held-out weight) never publishes
    let better = candidate_mae < needed;
    if !better {
        report["reason"] = json!(format!(
            "the candidate's held-out MAE {candidate_mae:.3} does not beat {what}'s {to_beat:.3} \
             by the margin {} (needs < {needed:.3})",
            config.margin
        ));
        return Ok(report);
    }
    if args.dry_run {
        report["reason"] = json!("--dry-run: not published");
        return Ok(report);
    }
    let key_path = config
        .signing_key
        .as_ref()
        .context("no signing key to publish with (the file's `signing_key:` or --signing-key)")?;
    let key = keys::read_private(key_path)?;
    let mut metrics = std::collections::BTreeMap::from([
        ("mae".to_owned(), candidate_mae),
        ("mae_persistence".to_owned(), persistence_mae),
        (
            "held_out_rows".to_owned(),
            (data.actual.len() - data.split) as f64,
        ),
    ]);
    if let Some(mae) = active_mae {
        metrics.insert("mae_active".to_owned(), mae);
    }
    let manifest = registry.publish(
        text.as_bytes(),
        &key,
        SignOptions {
            version: None,
            parent: None,
            training_rows: Some(data.split as u64),
            metrics,
        },
    )?;
    report["published"] = json!(manifest.version);
    if let Some(wanted) = &config.announce {
        let target = announce::Target {
            broker: wanted.broker.clone().unwrap_or_default(),
            topic: wanted.topic.clone(),
            base_url: wanted.base_url.clone(),
            url_query: match &wanted.url_query_env {
                Some(var) => Some(std::env::var(var).with_context(|| {
                    format!("announce.url_query_env: the environment variable {var} is not set")
                })?),
                None => None,
            },
        };
        let announcement = announce::announcement(&target, &manifest);
        report["announced"] = json!({"url": smartgrid_operators::io::shown_url(&announcement.url)});
        if wanted.broker.is_some() {
            announce::publish(&target, &manifest)?;
            report["announced"]["topic"] = json!(target.topic);
        }
        if let Some(twin) = &wanted.twin {
            let target = twin_target(twin)?;
            crate::registry::twin::publish(&target, &announcement)?;
            report["announced"]["twins"] = json!(target.devices);
        }
    }
    Ok(report)
}

/// The model to beat: `active_model:` from the file, else the registry's active
/// version; with its `relative_to` and a name for messages.
fn active_model(
    config: &RetrainConfig,
    registry: &Registry,
) -> anyhow::Result<Option<(Model, Vec<String>, String)>> {
    if let Some(active) = &config.active_model {
        let model = Model::from_file(&active.path)?;
        let relative_to = active
            .relative_to
            .clone()
            .unwrap_or_else(|| config.relative_to.clone());
        return Ok(Some((
            model,
            relative_to,
            active.path.display().to_string(),
        )));
    }
    let Some(version) = registry.state()?.active else {
        return Ok(None);
    };
    let path = registry.model_path(&version)?;
    let model = Model::from_file(&path)?;
    Ok(Some((model, config.relative_to.clone(), version)))
}

fn progress_bar(trees: usize) -> anyhow::Result<indicatif::ProgressBar> {
    let bar = indicatif::ProgressBar::new(trees as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} trees [{elapsed_precise}, eta {eta}]",
        )
        .context("progress bar template")?,
    );
    Ok(bar)
}

fn twin_target(config: &config::TwinConfig) -> anyhow::Result<crate::registry::twin::TwinTarget> {
    let var = config
        .connection_string_env
        .as_deref()
        .unwrap_or(crate::registry::twin::CONNECTION_STRING_ENV);
    let text = std::env::var(var).with_context(|| {
        format!("announce.twin: the environment variable {var} (the service connection string) is not set")
    })?;
    Ok(crate::registry::twin::TwinTarget {
        connection: crate::registry::twin::ServiceConnection::parse(&text)
            .context("announce.twin")?,
        devices: config.devices.clone(),
        endpoint: config.endpoint.clone(),
    })
}
