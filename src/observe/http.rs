//! The HTTP listener of `smartgrid run --http ADDR` (or `http:` in the pipeline file):
//!
//! * `GET /metrics`: every counter and gauge, Prometheus text format;
//! * `GET /health`: 200 while the process is alive;
//! * `GET /ready`: 200 when every source is connected and subscribed and no sink fails
//!   past its retries; 503 with the reason otherwise.
//!
//! axum on a current-thread tokio runtime of its own thread: axum and tokio are
//! already built for the embedded broker, and a scrape never competes with a worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::View;
use super::prometheus::CONTENT_TYPE;

/// The running listener; dropping it stops it.
pub(crate) struct Listener {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
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
        tracing::info!("serving /metrics, /health and /ready on http://{addr}");
        Ok(Listener {
            stop: Some(stop),
            thread: Some(thread),
            addr,
        })
    }

    /// The address it listens on.
    #[allow(dead_code)]
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
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
