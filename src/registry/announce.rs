//! Telling devices about the active model: a retained MQTT message whose payload is
//! [`Announcement::to_json`] — the signed manifest and the URL of the model's bytes.
//! Retained, so a device that connects later still gets the current model.

use std::time::{Duration, Instant};

use anyhow::Context;
use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};
use smartgrid_models::signing::announcement::Announcement;
use smartgrid_models::signing::manifest::Manifest;

use super::MODEL_FILE;

/// How long a publish may take before it is an error.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Where announcements go.
#[derive(Debug, Clone)]
pub struct Target {
    /// `mqtt://host:port`.
    pub broker: String,
    pub topic: String,
    /// `http://host:port` of `registry serve` (or a blob container's URL).
    pub base_url: String,
    /// Appended to each model URL after `?`: a read-only SAS token when `base_url` is
    /// a blob container (see `registry push`). A secret to everyone but the devices:
    /// published, never printed.
    pub url_query: Option<String>,
}

/// The announcement of `manifest` for `target`.
pub fn announcement(target: &Target, manifest: &Manifest) -> Announcement {
    Announcement {
        url: format!(
            "{}/models/{}/{MODEL_FILE}{}",
            target.base_url.trim_end_matches('/'),
            manifest.version,
            target
                .url_query
                .as_deref()
                .map(|q| format!("?{}", q.trim_start_matches('?')))
                .unwrap_or_default()
        ),
        manifest: manifest.clone(),
    }
}

/// Publish the announcement of `manifest`, retained, QoS 1, and wait for the broker's
/// acknowledgement.
pub fn publish(target: &Target, manifest: &Manifest) -> anyhow::Result<Announcement> {
    let announcement = announcement(target, manifest);
    let url = url::Url::parse(&target.broker)
        .with_context(|| format!("announce.broker {:?} is not a URL", target.broker))?;
    anyhow::ensure!(
        url.scheme() == "mqtt",
        "announce.broker: only mqtt:// is supported here, not {}://",
        url.scheme()
    );
    let host = url.host_str().context("announce.broker: no host")?;
    let port = url.port().unwrap_or(1883);
    let mut options = MqttOptions::new(
        format!("smartgrid-announce-{}", std::process::id()),
        host,
        port,
    );
    options.set_keep_alive(Duration::from_secs(10));
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = Client::new(options, 10);
    client
        .publish(
            &target.topic,
            QoS::AtLeastOnce,
            true,
            announcement.to_json().into_bytes(),
        )
        .context("queueing the announcement")?;
    let deadline = Instant::now() + TIMEOUT;
    let mut acknowledged = false;
    while Instant::now() < deadline {
        match connection.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => {
                acknowledged = true;
                let _ = client.disconnect();
            }
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) if acknowledged => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if acknowledged {
                    break;
                }
                anyhow::bail!("announcing on {}: {e}", target.broker)
            }
            Err(_) => break,
        }
    }
    anyhow::ensure!(
        acknowledged,
        "announcing on {}: no acknowledgement within {TIMEOUT:?}",
        target.broker
    );
    Ok(announcement)
}

/// `url` without its query (what is printed: a SAS token stays out of logs).
pub fn shown_url(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}
