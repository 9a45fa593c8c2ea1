//! The device connection string the Azure portal shows for a device (or a module):
//! `HostName=…;DeviceId=…;SharedAccessKey=…`, optionally `ModuleId=…` and, behind an
//! IoT Edge gateway, `GatewayHostName=…`. A device that authenticates by X.509
//! certificate has `x509=true` instead of a key.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A device's symmetric key: the base64 text from the connection string and the bytes
/// it decodes to (the HMAC key). Never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedAccessKey {
    bytes: Vec<u8>,
}

impl SharedAccessKey {
    /// Decodes a base64 key as IoT Hub shows it.
    pub fn from_base64(text: &str) -> Result<Self, ConnectionStringError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| ConnectionStringError::KeyNotBase64)?;
        if bytes.is_empty() {
            return Err(ConnectionStringError::Empty("SharedAccessKey"));
        }
        Ok(SharedAccessKey { bytes })
    }

    /// The decoded key bytes (the HMAC-SHA256 key).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for SharedAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How a device proves who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A symmetric key: the client signs SAS tokens with it.
    SharedAccessKey(SharedAccessKey),
    /// `x509=true`: a TLS client certificate (configured separately as `x509`).
    X509,
}

/// A parsed device (or module) connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionString {
    /// The hub, e.g. `myhub.azure-devices.net`: the SAS resource and the user name.
    pub host_name: String,
    /// The device's id (the MQTT client id).
    pub device_id: String,
    /// A module identity of the device, if the string is a module's.
    pub module_id: Option<String>,
    /// The IoT Edge gateway to connect to instead of the hub (the hub stays in the
    /// user name and the SAS resource).
    pub gateway_host_name: Option<String>,
    /// The key, or `x509=true`.
    pub credential: Credential,
}

/// Why a connection string was refused. The key's value is never part of a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    /// A `;`-separated part without `=`.
    #[error("`{0}` is not a `Name=value` pair")]
    NotAPair(String),
    /// A part name that device connection strings do not have.
    #[error("unknown part `{0}`")]
    UnknownPart(String),
    /// A part given twice.
    #[error("`{0}` is given twice")]
    Duplicate(&'static str),
    /// A required part is missing.
    #[error("`{0}` is missing")]
    Missing(&'static str),
    /// A part is present but empty.
    #[error("`{0}` is empty")]
    Empty(&'static str),
    /// The key is not base64.
    #[error("`SharedAccessKey` is not valid base64")]
    KeyNotBase64,
    /// Both or neither of a key and `x509=true`.
    #[error("{0}")]
    Credential(&'static str),
    /// A hub-level (service) connection string was given.
    #[error(
        "this is a service (shared access policy) connection string, not a device's; \
         `SharedAccessKeyName` does not belong in a device connection string"
    )]
    ServicePolicy,
    /// A pre-made token instead of a key: it expires and cannot be renewed.
    #[error(
        "`SharedAccessSignature` (a pre-made token) is not supported: it expires and \
         cannot be renewed; use the device's `SharedAccessKey`"
    )]
    PremadeToken,
    /// A value with characters that cannot appear in it.
    #[error("`{0}` holds characters that are not allowed there")]
    BadCharacters(&'static str),
}

impl ConnectionString {
    /// The MQTT client id: the device id, or `{device}/{module}`.
    pub fn client_id(&self) -> String {
        match &self.module_id {
            Some(module) => format!("{}/{module}", self.device_id),
            None => self.device_id.clone(),
        }
    }

    /// The host to connect to: the gateway if there is one, else the hub.
    pub fn connect_host(&self) -> &str {
        self.gateway_host_name.as_deref().unwrap_or(&self.host_name)
    }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut host_name = None;
        let mut device_id = None;
        let mut module_id = None;
        let mut gateway = None;
        let mut key = None;
        let mut x509 = None;
        for part in text.trim().split(';').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            // The key's base64 may end in `=`, so split at the first `=` only.
            let Some((name, value)) = part.split_once('=') else {
                // Never echo something that could be a key.
                let shown = if part.len() > 24 { "…" } else { part };
                return Err(ConnectionStringError::NotAPair(shown.to_string()));
            };
            let value = value.trim();
            let slot = match name.trim() {
                "HostName" => (&mut host_name, "HostName"),
                "DeviceId" => (&mut device_id, "DeviceId"),
                "ModuleId" => (&mut module_id, "ModuleId"),
                "GatewayHostName" => (&mut gateway, "GatewayHostName"),
                "SharedAccessKey" => (&mut key, "SharedAccessKey"),
                "x509" | "X509" => (&mut x509, "x509"),
                "SharedAccessKeyName" => return Err(ConnectionStringError::ServicePolicy),
                "SharedAccessSignature" => return Err(ConnectionStringError::PremadeToken),
                other => {
                    // A long or odd name may be a pasted key: do not echo it.
                    let plain =
                        other.len() <= 24 && other.chars().all(|c| c.is_ascii_alphanumeric());
                    let shown = if plain { other } else { "…" };
                    return Err(ConnectionStringError::UnknownPart(shown.to_string()));
                }
            };
            if slot.0.is_some() {
                return Err(ConnectionStringError::Duplicate(slot.1));
            }
            if value.is_empty() {
                return Err(ConnectionStringError::Empty(slot.1));
            }
            *slot.0 = Some(value.to_string());
        }
        let host_name = host_name.ok_or(ConnectionStringError::Missing("HostName"))?;
        let device_id = device_id.ok_or(ConnectionStringError::Missing("DeviceId"))?;
        check_host("HostName", &host_name)?;
        if let Some(gateway) = &gateway {
            check_host("GatewayHostName", gateway)?;
        }
        // Ids become MQTT topic levels: `/`, `+` and `#` would change the topics.
        for (name, id) in [
            ("DeviceId", Some(&device_id)),
            ("ModuleId", module_id.as_ref()),
        ] {
            if let Some(id) = id
                && id
                    .chars()
                    .any(|c| matches!(c, '/' | '+' | '#') || c.is_control())
            {
                return Err(ConnectionStringError::BadCharacters(name));
            }
        }
        let x509 = match x509.as_deref() {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                return Err(ConnectionStringError::Credential(
                    "`x509` must be `true` or `false`",
                ));
            }
        };
        let credential = match (key, x509) {
            (Some(key), false) => Credential::SharedAccessKey(SharedAccessKey::from_base64(&key)?),
            (None, true) => Credential::X509,
            (Some(_), true) => {
                return Err(ConnectionStringError::Credential(
                    "both `SharedAccessKey` and `x509=true` are given; a device uses one",
                ));
            }
            (None, false) => {
                return Err(ConnectionStringError::Credential(
                    "`SharedAccessKey` is missing (or `x509=true` for a certificate device)",
                ));
            }
        };
        Ok(ConnectionString {
            host_name,
            device_id,
            module_id,
            gateway_host_name: gateway,
            credential,
        })
    }
}

fn check_host(name: &'static str, host: &str) -> Result<(), ConnectionStringError> {
    if host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        Ok(())
    } else {
        Err(ConnectionStringError::BadCharacters(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    #[test]
    fn a_device_string() {
        let cs: ConnectionString =
            format!("HostName=myhub.azure-devices.net;DeviceId=meter-7;SharedAccessKey={KEY}")
                .parse()
                .expect("valid");
        assert_eq!(cs.host_name, "myhub.azure-devices.net");
        assert_eq!(cs.device_id, "meter-7");
        assert_eq!(cs.client_id(), "meter-7");
        assert_eq!(cs.connect_host(), "myhub.azure-devices.net");
        match &cs.credential {
            Credential::SharedAccessKey(key) => {
                assert_eq!(key.bytes(), b"0123456789abcdef0123456789abcdef");
            }
            other => panic!("unexpected {other:?}"),
        }
        let shown = format!("{cs:?}");
        assert!(
            !shown.contains(KEY) && !shown.contains("0123456789abcdef"),
            "{shown}"
        );
    }

    #[test]
    fn module_gateway_and_x509() {
        let cs: ConnectionString = format!(
            " HostName=h.azure-devices.net; DeviceId=d; ModuleId=m; GatewayHostName=edge.local; SharedAccessKey={KEY};"
        )
        .parse()
        .expect("valid");
        assert_eq!(cs.client_id(), "d/m");
        assert_eq!(cs.connect_host(), "edge.local");
        assert_eq!(cs.host_name, "h.azure-devices.net");

        let cs: ConnectionString = "HostName=h;DeviceId=d;x509=true".parse().expect("valid");
        assert_eq!(cs.credential, Credential::X509);
    }

    #[test]
    fn clear_errors_that_never_show_the_key() {
        use ConnectionStringError as E;
        let cases: Vec<(String, E)> = vec![
            (
                "DeviceId=d;SharedAccessKey=a2V5".into(),
                E::Missing("HostName"),
            ),
            (
                "HostName=h;SharedAccessKey=a2V5".into(),
                E::Missing("DeviceId"),
            ),
            ("HostName=h;DeviceId=d".into(), E::Credential("")),
            (
                "HostName=h;DeviceId=d;SharedAccessKey=not base64!".into(),
                E::KeyNotBase64,
            ),
            (
                "HostName=h;DeviceId=d;DeviceId=e;SharedAccessKey=a2V5".into(),
                E::Duplicate("DeviceId"),
            ),
            (
                "HostName=h;DeviceId=;SharedAccessKey=a2V5".into(),
                E::Empty("DeviceId"),
            ),
            (
                "HostName=h;DeviceId=d;Key=a2V5".into(),
                E::UnknownPart("Key".into()),
            ),
            (
                "HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5".into(),
                E::ServicePolicy,
            ),
            (
                "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=x".into(),
                E::PremadeToken,
            ),
            (
                "HostName=h;DeviceId=a/b;SharedAccessKey=a2V5".into(),
                E::BadCharacters("DeviceId"),
            ),
            (
                "HostName=h/x;DeviceId=d;SharedAccessKey=a2V5".into(),
                E::BadCharacters("HostName"),
            ),
            (
                "HostName=h;DeviceId=d;x509=true;SharedAccessKey=a2V5".into(),
                E::Credential(""),
            ),
            (
                "just-some-text".into(),
                E::NotAPair("just-some-text".into()),
            ),
        ];
        for (text, expected) in cases {
            let err = text.parse::<ConnectionString>().expect_err(&text);
            match (&err, &expected) {
                (E::Credential(_), E::Credential(_)) => {}
                _ => assert_eq!(err, expected, "{text}"),
            }
        }
        let secret = "c2VjcmV0LWtleS1ub3QtdG8tYmUtc2hvd24tYW55d2hlcmU=";
        let err = secret.parse::<ConnectionString>().expect_err("no pairs");
        assert!(!err.to_string().contains("c2Vj"), "{err}");
    }
}
