//! `smartgrid tap URL NODE`: a live sample of a node's records, as JSON lines on stdout,
//! from a run's HTTP listener (`/tap/<node>`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, bail};
use smartgrid_runtime::shutdown::Shutdown;

/// Records asked for per request.
const PER_REQUEST: u64 = 100;

/// Print `count` records of `node` (or records until SIGINT/SIGTERM if `None`).
pub(crate) fn tap(url: &str, node: &str, count: Option<u64>) -> anyhow::Result<ExitCode> {
    let base = url.trim_end_matches('/');
    if !base.starts_with("http://") {
        bail!("`{url}` is not the address of a run's listener (`http://127.0.0.1:9898`)");
    }
    let shutdown = Shutdown::new();
    shutdown
        .on_signals()
        .context("cannot install the signal handlers")?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut out = std::io::stdout().lock();
    let mut printed = 0;
    while !shutdown.is_triggered() && count.is_none_or(|n| printed < n) {
        let ask = count.map_or(PER_REQUEST, |n| (n - printed).min(PER_REQUEST));
        let address = format!("{base}/tap/{node}?count={ask}");
        let mut response = agent
            .get(&address)
            .call()
            .with_context(|| format!("cannot reach {base}"))?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read the answer of {base}"))?;
        if !status.is_success() {
            bail!("{base}: {status}: {}", body.trim());
        }
        for line in body.lines().filter(|l| !l.is_empty()) {
            writeln!(out, "{line}")?;
            printed += 1;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}
