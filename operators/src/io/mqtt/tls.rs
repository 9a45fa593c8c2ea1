//! TLS for MQTT: [`TlsOptions`] are the PEM files of a [`TlsConfig`], read and parsed
//! once (so a missing or malformed file is found when the pipeline is validated, with
//! the key that names it), and turned into a rustls client configuration (the `ring`
//! provider) when a connection is made.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use super::error::MqttError;
use crate::io::TlsConfig;

/// Parsed TLS material: the CA certificates to trust (default: the system's roots) and
/// an optional client certificate with its key. The key never shows in `Debug`.
#[derive(Clone, Default)]
pub struct TlsOptions {
    ca: Option<Vec<CertificateDer<'static>>>,
    client: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl TlsOptions {
    /// Reads and parses every file `config` names (paths as given: resolve them
    /// first). Every problem is returned, each naming its key (`ca_file`,
    /// `client_cert`, `client_key`) and file.
    pub fn load(config: &TlsConfig) -> Result<TlsOptions, Vec<MqttError>> {
        let mut errors = Vec::new();
        let ca = config
            .ca_file
            .as_deref()
            .and_then(|p| keep(read_certs("ca_file", p), &mut errors));
        let certs = config
            .client_cert
            .as_deref()
            .and_then(|p| keep(read_certs("client_cert", p), &mut errors));
        let key = config
            .client_key
            .as_deref()
            .and_then(|p| keep(read_key(p), &mut errors));
        match (&config.client_cert, &config.client_key) {
            (Some(_), None) => errors.push(MqttError::InvalidConfig {
                key: "client_cert",
                message: "a client certificate needs `client_key`".into(),
            }),
            (None, Some(_)) => errors.push(MqttError::InvalidConfig {
                key: "client_key",
                message: "a client key needs `client_cert`".into(),
            }),
            _ => {}
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let client = match (certs, key) {
            (Some(certs), Some(key)) => Some((certs, Arc::new(key))),
            _ => None,
        };
        Ok(TlsOptions { ca, client })
    }

    /// Like [`load`](Self::load), the first problem only.
    pub fn load_first(config: &TlsConfig) -> Result<TlsOptions, MqttError> {
        Self::load(config).map_err(|mut errors| errors.swap_remove(0))
    }

    /// A rustls client config using the `ring` provider: roots from the CA file (else
    /// the system's trusted roots), and the client certificate if there is one.
    pub fn client_config(&self) -> Result<ClientConfig, MqttError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some(certs) => {
                for cert in certs {
                    roots.add(cert.clone()).map_err(|e| {
                        MqttError::Tls(format!("ca_file: not a usable CA certificate: {e}"))
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
        match &self.client {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .map_err(|e| MqttError::Tls(format!("client_key does not fit client_cert: {e}"))),
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_certificates", &self.ca.as_ref().map(Vec::len))
            .field(
                "client_certificates",
                &self.client.as_ref().map(|(c, _)| c.len()),
            )
            .field("client_key", &self.client.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The value, or `None` with the error kept.
fn keep<T>(result: Result<T, MqttError>, errors: &mut Vec<MqttError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
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
    fn missing_ca_file_names_the_key_and_path() {
        let config = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let err = TlsOptions::load_first(&config).expect_err("no such file");
        let text = err.to_string();
        assert!(
            text.contains("ca_file") && text.contains("/nonexistent/ca.pem"),
            "{text}"
        );
    }

    #[test]
    fn files_without_pem_sections_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junk.pem");
        std::fs::write(&path, "not a certificate\n").expect("write");
        let config = TlsConfig {
            ca_file: Some(path.clone()),
            client_cert: Some(path.clone()),
            client_key: Some(path),
        };
        let errors = TlsOptions::load(&config).expect_err("junk");
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(texts[0].contains("no `BEGIN CERTIFICATE`"), "{texts:?}");
        assert!(texts[2].contains("holds no private key"), "{texts:?}");
    }

    #[test]
    fn a_certificate_needs_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing-key.pem");
        let config = TlsConfig {
            client_cert: Some(path),
            ..TlsConfig::default()
        };
        let errors = TlsOptions::load(&config).expect_err("no key");
        assert!(errors.iter().any(|e| matches!(
            e,
            MqttError::InvalidConfig {
                key: "client_cert",
                ..
            }
        )));
    }

    #[test]
    fn without_ca_file_the_system_roots_are_used() {
        match TlsOptions::default().client_config() {
            Ok(_) => {}
            // A machine without a CA bundle: the error must say what to do.
            Err(e) => assert!(e.to_string().contains("ca_file"), "{e}"),
        }
    }
}
