//! `updates.iothub`: model announcements from an Azure IoT Hub device twin, decisions
//! back into it. The training side (`smartgrid retrain`, `smartgrid model promote`)
//! writes the announcement into the twin's desired property `model`; this side reads it
//! (the whole twin at every connection, then each desired patch that carries `model`)
//! and reports every decision as the reported property `model`.
//!
//! The device connection is the IoT Hub device client of the `iothub` sink
//! (`crate::iothub::DeviceClient`), owned by the controller's thread. IoT Hub keeps one
//! connection per device, and the client is not shared between nodes: a pipeline whose
//! `iothub` sink connects as the same device is refused when validated (a claim on the
//! device, see `crate::iothub::device_claim`).

use std::time::{Duration as StdDuration, Instant};

use bytes::Bytes;
use crossbeam_channel::RecvTimeoutError;
use serde::Deserialize;
use smartgrid_runtime::spec::Duration;
use smartgrid_runtime::{Location, PlanContext};

use crate::io::TlsConfig;
use crate::iothub::{
    CloudEvent, DeviceClient, DeviceClientOptions, IotHubConfig, IotHubError, MemoryStore, Outbox,
    X509Config,
};

/// The property of the twin (desired and reported) the model travels in.
const PROPERTY: &str = "model";

/// A twin GET unanswered this long is sent again: twin requests go at QoS 0, so one
/// made just before the connection dropped may be lost.
const GET_RETRY: StdDuration = StdDuration::from_secs(30);

/// `updates.iothub`: the device whose twin carries the announcements. The same
/// connection settings as the `iothub` sink.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TwinConfig {
    /// The device's connection string,
    /// `HostName=<hub>.azure-devices.net;DeviceId=<device>;SharedAccessKey=<key>` (or
    /// `x509=true`). Write it as `${IOTHUB_CONNECTION_STRING}`: it is never logged.
    pub connection_string: String,
    /// For an `x509=true` device: `{cert: device.pem, key: device.key}`.
    #[serde(default)]
    pub x509: Option<X509Config>,
    /// Connect to this host instead of the connection string's gateway or hub (the
    /// hub's name stays in the login): a local broker or a proxy.
    #[serde(default)]
    pub host: Option<String>,
    /// The MQTT-over-TLS port (default 8883).
    #[serde(
        default = "crate::iothub::default_port",
        deserialize_with = "crate::iothub::tcp_port"
    )]
    pub port: u16,
    /// `{ ca_file: hub-ca.pem }`: the CA of the hub or gateway (default: the system's
    /// roots).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// How long each SAS token is valid (default `1h`); the client reconnects with a
    /// new one after 80 % of it.
    #[serde(default = "crate::iothub::default_token_ttl")]
    pub token_ttl: Duration,
    /// MQTT keep-alive (default `60s`, between 1 s and 1177 s).
    #[serde(default = "crate::iothub::default_keep_alive")]
    pub keep_alive: Duration,
}

impl std::fmt::Debug for TwinConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwinConfig")
            .field("connection_string", &"<redacted>")
            .field("x509", &self.x509)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Check `config` as the `iothub` sink checks its connection; problems are reported at
/// `at` (the node's `updates` key), naming the key under `updates.iothub`.
pub fn plan(
    config: TwinConfig,
    at: Location,
    ctx: &mut PlanContext<'_>,
) -> Option<DeviceClientOptions> {
    let sink = IotHubConfig::connection_only(
        config.connection_string,
        config.x509,
        config.host,
        config.port,
        config.tls,
        config.token_ttl,
        config.keep_alive,
    );
    let connection = sink.validate(&mut |key, message, hint| {
        ctx.error(at, format!("`updates.iothub.{key}`: {message}"))
            .with_hint(hint);
    });
    let tls = match &sink.tls {
        Some(t) => {
            crate::io::plan_tls(t, ctx, "the hub's or the IoT Edge gateway's certificate").map(Some)
        }
        None => Some(None),
    };
    let x509 = crate::iothub::device_files(&sink, ctx);
    let (connection, tls, x509) = (connection?, tls?, x509?);
    let mut options = DeviceClientOptions::new(connection);
    options.x509 = x509;
    options.host = sink.host;
    options.port = sink.port;
    options.ca_file = tls.and_then(|t| t.ca_file);
    options.token_ttl = sink.token_ttl.0;
    options.keep_alive = sink.keep_alive.0;
    // desired patches and twin answers are few; telemetry is never sent
    options.events_capacity = 64;
    Some(options)
}

/// What the twin gave in one wait.
pub enum Next {
    /// An announcement (the JSON of the desired property `model`).
    Announced(Bytes),
    /// Nothing for the controller.
    Idle,
    /// The client stopped; no more announcements.
    Ended,
}

/// The controller's end of the device connection.
pub struct TwinLink {
    node: String,
    client: Option<DeviceClient>,
    /// Connections seen: each new one asks for the whole twin (patches sent while the
    /// device was away are not sent again).
    connections: u64,
    /// The request id of the twin GET in flight, and when it was asked.
    pending_get: Option<(String, Instant)>,
    /// The desired properties' `$version` acted on: an older patch is stale.
    desired_version: Option<u64>,
}

impl TwinLink {
    /// Start the device client (it connects in the background). It sends no telemetry:
    /// its outbox is in memory and stays empty.
    pub fn connect(node: &str, options: DeviceClientOptions) -> Result<Self, IotHubError> {
        let outbox = Outbox::new(Box::new(MemoryStore::new(1 << 20)));
        let client = DeviceClient::connect(options, outbox)?;
        Ok(TwinLink {
            node: node.to_owned(),
            client: Some(client),
            connections: 0,
            pending_get: None,
            desired_version: None,
        })
    }

    /// Wait up to `timeout` for the first connection, so that the current model is
    /// asked for before the first windows; a hub not reached by then is logged and
    /// the run goes on (the client keeps trying).
    pub fn wait_connected(&self, timeout: StdDuration) {
        if let Some(client) = &self.client
            && let Err(e) = client.wait_connected(timeout)
        {
            tracing::warn!(
                "{}: the IoT Hub is not reachable yet ({e}); the model is asked for once it is",
                self.node
            );
        }
    }

    /// Wait up to `timeout` for the next announcement.
    pub fn next(&mut self, timeout: StdDuration) -> Next {
        let Some(client) = &self.client else {
            return Next::Ended;
        };
        let stats = client.stats();
        let connections = stats.connections;
        // only while connected: a GET asked offline waits in the client's queue anyway
        let unanswered = stats.subscribed
            && self
                .pending_get
                .as_ref()
                .is_some_and(|(_, asked)| asked.elapsed() >= GET_RETRY);
        if connections > self.connections || unanswered {
            // a device that connects, or reconnects, gets the current model
            self.connections = connections;
            self.pending_get = Some((client.get_twin(), Instant::now()));
        }
        let event = match client.events().recv_timeout(timeout) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => return Next::Idle,
            Err(RecvTimeoutError::Disconnected) => return Next::Ended,
        };
        match event {
            CloudEvent::TwinResponse(response)
                if self
                    .pending_get
                    .as_ref()
                    .is_some_and(|(rid, _)| *rid == response.rid) =>
            {
                self.pending_get = None;
                if response.status != 200 {
                    tracing::warn!(
                        "{}: the hub answered the twin request with status {}; the model \
                         is read again at the next connection",
                        self.node,
                        response.status
                    );
                    return Next::Idle;
                }
                let desired = response
                    .body
                    .as_ref()
                    .and_then(|twin| twin.get("desired"))
                    .cloned()
                    .unwrap_or_default();
                self.desired_version = desired.get("$version").and_then(|v| v.as_u64());
                announcement(&desired)
            }
            CloudEvent::TwinResponse(response) => {
                if response.status >= 300 {
                    tracing::warn!(
                        "{}: the hub refused a reported-properties update (status {})",
                        self.node,
                        response.status
                    );
                }
                Next::Idle
            }
            CloudEvent::Desired(patch) => {
                if let (Some(seen), Some(version)) = (self.desired_version, patch.version)
                    && version <= seen
                {
                    tracing::debug!(
                        "{}: desired patch $version {version} is not newer than {seen}; ignored",
                        self.node
                    );
                    return Next::Idle;
                }
                if patch.version.is_some() {
                    self.desired_version = patch.version;
                }
                announcement(&patch.patch)
            }
            CloudEvent::Message(_) => {
                tracing::debug!(
                    "{}: a cloud-to-device message is not an announcement; ignored",
                    self.node
                );
                Next::Idle
            }
        }
    }

    /// Report `status` (the decision's JSON) as the reported property `model`. Queued
    /// while the device is away; never waits.
    pub fn report(&self, status: &serde_json::Value) {
        let Some(client) = &self.client else { return };
        let patch = serde_json::json!({ PROPERTY: status });
        if let Err(e) = client.report_properties(&patch) {
            tracing::warn!("{}: cannot report the model decision: {e}", self.node);
        }
    }

    /// Disconnect (decisions reported just before may not reach the hub).
    pub fn close(&mut self) {
        if let Some(client) = self.client.take()
            && let Err(e) = client.close(StdDuration::from_secs(2))
        {
            tracing::warn!("{}: closing the device connection: {e}", self.node);
        }
    }
}

/// The `model` of a desired-properties object or patch, if it carries one (`null`
/// removes the property: nothing to act on).
fn announcement(desired: &serde_json::Value) -> Next {
    match desired.get(PROPERTY) {
        Some(model) if !model.is_null() => Next::Announced(Bytes::from(model.to_string())),
        _ => Next::Idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_present_model_is_an_announcement() {
        let with = serde_json::json!({"model": {"url": "http://x", "manifest": {}}, "$version": 4});
        match announcement(&with) {
            Next::Announced(bytes) => {
                let back: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
                assert_eq!(back, with["model"]);
            }
            _ => panic!("a model is announced"),
        }
        for without in [
            serde_json::json!({"other": 1, "$version": 5}),
            serde_json::json!({"model": null}),
            serde_json::Value::Null,
        ] {
            assert!(matches!(announcement(&without), Next::Idle), "{without}");
        }
    }
}
