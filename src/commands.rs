//! One function per command.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use smartgrid_runtime::Registry;
use smartgrid_runtime::checkpoint::{Checkpoints, OnStop};
use smartgrid_runtime::context::ProcessContext;
use smartgrid_runtime::diagnostic::Diagnostics;
use smartgrid_runtime::metrics::Metrics;
use smartgrid_runtime::plan::{Plan, plan};
use smartgrid_runtime::render::{Cluster, run as run_plan};
use smartgrid_runtime::shutdown::Shutdown;
use smartgrid_runtime::spec::{self, Env};
use smartgrid_runtime::state::StateStore;

/// A pipeline file with problems; printed as its diagnostics, exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{diagnostics}\n{count} problem{s} found; nothing was started", count = diagnostics.0.len(), s = if diagnostics.0.len() == 1 { "" } else { "s" })]
pub struct InvalidPipeline {
    diagnostics: Diagnostics,
}

fn load(registry: &Registry, file: &Path) -> Result<Plan, InvalidPipeline> {
    let spec = spec::parse_file(file, Env::Process).map_err(|d| InvalidPipeline {
        diagnostics: Diagnostics(d),
    })?;
    plan(&spec, registry).map_err(|diagnostics| InvalidPipeline { diagnostics })
}

/// `smartgrid validate FILE`
pub fn validate(registry: &Registry, file: &Path) -> anyhow::Result<ExitCode> {
    let plan = load(registry, file)?;
    println!("{}: ok ({} nodes)", file.display(), plan.nodes.len());
    Ok(ExitCode::SUCCESS)
}

/// `smartgrid graph FILE [--mermaid]`
pub fn graph(registry: &Registry, file: &Path, mermaid: bool) -> anyhow::Result<ExitCode> {
    let plan = load(registry, file)?;
    let text = if mermaid {
        smartgrid_runtime::graph::to_mermaid(&plan)
    } else {
        smartgrid_runtime::graph::to_dot(&plan)
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `smartgrid kinds`
pub fn kinds(registry: &Registry) -> anyhow::Result<ExitCode> {
    for (kind, summary) in registry.summaries() {
        println!("{kind:<18} {summary}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The options of `smartgrid run`.
pub struct RunOptions<'a> {
    /// Worker threads in this process.
    pub workers: usize,
    /// `--for`: stop after this long.
    pub run_for: Option<&'a str>,
    /// `--drain`: flush instead of checkpointing.
    pub drain: bool,
    /// `--process`: this process's index in a cluster.
    pub process: usize,
    /// `--hosts`: the cluster's address file.
    pub hosts: Option<&'a Path>,
    /// `--http`: the metrics and health listener's address.
    pub http: Option<&'a str>,
}

/// `smartgrid run FILE`
pub fn run(registry: &Registry, file: &Path, options: RunOptions<'_>) -> anyhow::Result<ExitCode> {
    let RunOptions {
        workers,
        run_for,
        drain,
        process,
        hosts,
        http,
    } = options;
    let run_for = run_for.map(parse_duration).transpose().context("--for")?;
    let http = http
        .map(smartgrid_runtime::spec::observe::parse_listen)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--http: {e}"))?;
    let plan = Arc::new(load(registry, file)?);
    // Claimed before anything else starts: a port in use stops the run here.
    let listener = http
        .or(plan.observe.http)
        .map(crate::observe::bind)
        .transpose()?;
    let mut cluster = Cluster::local(workers);
    if let Some(hosts) = hosts {
        let text = std::fs::read_to_string(hosts)
            .with_context(|| format!("cannot read {}", hosts.display()))?;
        cluster.addresses = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        cluster.process = process;
        if process >= cluster.addresses.len() {
            bail!(
                "--process {process} is not listed in {} ({} hosts)",
                hosts.display(),
                cluster.addresses.len()
            );
        }
        if cluster.addresses.len() > 1 {
            crate::lost_peer::exit_when_a_peer_is_lost();
        }
    }
    let shutdown = Shutdown::new();
    shutdown
        .on_signals()
        .context("cannot install the signal handlers")?;
    if let Some(after) = run_for {
        shutdown.after(after);
    }
    let on_stop = if drain {
        OnStop::Drain
    } else {
        OnStop::Checkpoint
    };
    let processes = cluster.addresses.len().max(1);
    let store = StateStore::open(&plan.state_dir, &plan.name, cluster.process, processes)
        .context("the state directory")?;
    // Periodic checkpoints need a source that replays what followed the last one.
    let interval = plan.replayable().then_some(plan.checkpoint_interval);
    let checkpoints = if processes > 1 {
        // The processes restore the newest cut they all hold: they tell each other
        // which they hold before anything starts (the sinks and logs restore in
        // `start`).
        let held = store.kept().iter().map(|k| k.time).collect();
        let held = smartgrid_runtime::checkpoint::cluster::exchange(&cluster, held)?;
        Checkpoints::agreed(store, on_stop, interval, shutdown.clone(), &held)
    } else {
        Checkpoints::new(store, on_stop, interval, shutdown.clone())
    };
    let checkpoints = Arc::new(checkpoints.context("the state directory")?);
    let metrics = Metrics::default();
    let taps = smartgrid_runtime::tap::Taps::default();
    let pressure = smartgrid_runtime::pressure::Pressure::new();
    let ctx = ProcessContext {
        pipeline: plan.name.clone(),
        base_dir: plan.base_dir.clone(),
        metrics: metrics.clone(),
        shutdown,
        liveness: smartgrid_runtime::liveness::Liveness::new(pressure.clone()),
        pressure,
        checkpoints: Arc::clone(&checkpoints),
        workers: cluster.workers,
        process_index: cluster.process,
        process_count: cluster.addresses.len().max(1),
        // Tap points only where someone can reach them.
        taps: listener.is_some().then(|| taps.clone()),
    };
    let view = Arc::new(crate::observe::View::new(
        &plan,
        metrics.clone(),
        ctx.shutdown.clone(),
        taps,
    ));
    let _listener = listener
        .map(|l| crate::observe::Listener::start(l, Arc::clone(&view)))
        .transpose()?;
    let observer = crate::observe::Observer::start(view, plan.observe.status_interval)?;
    tracing::info!(pipeline = %plan.name, nodes = plan.nodes.len(), workers = cluster.workers, "running");
    let started = std::time::Instant::now();
    let ran = run_plan(Arc::clone(&plan), &cluster, ctx);
    drop(observer);
    ran.context("the pipeline failed")?;
    let writing = std::time::Instant::now();
    let saved = checkpoints
        .commit_at_stop()
        .context("cannot write the checkpoint")?;
    if saved > 0 {
        tracing::info!(
            bytes = saved,
            took_ms = writing.elapsed().as_secs_f64() * 1e3,
            dir = %plan.state_dir.display(),
            "state checkpointed for the next run"
        );
    }
    let counters: Vec<String> = metrics
        .snapshot()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tracing::info!(
        elapsed_s = started.elapsed().as_secs_f64(),
        "stopped; {}",
        counters.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}

/// Durations on the command line use the pipeline file's syntax (`30s`, `5m`).
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let parsed: spec::Duration = text
        .parse()
        .map_err(|e: spec::ParseDurationError| anyhow::anyhow!("{e}"))?;
    Ok(parsed.0)
}

/// `smartgrid decode --format clemap`: hex payloads on stdin → JSON lines.
/// Exit 0 when every line decoded, 1 when some did not.
pub fn decode(format: &str) -> anyhow::Result<ExitCode> {
    if format != "clemap" {
        bail!("unknown format `{format}` (this command knows: clemap)");
    }
    let mut stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut all_ok = true;
    let mut buffer = Vec::new();
    // Each line gets one answer, whatever its bytes: a bad line never stops the rest.
    while let Some(line) = read_line(&mut stdin, &mut buffer).context("cannot read stdin")? {
        let hex_text = match line {
            Line::Text(text) => text.trim(),
            Line::TooLong => {
                all_ok = false;
                writeln!(out, "{}", serde_json::json!({ "error": "line_too_long" }))?;
                continue;
            }
            Line::NotUtf8 => {
                all_ok = false;
                writeln!(out, "{}", serde_json::json!({ "error": "invalid_utf8" }))?;
                continue;
            }
        };
        let value = match hex::decode(hex_text) {
            Err(e) => {
                all_ok = false;
                tracing::debug!("line is not hex: {e}");
                serde_json::json!({ "error": "invalid_hex" })
            }
            Ok(bytes) => match smartgrid_operators::formats::clemap::decode_fields(&bytes) {
                Ok(fields) => serde_json::Value::Object(fields),
                Err(e) => {
                    all_ok = false;
                    tracing::debug!("cannot decode: {e}");
                    serde_json::json!({ "error": e.reason() })
                }
            },
        };
        writeln!(out, "{value}")?;
    }
    out.flush()?;
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The longest input line `smartgrid decode` reads: the hex of the largest MQTT
/// payload the pipeline accepts (1 MiB), with room for whitespace.
const MAX_DECODE_LINE: usize = 2 * 1024 * 1024 + 64;

/// One line of `smartgrid decode`'s input.
enum Line<'a> {
    Text(&'a str),
    NotUtf8,
    TooLong,
}

/// The next line (without its line ending) of `input`, held in `buffer`; `None` at the
/// end. A line longer than [`MAX_DECODE_LINE`] is skipped, not kept in memory.
fn read_line<'b>(
    input: &mut impl std::io::BufRead,
    buffer: &'b mut Vec<u8>,
) -> std::io::Result<Option<Line<'b>>> {
    buffer.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            break;
        }
        any = true;
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !too_long {
            buffer.extend_from_slice(&available[..take]);
            if buffer.len() > MAX_DECODE_LINE {
                too_long = true;
                buffer.clear();
            }
        }
        input.consume(take);
        if done {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if too_long {
        return Ok(Some(Line::TooLong));
    }
    while buffer.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        buffer.pop();
    }
    Ok(Some(match std::str::from_utf8(buffer) {
        Ok(text) => Line::Text(text),
        Err(_) => Line::NotUtf8,
    }))
}

/// `smartgrid simulate --broker URL`
pub fn simulate(
    broker: &str,
    sensors: u32,
    rate: u32,
    seed: u64,
    topic: &str,
    duration: Option<&str>,
    fast: bool,
) -> anyhow::Result<ExitCode> {
    use smartgrid_operators::simulate::{PublishPlan, SimulatorConfig, publish_to_broker};
    let duration = duration
        .map(parse_duration)
        .transpose()
        .context("--duration")?;
    let shutdown = Shutdown::new();
    shutdown
        .on_signals()
        .context("cannot install the signal handlers")?;
    let plan = PublishPlan {
        simulator: SimulatorConfig {
            sensors,
            rate,
            seed,
            realtime: !fast,
            duration: duration.map(spec::Duration),
            ..SimulatorConfig::default()
        },
        topic: topic.to_string(),
        qos: 1,
    };
    let published = publish_to_broker(broker, &plan, &shutdown).context("simulate")?;
    eprintln!("published {published} readings to {broker}");
    Ok(ExitCode::SUCCESS)
}

/// Where `model promote` and `model rollback` announce, from their flags.
pub struct AnnounceFlags {
    pub broker: Option<String>,
    pub topic: String,
    pub base_url: Option<String>,
    pub url_query_env: Option<String>,
    pub twin_devices: Vec<String>,
    pub twin_endpoint: Option<String>,
}

impl AnnounceFlags {
    /// The announcement target (its broker empty when only twins are told), and the
    /// twins; `None` when nothing is to be announced.
    #[allow(clippy::type_complexity)]
    fn targets(
        &self,
    ) -> anyhow::Result<
        Option<(
            crate::registry::announce::Target,
            Option<crate::registry::twin::TwinTarget>,
        )>,
    > {
        let Some(base_url) = &self.base_url else {
            return Ok(None);
        };
        if self.broker.is_none() && self.twin_devices.is_empty() {
            bail!("--announce-base-url needs --announce-broker or --twin-device");
        }
        let twin = if self.twin_devices.is_empty() {
            None
        } else {
            let var = crate::registry::twin::CONNECTION_STRING_ENV;
            let text = std::env::var(var).with_context(|| {
                format!("--twin-device: the environment variable {var} (the service connection string) is not set")
            })?;
            Some(crate::registry::twin::TwinTarget {
                connection: crate::registry::twin::ServiceConnection::parse(&text)?,
                devices: self.twin_devices.clone(),
                endpoint: self.twin_endpoint.clone(),
            })
        };
        let url_query = match &self.url_query_env {
            Some(var) => Some(std::env::var(var).with_context(|| {
                format!("--announce-url-query-env: the environment variable {var} is not set")
            })?),
            None => None,
        };
        let target = crate::registry::announce::Target {
            broker: self.broker.clone().unwrap_or_default(),
            topic: self.topic.clone(),
            base_url: base_url.clone(),
            url_query,
        };
        Ok(Some((target, twin)))
    }
}

/// `smartgrid model list --registry DIR`: one line per version, oldest first, `*` on
/// the active one.
pub fn model_list(dir: &Path) -> anyhow::Result<ExitCode> {
    let registry = crate::registry::Registry::open(dir)?;
    for entry in registry.list()? {
        let m = &entry.manifest;
        let metrics = m
            .metrics
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{} {} created {} parent {} rows {} {metrics}",
            if entry.active { '*' } else { ' ' },
            m.version,
            m.created,
            m.parent.as_deref().unwrap_or("-"),
            m.training_rows.map_or("-".to_owned(), |n| n.to_string()),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `smartgrid model promote VERSION --registry DIR` (and `rollback` with `None`): make
/// a version active and announce it if told where.
pub fn model_activate(
    dir: &Path,
    version: Option<&str>,
    announce: &AnnounceFlags,
) -> anyhow::Result<ExitCode> {
    let targets = announce.targets()?;
    let registry = crate::registry::Registry::open(dir)?;
    let manifest = match version {
        Some(version) => registry.promote(version)?,
        None => registry.rollback()?,
    };
    println!("active: {}", manifest.version);
    if let Some((target, twin)) = targets {
        if announce.broker.is_some() {
            let sent = crate::registry::announce::publish(&target, &manifest)?;
            println!(
                "announced on {} (retained): {}",
                target.topic,
                smartgrid_operators::io::shown_url(&sent.url)
            );
        }
        if let Some(twin) = twin {
            let announcement = crate::registry::announce::announcement(&target, &manifest);
            crate::registry::twin::publish(&twin, &announcement)?;
            println!("announced to the twins of {}", twin.devices.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `smartgrid registry serve DIR --listen ADDR`
pub fn registry_serve(dir: &Path, listen: &str) -> anyhow::Result<ExitCode> {
    let registry = crate::registry::Registry::open(dir)?;
    crate::registry::serve::serve(registry, listen)?;
    Ok(ExitCode::SUCCESS)
}

/// Where `registry push` writes, from its flags.
pub struct BlobFlags {
    pub account_url: String,
    pub container: String,
    pub account: Option<String>,
    pub key_env: String,
    pub sas_env: Option<String>,
}

/// `smartgrid registry push DIR --account-url URL --container NAME`
pub fn registry_push(dir: &Path, flags: &BlobFlags) -> anyhow::Result<ExitCode> {
    use crate::registry::blob::{Auth, Container, decode_key};
    let auth = match &flags.sas_env {
        Some(var) => Auth::Sas(
            std::env::var(var)
                .with_context(|| format!("--sas-env: the environment variable {var} is not set"))?,
        ),
        None => {
            let var = &flags.key_env;
            let key = std::env::var(var).with_context(|| {
                format!("the environment variable {var} (the account key) is not set")
            })?;
            let account = flags
                .account
                .clone()
                .context("--account: the storage account's name is needed with a key")?;
            Auth::SharedKey {
                account,
                key: decode_key(&key)?,
            }
        }
    };
    let registry = crate::registry::Registry::open(dir)?;
    let container = Container::new(&flags.account_url, &flags.container, auth)?;
    let pushed = crate::registry::push::push(&registry, &container)?;
    println!(
        "pushed {} file(s) and the state to {}/{} ({} already there)",
        pushed.uploaded,
        flags.account_url.trim_end_matches('/'),
        flags.container,
        pushed.already_there
    );
    Ok(ExitCode::SUCCESS)
}
