//! The HTTP listener of `smartgrid run --http ADDR` (or `http:` in the pipeline file):
//!
//! * `GET /metrics`: every counter and gauge, Prometheus text format;
//! * `GET /health`: 200 while the process is alive;
//! * `GET /ready`: 200 when every source is connected and subscribed and no sink fails
//!   past its retries; 503 with the reason otherwise;
//! * `GET /tap/<node>?count=N`: up to N (default 10, at most 1000) of the node's records
//!   from now on, as JSON lines, within 2 seconds (`smartgrid tap` asks again and again);
//! * `GET /`: the status page (one self-contained HTML file, `status.html`), which polls
//! * `GET /api/graph`: the nodes (name, kind, layer) and edges, and the compare nodes;
//! * `GET /api/rates`: each node's output, records per second over the last seconds;
//! * `GET /api/errors`: the last WARN and ERROR log events;
//! * `GET /api/compare?node=N&sensor=S`: the last predicted and actual values of a
//!   sensor from a compare node (default: the first compare node, the first sensor).
//!
//! axum on a current-thread tokio runtime of its own thread: axum and tokio are
//! already built for the embedded broker, and a scrape never competes with a worker.

use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::View;
use super::prometheus::CONTENT_TYPE;

/// The running listener; dropping it stops it.
pub(crate) struct Listener {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Serve `view` on `listener` (bound already, non-blocking) from a new thread.
    pub(crate) fn start(listener: std::net::TcpListener, view: Arc<View>) -> anyhow::Result<Self> {
        let addr = listener.local_addr().context("the HTTP listener")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .context("cannot start the HTTP listener's runtime")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/tap/:node", get(tap))
            .route("/", get(page))
            .route("/api/graph", get(graph))
            .route("/api/errors", get(errors))
            .route("/api/rates", get(rates))
            .route("/api/compare", get(compare))
            .with_state(view);
        let thread = std::thread::Builder::new()
            .name("smartgrid-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("the HTTP listener on {addr} failed: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        served = axum::serve(listener, app) => {
                            if let Err(e) = served {
                                tracing::error!("the HTTP listener on {addr} failed: {e}");
                            }
                        }
                        _ = stopped => {}
                    }
                });
            })
            .context("cannot start the HTTP listener's thread")?;
        tracing::info!("serving /metrics, /health, /ready and /tap on http://{addr}");
        tracing::info!("status page on http://{addr}/");
        Ok(Listener {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn metrics(State(view): State<Arc<View>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], view.metrics_text())
}

async fn health() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn ready(State(view): State<Arc<View>>) -> impl IntoResponse {
    match view.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

/// How long one `/tap` request collects records at most.
const TAP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn tap(
    State(view): State<Arc<View>>,
    Path(node): Path<String>,
    RawQuery(query): RawQuery,
) -> impl IntoResponse {
    let count = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("count=")?.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 1000);
    let Some(rx) = view.taps.listen(&node) else {
        let nodes = view.taps.nodes().join(", ");
        return (
            StatusCode::NOT_FOUND,
            format!("no node `{node}` with an output here (nodes: {nodes})\n"),
        );
    };
    // The channel is a std one (the runtime has no tokio): wait for it off the runtime.
    let lines = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + TAP_WAIT;
        let mut lines = String::new();
        for _ in 0..count {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    lines.push_str(&line);
                    lines.push('\n');
                }
                Err(_) => break,
            }
        }
        lines
    })
    .await
    .unwrap_or_default();
    (StatusCode::OK, lines)
}

/// The status page: HTML, CSS and script in one file, nothing fetched from elsewhere.
const PAGE: &str = include_str!("status.html");

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

fn json_response(value: &serde_json::Value) -> axum::response::Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn graph(State(view): State<Arc<View>>) -> impl IntoResponse {
    json_response(&view.shape.to_json())
}

async fn rates(State(view): State<Arc<View>>) -> impl IntoResponse {
    json_response(&view.rates_json())
}

async fn errors() -> impl IntoResponse {
    json_response(&super::recent::to_json())
}

/// The value of `key` in a query string (`%xx` and `+` decoded).
fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    let raw = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))?;
    let raw = raw.replace('+', " ");
    percent_decode(&raw).filter(|v| !v.is_empty())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn compare(State(view): State<Arc<View>>, RawQuery(query): RawQuery) -> impl IntoResponse {
    let node = query_value(query.as_deref(), "node")
        .or_else(|| view.shape.compare_nodes().first().map(|n| (*n).to_owned()));
    let Some(node) = node else {
        return json_response(&serde_json::json!({
            "node": null, "sensors": [], "sensor": null, "points": [],
        }));
    };
    let sensor = query_value(query.as_deref(), "sensor");
    match view.comparisons.json(&view.taps, &node, sensor.as_deref()) {
        Some(value) => json_response(&value),
        None => (
            StatusCode::NOT_FOUND,
            format!("no node `{node}` with an output here\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let query = Some("node=residuals&sensor=a%20b+c&empty=");
        assert_eq!(query_value(query, "node").as_deref(), Some("residuals"));
        assert_eq!(query_value(query, "sensor").as_deref(), Some("a b c"));
        assert_eq!(query_value(query, "empty"), None);
        assert_eq!(query_value(query, "nope"), None);
        assert_eq!(query_value(None, "node"), None);
    }
}
