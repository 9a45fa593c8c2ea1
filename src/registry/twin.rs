//! Announcing a model through IoT Hub device twins: the announcement's JSON becomes
//! the desired property `model` of each device's twin (service REST API,
//! `PATCH /twins/{id}`), which the device receives as a desired-properties update.
//!
//! Authorized with a service policy's SAS token (`HostName=…;SharedAccessKeyName=…;
//! SharedAccessKey=…`, e.g. the `service` policy): `SharedAccessSignature
//! sr={host}&sig=…&se=…&skn={policy}`. The key is read from the environment and never
//! printed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use smartgrid_models::signing::announcement::Announcement;
use smartgrid_operators::iothub::SharedAccessKey;
use smartgrid_operators::iothub::sas::{sas_token, url_encode};

/// Where the service connection string is read from by default.
pub const CONNECTION_STRING_ENV: &str = "IOTHUB_SERVICE_CONNECTION_STRING";

/// The service API version sent.
pub const API_VERSION: &str = "2021-04-12";

/// How long a token is valid (each announcement makes its own).
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A service connection string's parts.
pub struct ServiceConnection {
    pub host_name: String,
    pub policy: String,
    key: SharedAccessKey,
}

impl std::fmt::Debug for ServiceConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ServiceConnection({}, {}, ***)",
            self.host_name, self.policy
        )
    }
}

impl ServiceConnection {
    /// Parse `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` (in any order; other
    /// keys are ignored). Errors never quote the key.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let (mut host, mut policy, mut key) = (None, None, None);
        for part in text.trim().split(';').filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .context("an IoT Hub connection string is `Name=value` pairs separated by `;`")?;
            match name {
                "HostName" => host = Some(value.to_owned()),
                "SharedAccessKeyName" => policy = Some(value.to_owned()),
                "SharedAccessKey" => key = Some(value.to_owned()),
                _ => {}
            }
        }
        let key = key.context("the service connection string has no SharedAccessKey")?;
        Ok(ServiceConnection {
            host_name: host.context("the service connection string has no HostName")?,
            policy: policy.context(
                "the service connection string has no SharedAccessKeyName (a service policy)",
            )?,
            key: SharedAccessKey::from_base64(&key).map_err(|_| {
                anyhow::anyhow!("the service connection string's SharedAccessKey is not base64")
            })?,
        })
    }

    /// The `Authorization` header value, valid for an hour from now.
    pub fn token(&self) -> String {
        let expiry = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + TOKEN_LIFETIME.as_secs();
        format!(
            "{}&skn={}",
            sas_token(&self.host_name, &self.key, expiry),
            url_encode(&self.policy)
        )
    }
}

/// Where twin announcements go.
#[derive(Debug)]
pub struct TwinTarget {
    pub connection: ServiceConnection,
    /// The devices whose twins get the property.
    pub devices: Vec<String>,
    /// The service endpoint (default `https://{HostName}`).
    pub endpoint: Option<String>,
}

/// Set `properties.desired.model` to `announcement` on every device's twin; the first
/// failure is the error (naming the device; the token is never shown).
pub fn publish(target: &TwinTarget, announcement: &Announcement) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .user_agent(concat!("smartgrid/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let endpoint = target
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://{}", target.connection.host_name));
    let endpoint = endpoint.trim_end_matches('/');
    let body = serde_json::json!({"properties": {"desired": {"model": announcement}}}).to_string();
    for device in &target.devices {
        let url = format!(
            "{endpoint}/twins/{}?api-version={API_VERSION}",
            url_encode(device)
        );
        let mut response = agent
            .patch(&url)
            .header("Authorization", &target.connection.token())
            .header("Content-Type", "application/json")
            .header("If-Match", "*")
            .send(body.as_bytes())
            .map_err(|e| anyhow::anyhow!("updating the twin of {device}: {e}"))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let message = response
                .body_mut()
                .with_config()
                .limit(4096)
                .read_to_string()
                .unwrap_or_default();
            // a server may echo the request: never show a token, not even an old one
            let message = match message.find("SharedAccessSignature") {
                Some(at) => format!("{}***", &message[..at]),
                None => message,
            };
            anyhow::bail!(
                "updating the twin of {device}: HTTP {status}: {}",
                message.trim().chars().take(300).collect::<String>()
            );
        }
    }
    Ok(())
}
