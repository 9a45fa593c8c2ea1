//! `smartgrid retrain` (feature `train`): the training side of the learning loop.
//!
//! Triplets (from JSON-lines files, IoT Hub routing blobs, an MQTT topic) fill a
//! bounded store; a cycle turns the store into weighted rows, trains a LightGBM
//! candidate on all but the most recent slice, measures it, the active model and
//! persistence on that slice, and publishes the candidate — signed, into the registry,
//! announced — only when it beats the active model by the configured margin. One-shot
//! (one poll of every source, one cycle) or as a service (`--service`: poll, and run a
//! cycle after N new triplets or a period). See docs/learning-loop-training.md.

pub mod blob;
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
use config::RetrainConfig;
use dataset::Dataset;
use store::Store;
use triplet::Fields;
pub use triplet::Triplet;

/// What `smartgrid retrain` was given on the command line.
pub struct RetrainArgs {
    pub config: PathBuf,
    /// Keep running: poll the sources and train on the trigger.
    pub service: bool,
    /// Write the training rows (CSV) here before training.
    pub rows_out: Option<PathBuf>,
    /// Train and evaluate, publish nothing.
    pub dry_run: bool,
    /// Override `training.trees`.
    pub trees: Option<usize>,
}

/// `smartgrid retrain --config FILE`
pub fn retrain(args: RetrainArgs) -> anyhow::Result<ExitCode> {
    let mut config = load(&args.config)?;
    if let Some(trees) = args.trees {
        config.training.trees = trees;
    }
    let fields = Fields {
        features: config.features.clone(),
        current: config.persistence.clone(),
    };
    let registry = Registry::open(&config.registry)?;
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
        std::thread::sleep(poll);
    }
}

/// Read the YAML file; relative paths in it are relative to the file.
fn load(path: &Path) -> anyhow::Result<RetrainConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.display().to_string();
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
    resolve(&mut config.registry);
    resolve(&mut config.signing_key);
    if let Some(active) = &mut config.active_model {
        resolve(&mut active.path);
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
    let key = keys::read_private(&config.signing_key)?;
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
        };
        let announcement = announce::announcement(&target, &manifest);
        report["announced"] = json!({"url": announcement.url});
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
