//! Watching a run while it goes on: the HTTP listener (`/metrics`, `/health`,
//! `/ready`, the status page at `/` and its JSON), the status line in the log, and the
//! commands that read a listener (`smartgrid tap`, `smartgrid top`). The listener reads
//! the process's [`Metrics`]; nothing here touches a record unless a client asked for
//! records (a tap).

mod compare;
mod http;
mod prometheus;
mod recent;
mod shape;
mod status;
pub(crate) mod tap;
pub(crate) mod top;

pub(crate) use recent::RecentErrors;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use smartgrid_runtime::metrics::{Metrics, STARTED};
use smartgrid_runtime::plan::Plan;
use smartgrid_runtime::shutdown::Shutdown;

pub(crate) use http::Listener;

/// Claim the listen address, before anything else of the run starts, so a port in use
/// is a clean error naming it.
pub(crate) fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener
        .set_nonblocking(true)
        .with_context(|| format!("cannot listen on {addr}"))?;
    Ok(listener)
}

/// What the listener and the status line read: the metrics and which nodes matter.
pub(crate) struct View {
    metrics: Metrics,
    shutdown: Shutdown,
    /// Nodes without inputs.
    sources: Vec<String>,
    /// Nodes with inputs but no output.
    sinks: Vec<String>,
    /// Decoded readings per second over the last [`RATE_WINDOW`], as `f64` bits.
    rate: AtomicU64,
    /// The nodes' outputs, for `/tap/<node>`.
    taps: smartgrid_runtime::tap::Taps,
    /// Nodes and edges, for `/api/graph`.
    shape: shape::Shape,
    /// The compare nodes' last results, for `/api/compare` (collected while asked for).
    comparisons: compare::Comparisons,
    /// Records per second of each node's output over the last [`RATE_WINDOW`], from
    /// its `records_out` counter, for `/api/rates` (the status page's edges).
    node_rates: std::sync::Mutex<BTreeMap<String, f64>>,
}

/// How many one-second samples the readings rate is taken over.
const RATE_WINDOW: usize = 10;

impl View {
    pub(crate) fn new(
        plan: &Plan,
        metrics: Metrics,
        shutdown: Shutdown,
        taps: smartgrid_runtime::tap::Taps,
    ) -> Self {
        let names = |keep: fn(&smartgrid_runtime::plan::PlannedNode) -> bool| {
            plan.nodes
                .iter()
                .filter(|n| keep(n))
                .map(|n| n.name.clone())
                .collect()
        };
        View {
            metrics,
            shutdown,
            sources: names(|n| n.inputs.is_empty()),
            // A source that publishes (a simulator) is listed once, as a source.
            sinks: names(|n| n.output.is_none() && !n.inputs.is_empty()),
            rate: AtomicU64::new(0f64.to_bits()),
            taps,
            shape: shape::Shape::of(plan),
            comparisons: compare::Comparisons::default(),
            node_rates: Default::default(),
        }
    }

    fn readings_per_second(&self) -> f64 {
        f64::from_bits(self.rate.load(Ordering::Relaxed))
    }

    /// Readings decoded so far, by every decoder (`<node>.readings` of a node whose
    /// `watermark_ms` gauge says it is a decoder).
    fn readings_total(&self, counters: &[(String, u64)], gauges: &[(String, i64)]) -> u64 {
        let decoders: Vec<&str> = gauges
            .iter()
            .filter_map(|(name, _)| name.strip_suffix(".watermark_ms"))
            .collect();
        counters
            .iter()
            .filter(|(name, _)| {
                name.strip_suffix(".readings")
                    .is_some_and(|node| decoders.contains(&node))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// `Ok` when every source is connected and subscribed and no sink fails past its
    /// retries; else a short reason.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        let gauges: BTreeMap<String, i64> = self.metrics.gauges().into_iter().collect();
        let is = |node: &str, what: &str, value: i64| {
            gauges.get(&format!("{node}.{what}")) == Some(&value)
        };
        if gauges.get(STARTED) != Some(&1) {
            return Err("starting: not every node has started yet".into());
        }
        if self.shutdown.is_triggered() {
            return Err("stopping".into());
        }
        let mut reasons = Vec::new();
        for source in &self.sources {
            if is(source, "connected", 0) {
                reasons.push(format!("source `{source}` is not connected"));
            } else if is(source, "subscribed", 0) {
                reasons.push(format!("source `{source}` is not subscribed"));
            }
        }
        for sink in &self.sinks {
            if is(sink, "failing", 1) {
                reasons.push(format!("sink `{sink}` fails past its retries"));
            } else if is(sink, "connected", 0) {
                reasons.push(format!("sink `{sink}` is not connected"));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }

    /// `/api/rates`: each node's output rate, sampled by the [`Observer`] every second.
    ///
    /// Why here and not in the page from `/metrics`: a browser's timers are throttled in
    /// a background tab (and run on virtual time in a headless one), so rates the page
    /// took from its own polls would show its polling, not the run. The sampler's
    /// clock is the run's.
    fn rates_json(&self) -> serde_json::Value {
        let rates = self
            .node_rates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        serde_json::json!({ "window_s": RATE_WINDOW, "nodes": &*rates })
    }

    /// The `/metrics` text now.
    pub(crate) fn metrics_text(&self) -> String {
        prometheus::render(&prometheus::Scrape {
            counters: self.metrics.snapshot(),
            gauges: self.metrics.gauges(),
            now_ms: smartgrid_runtime::clock::now_ms(),
            readings_per_second: self.readings_per_second(),
        })
    }
}

/// The thread that samples the readings rate every second and logs the status line.
pub(crate) struct Observer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Observer {
    /// Start sampling; a status line every `status_every` (never if zero).
    pub(crate) fn start(view: Arc<View>, status_every: Duration) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("smartgrid-observe".into())
            .spawn(move || sample(&view, status_every, &flag))
            .context("cannot start the status thread")?;
        Ok(Observer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sample(view: &View, status_every: Duration, stop: &AtomicBool) {
    let mut window: std::collections::VecDeque<(Instant, u64)> = Default::default();
    let mut outputs: std::collections::VecDeque<(Instant, BTreeMap<String, u64>)> =
        Default::default();
    let mut status = status::StatusLine::new(Instant::now());
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            next = now + Duration::from_secs(1);
            let counters = view.metrics.snapshot();
            let gauges = view.metrics.gauges();
            let total = view.readings_total(&counters, &gauges);
            window.push_back((now, total));
            if window.len() > RATE_WINDOW + 1 {
                window.pop_front();
            }
            if let (Some(first), Some(last)) = (window.front(), window.back()) {
                let seconds = last.0.duration_since(first.0).as_secs_f64();
                let rate = if seconds > 0.0 {
                    (last.1 - first.1) as f64 / seconds
                } else {
                    0.0
                };
                view.rate.store(rate.to_bits(), Ordering::Relaxed);
            }
            outputs.push_back((now, records_out(&counters)));
            if outputs.len() > RATE_WINDOW + 1 {
                outputs.pop_front();
            }
            if let (Some(first), Some(last)) = (outputs.front(), outputs.back()) {
                let rates = rates_between(first, last);
                *view
                    .node_rates
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = rates;
            }
            if !status_every.is_zero() && status.due(now, status_every) {
                let line = status.line(view, now, total, &counters, &gauges);
                tracing::info!("status: {line}");
            }
        }
        // Short naps, so the run's end is not held up by a whole sampling period.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each node's `records_out` counter in `counters`, by node.
fn records_out(counters: &[(String, u64)]) -> BTreeMap<String, u64> {
    let suffix = format!(".{}", smartgrid_runtime::render::RECORDS_OUT);
    counters
        .iter()
        .filter_map(|(name, value)| Some((name.strip_suffix(&suffix)?.to_owned(), *value)))
        .collect()
}

/// Records per second of each node of `last` since `first` (0 over no time).
fn rates_between(
    first: &(Instant, BTreeMap<String, u64>),
    last: &(Instant, BTreeMap<String, u64>),
) -> BTreeMap<String, f64> {
    let seconds = last.0.duration_since(first.0).as_secs_f64();
    last.1
        .iter()
        .map(|(node, &now)| {
            let then = first.1.get(node).copied().unwrap_or(0);
            let rate = if seconds > 0.0 {
                now.saturating_sub(then) as f64 / seconds
            } else {
                0.0
            };
            (node.clone(), rate)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_rates_are_counter_deltas_over_the_time_between() {
        let counters = vec![
            ("means.records_out".to_owned(), 10),
            ("means.windows".to_owned(), 99),
            ("readings.records_out".to_owned(), 100),
        ];
        let start = Instant::now();
        let first = (start, records_out(&counters));
        assert_eq!(first.1.len(), 2);
        let mut later = first.1.clone();
        later.insert("means".into(), 30);
        later.insert("predictions".into(), 4);
        let rates = rates_between(&first, &(start + Duration::from_secs(2), later));
        assert_eq!(rates["means"], 10.0);
        assert_eq!(rates["readings"], 0.0);
        assert_eq!(rates["predictions"], 2.0);
        assert_eq!(rates_between(&first, &first)["means"], 0.0);
    }
}
