//! `smartgrid top URL`: a live terminal view of a run's nodes, from its listener's
//! `/metrics` (and `/api/graph` for the nodes' order and kinds).
//!
//! [`model`] turns two scrapes into the table (pure, unit-tested), [`draw`] draws it
//! with ratatui; this file fetches and runs the terminal. `--once`, or a stdout that is
//! not a terminal, prints one frame as text after two scrapes `--interval` apart.

mod draw;
mod model;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use model::{Scrape, Table};

/// The options of `smartgrid top`.
pub(crate) struct TopOptions<'a> {
    pub url: &'a str,
    pub interval: Duration,
    pub once: bool,
}

/// Run `smartgrid top`.
pub(crate) fn top(options: &TopOptions<'_>) -> anyhow::Result<ExitCode> {
    let base = options.url.trim_end_matches('/');
    if !base.starts_with("http://") {
        bail!(
            "`{}` is not the address of a run's listener (`http://127.0.0.1:9898`)",
            options.url
        );
    }
    if options.interval.is_zero() {
        bail!("--interval must be more than zero");
    }
    let source = Source::new(base);
    if options.once || !std::io::stdout().is_terminal() {
        if !options.once {
            eprintln!("stdout is not a terminal: printing one frame (as with --once)");
        }
        let text = once(&source, options.interval)?;
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    // Fail before taking over the screen if nothing listens there.
    let first = source.scrape()?;
    let nodes = source.nodes();
    live(&source, options.interval, first, &nodes)?;
    Ok(ExitCode::SUCCESS)
}

/// One frame: two scrapes `interval` apart, as text.
fn once(source: &Source, interval: Duration) -> anyhow::Result<String> {
    let before = source.scrape()?;
    let nodes = source.nodes();
    std::thread::sleep(interval);
    let now = source.scrape()?;
    let table = model::table(
        &before.scrape,
        &now.scrape,
        now.at.duration_since(before.at).as_secs_f64(),
        &nodes,
    );
    let header = draw::Header {
        url: &source.base,
        interval_s: interval.as_secs_f64(),
        trouble: None,
        live: false,
    };
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120u16)
        .max(60);
    Ok(draw::frame_text(&header, Some(&table), width))
}

/// The live view, until q, Esc or Ctrl-C.
fn live(
    source: &Source,
    interval: Duration,
    first: Timed,
    nodes: &[(String, String)],
) -> anyhow::Result<()> {
    let mut terminal = ratatui::try_init().context("cannot take over the terminal")?;
    let mut before = first;
    let mut table: Option<Table> = None;
    let mut trouble: Option<String> = None;
    let mut next = Instant::now() + interval;
    let outcome = loop {
        let header = draw::Header {
            url: &source.base,
            interval_s: interval.as_secs_f64(),
            trouble: trouble.as_deref(),
            live: true,
        };
        if let Err(e) = terminal.draw(|frame| draw::draw(frame, &header, table.as_ref())) {
            break Err(anyhow::Error::from(e).context("cannot draw"));
        }
        let wait = next.saturating_duration_since(Instant::now());
        match event::poll(wait) {
            Ok(true) => match event::read() {
                Ok(Event::Key(key)) if key.kind == KeyEventKind::Press => {
                    let ctrl_c = key.code == KeyCode::Char('c')
                        && key.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                        break Ok(());
                    }
                    continue;
                }
                Ok(_) => continue,
                Err(e) => break Err(anyhow::Error::from(e).context("cannot read the keyboard")),
            },
            Ok(false) => {}
            Err(e) => break Err(anyhow::Error::from(e).context("cannot read the keyboard")),
        }
        next = Instant::now() + interval;
        // A run that stops or restarts is shown as such; the view keeps trying.
        match source.scrape() {
            Ok(now) => {
                let seconds = now.at.duration_since(before.at).as_secs_f64();
                table = Some(model::table(&before.scrape, &now.scrape, seconds, nodes));
                before = now;
                trouble = None;
            }
            Err(e) => trouble = Some(format!("{e:#}")),
        }
    };
    ratatui::restore();
    outcome
}

/// A scrape and when it was taken.
struct Timed {
    scrape: Scrape,
    at: Instant,
}

/// The run's listener.
struct Source {
    base: String,
    agent: ureq::Agent,
}

impl Source {
    fn new(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A hung run must not freeze the keyboard for long.
            .timeout_global(Some(Duration::from_secs(3)))
            .build()
            .into();
        Source {
            base: base.to_owned(),
            agent,
        }
    }

    fn get(&self, path: &str) -> anyhow::Result<String> {
        let mut response = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read the answer of {}", self.base))?;
        if !status.is_success() {
            bail!("{}{path}: {status}: {}", self.base, body.trim());
        }
        Ok(body)
    }

    fn scrape(&self) -> anyhow::Result<Timed> {
        let text = self.get("/metrics")?;
        let at = Instant::now();
        let scrape = Scrape::parse(&text)
            .with_context(|| format!("{}/metrics is not a run's metrics", self.base))?;
        Ok(Timed { scrape, at })
    }

    /// The pipeline's nodes (name, kind) in order; none from a listener without
    /// `/api/graph` (the table then lists the nodes its metrics name).
    fn nodes(&self) -> Vec<(String, String)> {
        let Ok(text) = self.get("/api/graph") else {
            return Vec::new();
        };
        let graph: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        graph["nodes"]
            .as_array()
            .map(|nodes| {
                nodes
                    .iter()
                    .filter_map(|n| {
                        Some((
                            n["name"].as_str()?.to_owned(),
                            n["kind"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
