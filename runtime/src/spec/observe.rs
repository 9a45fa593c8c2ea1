//! The top-level keys that say how a run can be watched: `http:` (the metrics and
//! health listener) and `status_interval:` (the status line in the log).
//!
//! ```yaml
//! http: { listen: 127.0.0.1:9898 }   # or `listen: 9898` (loopback); default: no listener
//! status_interval: 1m                # default 1m; 0 turns the status line off
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use super::{Env, Node, Spanned};
use crate::diagnostic::Diagnostic;

/// How often the status line is logged unless `status_interval:` says otherwise.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(60);

/// How a run shows itself while it goes on.
#[derive(Clone, Debug)]
pub struct ObserveSpec {
    /// The HTTP listener (`/metrics`, `/health`, `/ready`), if one is asked for.
    pub http: Option<SocketAddr>,
    /// How often the status line is logged; zero: never.
    pub status_interval: Duration,
}

impl Default for ObserveSpec {
    fn default() -> Self {
        ObserveSpec {
            http: None,
            status_interval: DEFAULT_STATUS_INTERVAL,
        }
    }
}

/// `http:` in a pipeline file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpConfig {
    /// The address to serve on: `host:port` with an IP address (`127.0.0.1:9898`,
    /// `[::1]:9898`, `0.0.0.0:9898` to be reachable from other hosts) or a port alone,
    /// which listens on loopback. Default `127.0.0.1:9898`.
    #[serde(default)]
    listen: Option<Spanned<String>>,
}

/// The default listen address: loopback, so nothing is exposed unless asked for.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9898);

/// A listen address as written: `ip:port`, `localhost:port` or a port alone (loopback).
/// Host names other than `localhost` are refused: resolving one could pick an
/// interface nobody meant to expose.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("`{text}`: the port is not a number from 0 to 65535"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!("`{text}` is not a listen address (`127.0.0.1:9898`, `[::1]:9898` or a port)")
    })
}

/// The value of `http:`.
pub(super) fn parse_http(node: &Node, env: &Env) -> Result<SocketAddr, Vec<Diagnostic>> {
    let config: HttpConfig = super::de::from_node(node, env)?;
    let Some(listen) = config.listen else {
        return Ok(DEFAULT_LISTEN);
    };
    parse_listen(&listen.value).map_err(|message| {
        vec![Diagnostic::new(listen.at, message).hint(
            "write `listen: 127.0.0.1:9898` (loopback), or `0.0.0.0:9898` to serve other hosts too",
        )]
    })
}

/// The value of `status_interval:` (`0` turns the status line off).
pub(super) fn parse_status_interval(text: &Spanned<String>) -> Result<Duration, Diagnostic> {
    if text.value.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    match text.value.parse::<super::Duration>() {
        Ok(d) if d.0.as_secs() <= 86_400 => Ok(d.0),
        Ok(_) => Err(
            Diagnostic::new(text.at, "`status_interval` is out of range")
                .hint("use a duration up to 24h, e.g. `1m`, or 0 for no status line"),
        ),
        Err(e) => Err(Diagnostic::new(text.at, e.message).hint(e.hint)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_listens_on_loopback() {
        assert_eq!(parse_listen("9898"), Ok(DEFAULT_LISTEN));
        assert_eq!(parse_listen("localhost:9898"), Ok(DEFAULT_LISTEN));
        assert_eq!(
            parse_listen("[::1]:1"),
            Ok("[::1]:1".parse().expect("an address"))
        );
        assert!(parse_listen("example.com:80").is_err());
    }
}
