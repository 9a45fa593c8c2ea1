//! The `tls:` settings every connector reads the same way.

use std::path::PathBuf;

use serde::Deserialize;

/// `tls:` of a node that connects to a server: which CA to trust and, for servers that
/// check clients by certificate, the client's certificate and key. Paths are relative
/// to the pipeline file. Without `ca_file` the system's trusted roots are used.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA that signed the server's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client's certificate (needs `client_key`).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

impl TlsConfig {
    /// The same settings with every path resolved by `resolve` (against the pipeline
    /// file's folder).
    pub fn resolved(&self, resolve: impl Fn(&std::path::Path) -> PathBuf) -> TlsConfig {
        TlsConfig {
            ca_file: self.ca_file.as_deref().map(&resolve),
            client_cert: self.client_cert.as_deref().map(&resolve),
            client_key: self.client_key.as_deref().map(&resolve),
        }
    }

    /// Each file named, with its key, for checks that it exists and parses.
    pub fn files(&self) -> impl Iterator<Item = (&'static str, &PathBuf)> {
        [
            ("ca_file", &self.ca_file),
            ("client_cert", &self.client_cert),
            ("client_key", &self.client_key),
        ]
        .into_iter()
        .filter_map(|(key, path)| Some((key, path.as_ref()?)))
    }
}
