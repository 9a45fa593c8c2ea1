//! Argument parsing and dispatch; each command lives in `commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use smartgrid_runtime::Registry;

use crate::{commands, model_cmd, schema_cmd, sign_cmd};

/// Stream processor for smart-grid energy monitoring.
#[derive(Debug, Parser)]
#[command(name = "smartgrid", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a pipeline until its sources end or SIGINT/SIGTERM. On a signal, open
    /// windows and other state are checkpointed to the state directory and restored by
    /// the next run (with --drain they are flushed instead).
    Run {
        /// The pipeline file.
        file: PathBuf,
        /// Worker threads in this process.
        #[arg(short, long, default_value_t = 1)]
        workers: usize,
        /// Stop after this long (e.g. `30s`, `5m`), as on SIGTERM.
        #[arg(long = "for", value_name = "DURATION")]
        run_for: Option<String>,
        /// On stopping, flush open windows and keep no state for the next run (the end
        /// of a replay or a batch job), instead of checkpointing them.
        #[arg(long)]
        drain: bool,
        /// This process's index in a cluster run (with --hosts).
        #[arg(long, default_value_t = 0, requires = "hosts")]
        process: usize,
        /// A file listing every process's `host:port`, one per line (cluster mode).
        #[arg(long)]
        hosts: Option<PathBuf>,
        /// Serve /metrics, /health and /ready on this address (`127.0.0.1:9898`, or a
        /// port alone for loopback); overrides `http:` in the pipeline file.
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
    },
    /// Run pipeline tests (`*.test.yaml`, see docs/pipeline-tests.md): exit code 0 if
    /// all pass, 1 if any fails, 2 if a test file or its pipeline has problems.
    Test {
        /// The test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check a pipeline file and report every problem (exit code 2 if any).
    Validate {
        /// The pipeline file.
        file: PathBuf,
    },
    /// Print the compiled graph (Graphviz DOT, or Mermaid with --mermaid).
    Graph {
        /// The pipeline file.
        file: PathBuf,
        /// Mermaid flowchart instead of DOT.
        #[arg(long)]
        mermaid: bool,
    },
    /// List the node kinds this build knows, or one kind's keys (types, defaults, docs).
    Kinds {
        /// A kind: print its keys.
        kind: Option<String>,
    },
    /// Print the pipeline file's JSON Schema (for editors and CI checks).
    Schema,
    /// Print a live sample of a node's records as JSON lines, from a run started with
    /// `--http` (up to 16 records of each batch; a slow reader gets a sample).
    Tap {
        /// The run's listener, e.g. `http://127.0.0.1:9898`.
        url: String,
        /// The node whose output to show.
        node: String,
        /// Stop after this many records (default: until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
    },
    /// A live view of a run's nodes (rates, watermark lag, open windows, backlog,
    /// connections, problems) from its listener (`--http`); q, Esc or Ctrl-C quits.
    Top {
        /// The run's listener, e.g. `http://127.0.0.1:9898`.
        url: String,
        /// Time between refreshes (rates are over it), e.g. `1s`, `500ms`.
        #[arg(long, default_value = "1s", value_name = "DURATION")]
        interval: String,
        /// Print one frame as text (after two scrapes an interval apart) and exit; also
        /// what happens when stdout is not a terminal.
        #[arg(long)]
        once: bool,
    },
    /// Decode hex payloads (one per line on stdin) to JSON lines.
    Decode {
        /// The payload format.
        #[arg(long, default_value = "clemap")]
        format: String,
    },
    /// Measure decode → 10 s and 1 min window throughput on pre-encoded payloads.
    Bench {
        /// Simulated sensors.
        #[arg(long, default_value_t = 1000)]
        sensors: u32,
        /// Seconds of 12 Hz data per sensor.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Worker threads.
        #[arg(short, long, default_value_t = 1)]
        workers: usize,
    },
    /// Tree models: predict from a CSV, inspect, train, sign, verify.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Model-signing keys (docs/models-signing.md).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Retrain the model from triplets (feature `train`): read them from files, blobs
    /// or MQTT, train a candidate, publish it to the registry only if it beats the
    /// active model on the most recent data (docs/learning-loop-training.md).
    #[cfg(feature = "train")]
    Retrain(crate::retrain::RetrainCli),
    /// Retrain the model: not in this build (feature `train`).
    #[cfg(not(feature = "train"))]
    #[command(disable_help_flag = true)]
    Retrain {
        /// Whatever was given: ignored, this build cannot train.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// The model registry (docs/learning-loop-training.md).
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Publish simulated Clemap readings to an MQTT broker.
    Simulate {
        /// Broker URL (`mqtt://host:port`, `mqtts://…`).
        #[arg(long)]
        broker: String,
        /// Number of sensors.
        #[arg(long, default_value_t = 5)]
        sensors: u32,
        /// Readings per second per sensor.
        #[arg(long, default_value_t = 12)]
        rate: u32,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Topic; `{sensor}` is replaced by the sensor id.
        #[arg(long, default_value = "data/realtime/feature/{sensor}")]
        topic: String,
        /// Stop after this much simulated time (e.g. `1m`); default: run until Ctrl-C.
        #[arg(long)]
        duration: Option<String>,
        /// Publish as fast as possible instead of in real time.
        #[arg(long)]
        fast: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write a new ed25519 key pair: DIR/model-signing.key (private, mode 0600; an
    /// existing one is never overwritten) and DIR/model-signing.pub.
    Generate {
        /// The directory (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Serve each version's model file and manifest over HTTP, read-only:
    /// `/models/VERSION/model.txt`, `/models/VERSION/model.txt.manifest.json`, and
    /// `/models/active` (the active version's announcement).
    Serve {
        /// The registry directory.
        dir: PathBuf,
        /// The address to listen on, e.g. `0.0.0.0:8900` (port 0: any free port; the
        /// address is printed).
        #[arg(long, default_value = "127.0.0.1:8900")]
        listen: String,
    },
    /// Mirror the registry into a Blob Storage container (`models/VERSION/…` and
    /// `state.json`, the `serve` layout): the container's URL can then be the
    /// announcements' base URL, with a read-only SAS token (`--announce-url-query-env`).
    Push {
        /// The registry directory.
        dir: PathBuf,
        /// The account's blob endpoint (`https://ACCOUNT.blob.core.windows.net`).
        #[arg(long)]
        account_url: String,
        /// The container (it must exist).
        #[arg(long)]
        container: String,
        /// The storage account's name (with a key).
        #[arg(long)]
        account: Option<String>,
        /// The environment variable holding the account key.
        #[arg(long, default_value = "AZURE_STORAGE_KEY")]
        key_env: String,
        /// The environment variable holding a SAS token (write + list) instead.
        #[arg(long)]
        sas_env: Option<String>,
    },
}

/// Where `model promote` and `model rollback` announce the newly active model.
#[derive(Debug, clap::Args)]
struct AnnounceArgs {
    /// Publish the announcement, retained, to this broker (`mqtt://host:port`).
    #[arg(long, requires = "announce_base_url")]
    announce_broker: Option<String>,
    /// The announcement's topic.
    #[arg(long, default_value = "smartgrid/model")]
    announce_topic: String,
    /// Where devices fetch models (the `registry serve` URL, `http://host:8900`).
    #[arg(long)]
    announce_base_url: Option<String>,
    /// The environment variable holding a query appended to each model URL (a
    /// read-only SAS token, when the base URL is a blob container).
    #[arg(long, value_name = "VAR")]
    announce_url_query_env: Option<String>,
    /// Also set the desired property `model` of this IoT Hub device's twin
    /// (repeatable); the hub's service connection string is read from
    /// IOTHUB_SERVICE_CONNECTION_STRING.
    #[arg(
        long = "twin-device",
        value_name = "DEVICE_ID",
        requires = "announce_base_url"
    )]
    twin_devices: Vec<String>,
    /// The IoT Hub service endpoint (default `https://{HostName}`).
    #[arg(long, value_name = "URL")]
    twin_endpoint: Option<String>,
}

impl AnnounceArgs {
    fn flags(self) -> commands::AnnounceFlags {
        commands::AnnounceFlags {
            broker: self.announce_broker,
            topic: self.announce_topic,
            base_url: self.announce_base_url,
            url_query_env: self.announce_url_query_env,
            twin_devices: self.twin_devices,
            twin_endpoint: self.twin_endpoint,
        }
    }
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// List the registry's versions, oldest first; `*` marks the active one.
    List {
        /// The registry directory.
        #[arg(long)]
        registry: PathBuf,
    },
    /// Make VERSION the active model (the current one can be rolled back to), and
    /// announce it if told where.
    Promote {
        /// The version (as `model list` shows it).
        version: String,
        /// The registry directory.
        #[arg(long)]
        registry: PathBuf,
        #[command(flatten)]
        announce: AnnounceArgs,
    },
    /// Make the previously active model active again, and announce it if told where.
    Rollback {
        /// The registry directory.
        #[arg(long)]
        registry: PathBuf,
        #[command(flatten)]
        announce: AnnounceArgs,
    },
    /// Write MODEL.manifest.json: the model's version, features, trees and sha256,
    /// signed with an ed25519 key (docs/models-signing.md).
    Sign {
        /// The private key file (`smartgrid keys generate`).
        #[arg(long)]
        key: PathBuf,
        /// The model file.
        model: PathBuf,
        /// The model's version (default: the first 12 hex digits of its sha256).
        #[arg(long)]
        version: Option<String>,
        /// The version this model replaces.
        #[arg(long)]
        parent: Option<String>,
        /// Rows the model was trained on.
        #[arg(long)]
        training_rows: Option<u64>,
        /// A held-out metric, `NAME=VALUE` (repeatable), e.g. `mae=12.5`.
        #[arg(long = "metric", value_name = "NAME=VALUE")]
        metrics: Vec<String>,
    },
    /// Check a model against its signed manifest: exit 0 if it matches, 1 with the
    /// reason if not.
    Verify {
        /// The public key file (`smartgrid keys generate`).
        #[arg(long)]
        public_key: PathBuf,
        /// The model file (its manifest is MODEL.manifest.json).
        model: PathBuf,
    },
    /// Print one prediction per CSV row (one per line, in row order).
    Predict {
        /// The model (XGBoost JSON or LightGBM text, detected by content).
        #[arg(long)]
        model: PathBuf,
        /// Feature rows; the header names the columns (matched to the model's feature
        /// names in any order; extra columns are ignored); empty cells are missing.
        #[arg(long)]
        csv: PathBuf,
    },
    /// Print a model's format, objective, trees, features and size.
    Inspect {
        /// The model file.
        file: PathBuf,
    },
    /// Train a LightGBM regression model on a CSV (every column but the target is a
    /// feature) and write its text model.
    #[cfg(feature = "train")]
    Train {
        /// Training rows with a header; empty cells are missing values.
        #[arg(long)]
        data: PathBuf,
        /// The column to predict.
        #[arg(long)]
        target: String,
        /// Feature columns, comma-separated (default: every column but the target).
        #[arg(long, value_delimiter = ',')]
        features: Option<Vec<String>>,
        /// Learn the change from the sum of these columns (comma-separated) instead of
        /// the target itself; use the same list as the `predict` node's `relative_to`.
        #[arg(long, value_delimiter = ',')]
        relative_to: Vec<String>,
        /// Where to write the LightGBM text model.
        #[arg(long)]
        out: PathBuf,
        /// Boosting rounds (trees).
        #[arg(long, default_value_t = 200)]
        trees: usize,
        /// Learning rate (shrinkage).
        #[arg(long, default_value_t = 0.05)]
        learning_rate: f64,
        /// Maximum leaves per tree.
        #[arg(long, default_value_t = 31)]
        num_leaves: usize,
        /// Random seed (training is deterministic for a seed).
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// More LightGBM parameters, `key=value` (repeatable), e.g. `min_data_in_leaf=5`.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// Train a LightGBM model: not in this build (feature `train`); says how to get it.
    #[cfg(not(feature = "train"))]
    #[command(disable_help_flag = true)]
    Train {
        /// Whatever was given: ignored, this build cannot train.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

fn model_command(command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Predict { model, csv } => model_cmd::predict(&model, &csv),
        ModelCommand::Inspect { file } => model_cmd::inspect(&file),
        ModelCommand::List { registry } => commands::model_list(&registry),
        ModelCommand::Promote {
            version,
            registry,
            announce,
        } => commands::model_activate(&registry, Some(&version), &announce.flags()),
        ModelCommand::Rollback { registry, announce } => {
            commands::model_activate(&registry, None, &announce.flags())
        }
        ModelCommand::Sign {
            key,
            model,
            version,
            parent,
            training_rows,
            metrics,
        } => sign_cmd::sign(sign_cmd::SignArgs {
            key: &key,
            model: &model,
            version,
            parent,
            training_rows,
            metrics: &metrics,
        }),
        ModelCommand::Verify { public_key, model } => sign_cmd::verify(&public_key, &model),
        #[cfg(feature = "train")]
        ModelCommand::Train {
            data,
            target,
            features,
            relative_to,
            out,
            trees,
            learning_rate,
            num_leaves,
            seed,
            params,
        } => model_cmd::train(model_cmd::TrainArgs {
            data: &data,
            target: &target,
            features,
            relative_to,
            out: &out,
            params: smartgrid_models::train::TrainParams {
                trees,
                learning_rate,
                num_leaves,
                seed,
                extra: params,
            },
        }),
        #[cfg(not(feature = "train"))]
        ModelCommand::Train { args: _ } => Err(anyhow::anyhow!(model_cmd::TRAIN_NOT_BUILT)),
    }
}

/// Run the command line with the given operator kinds. Returns the exit code:
/// 0 success, 1 failure, 2 invalid pipeline file.
pub fn main_with(registry: Registry) -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            file,
            workers,
            run_for,
            drain,
            process,
            hosts,
            http,
        } => commands::run(
            &registry,
            &file,
            commands::RunOptions {
                workers,
                run_for: run_for.as_deref(),
                drain,
                process,
                hosts: hosts.as_deref(),
                http: http.as_deref(),
            },
        ),
        Command::Test { files } => crate::pipeline_test::test(&registry, &files),
        Command::Validate { file } => commands::validate(&registry, &file),
        Command::Graph { file, mermaid } => commands::graph(&registry, &file, mermaid),
        Command::Kinds { kind: None } => commands::kinds(&registry),
        Command::Kinds { kind: Some(kind) } => schema_cmd::kind(&registry, &kind),
        Command::Schema => schema_cmd::schema(&registry),
        Command::Tap { url, node, count } => crate::observe::tap::tap(&url, &node, count),
        Command::Top {
            url,
            interval,
            once,
        } => commands::parse_duration(&interval)
            .context("--interval")
            .and_then(|interval| {
                crate::observe::top::top(&crate::observe::top::TopOptions {
                    url: &url,
                    interval,
                    once,
                })
            }),
        Command::Decode { format } => commands::decode(&format),
        Command::Bench {
            sensors,
            seconds,
            workers,
        } => crate::bench::bench(sensors, seconds, workers),
        Command::Model { command } => model_command(command),
        Command::Keys {
            command: KeysCommand::Generate { out },
        } => sign_cmd::keys_generate(&out),
        #[cfg(feature = "train")]
        Command::Retrain(args) => args.run(),
        #[cfg(not(feature = "train"))]
        Command::Retrain { args: _ } => Err(anyhow::anyhow!(
            "{}",
            model_cmd::TRAIN_NOT_BUILT.replace("smartgrid model train", "smartgrid retrain")
        )),
        Command::Registry {
            command: RegistryCommand::Serve { dir, listen },
        } => commands::registry_serve(&dir, &listen),
        Command::Registry {
            command:
                RegistryCommand::Push {
                    dir,
                    account_url,
                    container,
                    account,
                    key_env,
                    sas_env,
                },
        } => commands::registry_push(
            &dir,
            &commands::BlobFlags {
                account_url,
                container,
                account,
                key_env,
                sas_env,
            },
        ),
        Command::Simulate {
            broker,
            sensors,
            rate,
            seed,
            topic,
            duration,
            fast,
        } => commands::simulate(
            &broker,
            sensors,
            rate,
            seed,
            &topic,
            duration.as_deref(),
            fast,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(invalid) = e.downcast_ref::<commands::InvalidPipeline>() {
                eprintln!("{invalid}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    // the embedded broker (rumqttd) logs every connection and disconnection, even as
    // errors; it is internal plumbing here, so it is silent unless asked for.
    let filter = EnvFilter::try_from_env("SMARTGRID_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,rumqttd=off,rumqttc=warn"));
    let filter = filter.and(filter_fn(|meta| !is_wire_dump(meta)));
    let format = std::env::var("SMARTGRID_LOG_FORMAT").unwrap_or_default();
    let layer = if format.eq_ignore_ascii_case("json") {
        // One JSON object per line, for a log collector; never coloured.
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed()
    } else {
        // Colours only for a person at a terminal: a file, a pipe or journald would
        // keep the escape codes as text.
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .boxed()
    };
    // The status page's last errors see what the log shows, under the same filter
    // (so never a wire dump).
    let layer = layer
        .and_then(crate::observe::RecentErrors)
        .with_filter(filter);
    let _ = tracing_subscriber::registry().with(layer).try_init();
    if !format.is_empty() && !format.eq_ignore_ascii_case("json") && format != "text" {
        tracing::warn!("SMARTGRID_LOG_FORMAT={format:?} is not `text` or `json`; logging text");
    }
}

/// Whether an event is a network library's debug or trace output. Those dump requests
/// and packets (an HTTP `Authorization` header, an MQTT CONNECT with its password), so
/// no `SMARTGRID_LOG` setting shows them: secrets never reach a log.
fn is_wire_dump(meta: &tracing::Metadata<'_>) -> bool {
    const WIRE: [&str; 6] = ["ureq", "rustls", "rumqttc", "rumqttd", "hyper", "h2"];
    *meta.level() > tracing::Level::INFO
        && WIRE.iter().any(|lib| {
            meta.target().strip_prefix(lib).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with("::") || rest.starts_with('_')
            })
        })
}
