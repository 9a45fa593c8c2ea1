//! One write request, and what its answer means for the batch.
//!
//! Direct HTTP with `ureq` (a small blocking client; the writer is its own thread, so no
//! async runtime is needed), which gives the control the sink needs: the exact status,
//! the `Retry-After` header, the error body, gzip bodies and the precision parameter.

use std::io::Write as _;
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::config::{Endpoint, InfluxApi};
use crate::formats::Precision;
use crate::io::TlsConfig;

/// What the server's answer means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: stored.
    Accepted,
    /// 4xx about the data (400, 413, 422, …): sending it again cannot help.
    Rejected { status: u16, message: String },
    /// 401, 403, 404 (no such org, bucket or database): a configuration problem; the
    /// batch waits in the spool until someone fixes it.
    Misconfigured { status: u16, message: String },
    /// The server is down or busy (connection errors, 5xx, 408, 429): try again, not
    /// before `after` if the server said so.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

/// Sends batches of line protocol to one server.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    url: String,
    /// The `Authorization` header value, if any. Never logged.
    authorization: Option<String>,
    /// The credentials in every form a server could echo, longest first (see `scrub`).
    secrets: Vec<String>,
    gzip: bool,
}

impl Client {
    /// A client for `endpoint` speaking `api`; with `tls`, its CA and client
    /// certificate are read here (a problem names the file).
    pub fn new(
        endpoint: &Endpoint,
        api: &InfluxApi,
        precision: Precision,
        gzip: bool,
        timeout: Duration,
        tls: Option<&TlsConfig>,
    ) -> Result<Self, String> {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let path = match api {
            InfluxApi::V2 { org, bucket, .. } => {
                query.append_pair("org", org);
                query.append_pair("bucket", bucket);
                query.append_pair("precision", precision.as_str());
                "/api/v2/write"
            }
            InfluxApi::V1 { db, rp, .. } => {
                query.append_pair("db", db);
                if let Some(rp) = rp {
                    query.append_pair("rp", rp);
                }
                // InfluxDB 1.x spells nanoseconds and microseconds `n` and `u`.
                let p = match precision {
                    Precision::Ns => "n",
                    Precision::Us => "u",
                    other => other.as_str(),
                };
                query.append_pair("precision", p);
                "/write"
            }
        };
        let authorization = match api {
            InfluxApi::V2 { token, .. } => token
                .as_deref()
                .filter(|t| !t.is_empty())
                .map(|t| format!("Token {t}")),
            InfluxApi::V1 { credentials, .. } => credentials.as_ref().map(|(user, password)| {
                let pair = format!("{user}:{}", password.as_deref().unwrap_or(""));
                format!("Basic {}", base64(pair.as_bytes()))
            }),
        };
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("smartgrid/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = tls {
            config = config.tls_config(tls_config(tls)?);
        }
        let mut secrets: Vec<String> = Vec::new();
        match api {
            InfluxApi::V2 { token, .. } => secrets.extend(token.iter().cloned()),
            InfluxApi::V1 { credentials, .. } => {
                if let Some((_, Some(password))) = credentials {
                    secrets.push(password.clone());
                }
            }
        }
        // The header's own encodings too: a server may echo the header it was sent.
        secrets.extend(authorization.iter().filter_map(|a| {
            a.split_once(' ')
                .map(|(_, credential)| credential.to_string())
        }));
        let encoded: Vec<String> = secrets
            .iter()
            .map(|s| url::form_urlencoded::byte_serialize(s.as_bytes()).collect())
            .collect();
        secrets.extend(encoded);
        secrets.retain(|s| s.len() >= 3);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Ok(Self {
            agent: config.build().into(),
            url: format!("{}{path}?{}", endpoint.base, query.finish()),
            authorization,
            secrets,
            gzip,
        })
    }

    /// `text` (a server's answer, a transport error) with every credential this client
    /// sends replaced by `***`: a server that echoes the request must not put the token
    /// into the log or a dead-letter file.
    fn scrub(&self, mut text: String) -> String {
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }

    /// The body to send for `lines` (compressed when `gzip` is on).
    pub fn body(&self, lines: &[u8]) -> Vec<u8> {
        if !self.gzip {
            return lines.to_vec();
        }
        let mut encoder = GzEncoder::new(Vec::with_capacity(lines.len() / 4), Compression::fast());
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(lines);
        encoder.finish().unwrap_or_default()
    }

    /// Send one prepared body (see [`Client::body`]).
    pub fn send(&self, body: &[u8]) -> Outcome {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if self.gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        let mut response = match request.send(body) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    reason: self.scrub(e.to_string()),
                    after: None,
                };
            }
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Outcome::Accepted;
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let message = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default()
            .trim()
            .to_string();
        classify(status, self.scrub(message), retry_after)
    }

    /// The write URL (it holds no secret: credentials go in a header).
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// What a non-2xx status means.
pub fn classify(status: u16, message: String, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Accepted,
        401 | 403 | 404 => Outcome::Misconfigured { status, message },
        408 | 429 => Outcome::Retry {
            reason: format!("HTTP {status}: {message}"),
            after: retry_after,
        },
        400..=499 => Outcome::Rejected { status, message },
        _ => Outcome::Retry {
            reason: format!("HTTP {status}: {message}"),
            after: retry_after,
        },
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// ureq's TLS settings for `tls`: its CA instead of the system's roots, and a client
/// certificate if one is given.
fn tls_config(tls: &TlsConfig) -> Result<ureq::tls::TlsConfig, String> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts};
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let certs = |path: &std::path::Path| -> Result<Vec<Certificate<'static>>, String> {
        let pem = read(path)?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        Ok(certs)
    };
    let mut builder = ureq::tls::TlsConfig::builder();
    if let Some(ca) = &tls.ca_file {
        builder = builder.root_certs(RootCerts::new_with_certs(&certs(ca)?));
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        let key = PrivateKey::from_pem(&read(key)?)
            .map_err(|e| format!("{} holds no usable private key: {e}", key.display()))?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&certs(cert)?, key)));
    }
    Ok(builder.build())
}

/// Standard base64 with padding (for the basic-auth header).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify(204, String::new(), None), Outcome::Accepted);
        assert!(matches!(
            classify(400, "bad".into(), None),
            Outcome::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            classify(413, String::new(), None),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(
            classify(422, String::new(), None),
            Outcome::Rejected { .. }
        ));
        for s in [401, 403, 404] {
            assert!(
                matches!(
                    classify(s, String::new(), None),
                    Outcome::Misconfigured { .. }
                ),
                "{s}"
            );
        }
        let after = Some(Duration::from_secs(7));
        assert_eq!(
            classify(429, "slow down".into(), after),
            Outcome::Retry {
                reason: "HTTP 429: slow down".into(),
                after
            }
        );
        assert!(matches!(
            classify(503, String::new(), after),
            Outcome::Retry { after: Some(_), .. }
        ));
        assert!(matches!(
            classify(500, String::new(), None),
            Outcome::Retry { after: None, .. }
        ));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        // 2015-10-21 07:28:00 GMT is `now`; 07:28:30 is 30 s later.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
