//! Telling devices about the active model: a retained MQTT message whose payload is
//! [`Announcement::to_json`] — the signed manifest and the URL of the model's bytes.
//! Retained, so a device that connects later still gets the current model.

use std::time::Duration;

use anyhow::Context;
use smartgrid_models::signing::announcement::Announcement;
use smartgrid_models::signing::manifest::Manifest;
use smartgrid_operators::io::mqtt::{Publisher, PublisherOptions, Qos};

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
    let publisher = Publisher::connect(
        &target.broker,
        format!("smartgrid-announce-{}", std::process::id()),
        PublisherOptions::default(),
    )
    .with_context(|| format!("announce.broker {:?}", target.broker))?;
    publisher
        .publish_retained(
            &target.topic,
            announcement.to_json().into_bytes(),
            Qos::AtLeastOnce,
        )
        .with_context(|| format!("announcing on {}", target.broker))?;
    publisher
        .flush_and_close(TIMEOUT)
        .with_context(|| format!("announcing on {}: not acknowledged", target.broker))?;
    Ok(announcement)
}
