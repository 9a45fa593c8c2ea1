//! The one place that turns an [`MqttConfig`] into rumqttc's [`MqttOptions`]: broker
//! address, TLS (rustls with the `ring` provider), credentials and session settings.
//! The subscriber and the publisher both connect through here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::config::{Endpoint, MqttConfig};
use super::embedded;
use super::error::MqttError;

/// The largest packet sent or accepted (matches the embedded broker's limit).
pub const MAX_PACKET_SIZE: usize = 1024 * 1024;

/// rumqttc options for `cfg` under `client_id`, plus `host:port` for messages.
///
/// `url: embedded` starts the process's embedded broker if it is not running yet. TLS
/// files are read here, so a missing or malformed file is reported before any thread
/// starts. Manual acks, inflight and the request channel are left to the caller.
pub fn mqtt_options(cfg: &MqttConfig, client_id: &str) -> Result<(MqttOptions, String), MqttError> {
    cfg.check()?;
    let (host, port, tls) = match cfg.endpoint()? {
        Endpoint::Embedded => {
            let addr = embedded::embedded_broker()?;
            (addr.ip().to_string(), addr.port(), false)
        }
        Endpoint::Remote { host, port, tls } => (host, port, tls),
    };
    let broker = format!("{host}:{port}");
    let mut options = MqttOptions::new(client_id, host, port);
    options
        // validate() keeps keep_alive at 0 or within 1..=65535 s, so this cannot panic.
        .set_keep_alive(Duration::from_secs(cfg.keep_alive.0.as_secs()))
        .set_clean_session(cfg.clean_session)
        .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE);
    if let Some(username) = &cfg.username {
        options.set_credentials(username.clone(), cfg.password.clone().unwrap_or_default());
    }
    if tls {
        let config = tls_client_config(cfg)?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    Ok((options, broker))
}

/// A rustls client config using the `ring` provider: roots from `ca_file` (else the
/// system's trusted roots), and a client certificate if configured.
pub fn tls_client_config(cfg: &MqttConfig) -> Result<ClientConfig, MqttError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            for cert in read_certs("ca_file", path)? {
                roots.add(cert).map_err(|e| MqttError::TlsPem {
                    key: "ca_file",
                    path: path.clone(),
                    message: format!("not a usable CA certificate: {e}"),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let detail = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(MqttError::Tls(format!(
                    "no trusted CA certificates found on this system{detail}; \
                     set `ca_file` to the PEM file of the CA that signed the broker's certificate"
                )));
            }
        }
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&cfg.client_cert, &cfg.client_key) {
        (Some(cert_path), Some(key_path)) => {
            let certs = read_certs("client_cert", cert_path)?;
            let key = read_key(key_path)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| MqttError::TlsPem {
                    key: "client_key",
                    path: key_path.clone(),
                    message: format!("does not fit client_cert: {e}"),
                })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(MqttError::InvalidConfig {
            key: "client_cert",
            message: "a client certificate needs `client_key`".into(),
        }),
        (None, Some(_)) => Err(MqttError::InvalidConfig {
            key: "client_key",
            message: "a client key needs `client_cert`".into(),
        }),
    }
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, MqttError> {
    std::fs::read(path).map_err(|e| MqttError::TlsFile {
        key,
        path: path.to_path_buf(),
        source: Arc::new(e),
    })
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, MqttError> {
    let pem = read_file(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MqttError::TlsPem {
            key,
            path: path.to_path_buf(),
            message: format!("not valid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(MqttError::TlsPem {
            key,
            path: path.to_path_buf(),
            message: "holds no `BEGIN CERTIFICATE` section".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, MqttError> {
    let pem = read_file("client_key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| MqttError::TlsPem {
        key: "client_key",
        path: path.to_path_buf(),
        message: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no private key (PKCS#8, PKCS#1 or SEC1 PEM section)".into()
            }
            other => format!("not valid PEM: {other}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_url_gives_host_and_port() {
        let mut cfg = MqttConfig::new("mqtt://127.0.0.1:18830");
        cfg.username = Some("meter".into());
        cfg.password = Some("pw".into());
        let (options, broker) = mqtt_options(&cfg, "id-1").expect("valid");
        assert_eq!(broker, "127.0.0.1:18830");
        assert_eq!(options.broker_address(), ("127.0.0.1".to_string(), 18830));
        assert_eq!(options.client_id(), "id-1");
        assert!(!options.clean_session());
        assert_eq!(options.keep_alive(), Duration::from_secs(30));
        assert!(options.credentials().is_some());
        assert!(matches!(options.transport(), Transport::Tcp));
    }

    #[test]
    fn missing_ca_file_names_the_path() {
        let mut cfg = MqttConfig::new("mqtts://localhost:8883");
        cfg.ca_file = Some("/nonexistent/ca.pem".into());
        let err = mqtt_options(&cfg, "id").expect_err("no such file");
        let text = err.to_string();
        assert!(
            text.contains("ca_file") && text.contains("/nonexistent/ca.pem"),
            "{text}"
        );
    }

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let mut cfg = MqttConfig::new("mqtts://localhost:8883");
        cfg.ca_file = Some(path);
        let err = mqtt_options(&cfg, "id").expect_err("empty");
        assert!(err.to_string().contains("no `BEGIN CERTIFICATE`"), "{err}");
    }

    #[test]
    fn without_ca_file_the_system_roots_are_used() {
        let cfg = MqttConfig::new("mqtts://localhost:8883");
        match tls_client_config(&cfg) {
            Ok(_) => {}
            // A machine without a CA bundle: the error must say what to do.
            Err(e) => assert!(e.to_string().contains("ca_file"), "{e}"),
        }
    }

    #[test]
    fn invalid_config_is_refused_before_connecting() {
        let mut cfg = MqttConfig::new("mqtt://127.0.0.1:1883");
        cfg.qos = 2;
        let err = mqtt_options(&cfg, "id").expect_err("qos 2");
        assert!(
            matches!(err, MqttError::InvalidConfig { key: "qos", .. }),
            "{err}"
        );
    }
}
