//! `smartgrid registry serve DIR --listen ADDR`: the registry's models over HTTP,
//! read-only, for devices on the local network.
//!
//! * `GET /models/VERSION/model.txt`: the model file's bytes, as stored;
//! * `GET /models/VERSION/model.txt.manifest.json`: its signed manifest;
//! * `GET /models/active`: the announcement of the active version (`404` if none);
//! * anything else: `404`. Nothing is listed beyond that, nothing can be written.
//!
//! A device trusts the manifest's signature, not this server: plain HTTP is enough on
//! a network where someone could only serve bytes that fail the sha256.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{MANIFEST_FILE, MODEL_FILE, Registry, valid_version};

struct Served {
    registry: Registry,
    base_url: String,
}

/// Serve `registry` on `listen` until the process is stopped.
pub fn serve(registry: Registry, listen: &str) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    listener
        .set_nonblocking(true)
        .context("the registry listener")?;
    let addr = listener.local_addr().context("the registry listener")?;
    let served = Arc::new(Served {
        registry,
        base_url: format!("http://{addr}"),
    });
    let app = Router::new()
        .route("/models/active", get(active))
        .route("/models/:version/:file", get(file))
        .with_state(served);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("cannot start the registry server's runtime")?;
    // the address on stdout, so a script (or a test) that asked for port 0 learns it
    println!("serving the registry on http://{addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).context("the listener")?;
        axum::serve(listener, app)
            .await
            .context("the registry server")
    })
}

async fn file(
    State(served): State<Arc<Served>>,
    Path((version, file)): Path<(String, String)>,
) -> Response {
    if !valid_version(&version) || (file != MODEL_FILE && file != MANIFEST_FILE) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Ok(path) = served.registry.model_path(&version) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let path = path.with_file_name(&file);
    let read = tokio::task::spawn_blocking(move || std::fs::read(path)).await;
    match read {
        Ok(Ok(bytes)) => {
            let content_type = if file == MODEL_FILE {
                "text/plain; charset=utf-8"
            } else {
                "application/json"
            };
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn active(State(served): State<Arc<Served>>) -> Response {
    let served = Arc::clone(&served);
    let found = tokio::task::spawn_blocking(move || {
        let state = served.registry.state().ok()?;
        let version = state.active?;
        let manifest = served.registry.manifest(&version).ok()?;
        let target = super::announce::Target {
            broker: String::new(),
            topic: String::new(),
            base_url: served.base_url.clone(),
            url_query: None,
        };
        Some(super::announce::announcement(&target, &manifest).to_json())
    })
    .await
    .ok()
    .flatten();
    match found {
        Some(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
