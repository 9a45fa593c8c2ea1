//! The `tls:` settings every connector reads the same way.

use std::path::PathBuf;

use serde::Deserialize;
use smartgrid_runtime::{Location, PlanContext};

/// `tls:` of a node that connects to a server: which CA to trust and, for servers that
/// check clients by certificate, the client's certificate and key. Paths are relative
/// to the pipeline file. Without `ca_file` the system's trusted roots are used.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
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

/// Where `key` inside the table at `table` stands in the node's settings (the table's
/// key, or the node, when either is absent): problems found after deserializing point
/// at the value at fault.
pub fn nested_key_at(ctx: &PlanContext<'_>, table: &str, key: &str) -> Location {
    ctx.node
        .settings
        .entries()
        .iter()
        .find(|(k, _)| k.value == table)
        .and_then(|(_, v)| v.entries().iter().find(|(k, _)| k.value == key))
        .map_or_else(|| ctx.node.key_at(table), |(_, v)| v.at)
}

/// `tls` with its paths resolved against the pipeline file's folder; a problem for each
/// file that does not exist (`ca_hint` says what the CA is, for this kind), and for a
/// client certificate without its key or the other way round.
pub fn plan_tls(tls: &TlsConfig, ctx: &mut PlanContext<'_>, ca_hint: &str) -> Option<TlsConfig> {
    let resolved = tls.resolved(|p| ctx.resolve(p));
    let mut ok = true;
    for (key, path) in resolved.files() {
        if !path.is_file() {
            let at = nested_key_at(ctx, "tls", key);
            ctx.error(at, format!("no such file: {}", path.display()))
                .with_hint(if key == "ca_file" {
                format!(
                    "give the PEM file of the CA that signed {ca_hint} (relative paths start at the pipeline file's folder), or remove `tls.ca_file` to use the system's trusted roots"
                )
            } else {
                "give the client's PEM certificate and its unencrypted key (relative paths start at the pipeline file's folder)".to_string()
            });
            ok = false;
        }
    }
    if resolved.client_cert.is_some() != resolved.client_key.is_some() {
        ctx.error_at_key("tls", "`client_cert` and `client_key` go together")
            .with_hint("give both, or neither");
        ok = false;
    }
    if ok {
        // The files exist: they must also hold what they are named for, or the first
        // connection would fail long after `validate` said yes.
        if let Err(errors) = super::mqtt::TlsOptions::load(&resolved) {
            for error in errors {
                if let super::mqtt::MqttError::TlsPem { key, path, message } = error {
                    let at = nested_key_at(ctx, "tls", key);
                    ctx.error(at, format!("{} {message}", path.display()))
                        .with_hint("give a PEM file (`-----BEGIN …-----`)");
                    ok = false;
                }
            }
        }
    }
    ok.then_some(resolved)
}
