//! A small Azure Blob Storage client over the REST API (`ureq`, blocking): `List
//! Blobs`, `Get Blob` and `Put Blob` of one container, authorized with the account's
//! shared key (SharedKey, HMAC-SHA256 over the canonical request) or a SAS token.
//! Enough to read what IoT Hub message routing writes and to mirror the registry; no
//! SDK and no second async runtime.
//!
//! The account URL is either Azure's (`https://ACCOUNT.blob.core.windows.net`) or an
//! emulator's path-style one (`http://127.0.0.1:10000/devstoreaccount1`): the path is
//! part of the canonical resource either way.

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

/// The REST API version sent (`x-ms-version`).
const API_VERSION: &str = "2021-08-06";

/// The largest blob read (routing writes blobs of at most ~500 MB; triplets are far
/// smaller, and a larger one is refused rather than exhausting memory).
const MAX_BLOB_BYTES: u64 = 256 << 20;

/// Characters escaped in a blob name inside a URL path (`/` stays).
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How requests are authorized. Neither secret is ever printed.
#[derive(Clone)]
pub enum Auth {
    /// The account name and its key (base64, as the portal shows it).
    SharedKey { account: String, key: Vec<u8> },
    /// A SAS token (the query string, without a leading `?`).
    Sas(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::SharedKey { account, .. } => write!(f, "SharedKey({account}, ***)"),
            Auth::Sas(_) => f.write_str("Sas(***)"),
        }
    }
}

/// Why a blob request failed. Messages carry no secret: the URL is shown without
/// its query.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the account key is not base64")]
    BadKey,
    #[error("{what} {url}: {reason}")]
    Request {
        what: &'static str,
        url: String,
        reason: String,
    },
    #[error("{what} {url}: HTTP {status}: {message}")]
    Status {
        what: &'static str,
        url: String,
        status: u16,
        message: String,
    },
}

/// One container of one account.
pub struct Container {
    agent: ureq::Agent,
    /// `https://account.blob.core.windows.net/container` (no trailing slash).
    url: String,
    /// The URL's path (`/container` or `/devstoreaccount1/container`).
    path: String,
    auth: Auth,
}

impl Container {
    pub fn new(account_url: &str, container: &str, auth: Auth) -> Result<Self, BlobError> {
        let url = format!("{}/{container}", account_url.trim_end_matches('/'));
        let path = url::Url::parse(&url)
            .map_err(|e| BlobError::Request {
                what: "account URL",
                url: url.clone(),
                reason: e.to_string(),
            })?
            .path()
            .to_owned();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .user_agent(concat!("smartgrid/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Container {
            agent,
            url,
            path,
            auth,
        })
    }

    /// Names of the blobs under `prefix`, in the service's (lexicographic) order,
    /// following continuation markers.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![
                ("comp", "list".to_owned()),
                ("prefix", prefix.to_owned()),
                ("restype", "container".to_owned()),
            ];
            if !marker.is_empty() {
                query.push(("marker", marker.clone()));
            }
            let body = self.get("List Blobs", "", &query)?;
            let text = String::from_utf8_lossy(&body);
            names.extend(
                elements(&text, "Blob")
                    .filter_map(|blob| elements(blob, "Name").next())
                    .map(xml_unescape),
            );
            marker = elements(&text, "NextMarker")
                .next()
                .map(xml_unescape)
                .unwrap_or_default();
            if marker.is_empty() {
                return Ok(names);
            }
        }
    }

    /// The bytes of blob `name`.
    #[cfg_attr(not(feature = "train"), allow(dead_code))] // the triplet source reads blobs
    pub fn get_blob(&self, name: &str) -> Result<Vec<u8>, BlobError> {
        self.get("Get Blob", name, &[])
    }

    /// Write `bytes` as block blob `name` (replacing it), with `content_type`.
    pub fn put_blob(&self, name: &str, bytes: &[u8], content_type: &str) -> Result<(), BlobError> {
        self.request(
            "Put Blob",
            name,
            &[],
            Some(Upload {
                bytes,
                content_type,
            }),
        )
        .map(drop)
    }

    fn get(
        &self,
        what: &'static str,
        blob: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<u8>, BlobError> {
        self.request(what, blob, query, None)
    }

    fn request(
        &self,
        what: &'static str,
        blob: &str,
        query: &[(&str, String)],
        upload: Option<Upload<'_>>,
    ) -> Result<Vec<u8>, BlobError> {
        let blob_path = if blob.is_empty() {
            String::new()
        } else {
            format!("/{}", utf8_percent_encode(blob, PATH))
        };
        let shown = format!("{}{blob_path}", self.url);
        let mut query_text = query
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
            .collect::<Vec<_>>()
            .join("&");
        let date = httpdate::fmt_http_date(SystemTime::now());
        let mut authorization = None;
        match &self.auth {
            Auth::Sas(token) => {
                if !query_text.is_empty() {
                    query_text.push('&');
                }
                query_text.push_str(token.trim_start_matches('?'));
            }
            Auth::SharedKey { account, key } => {
                let resource = format!("{}{blob_path}", self.path);
                let to_sign = match &upload {
                    None => string_to_sign("GET", &date, account, &resource, query),
                    Some(upload) => put_string_to_sign(&date, account, &resource, upload),
                };
                authorization = Some(format!("SharedKey {account}:{}", sign(key, &to_sign)?));
            }
        }
        let url = if query_text.is_empty() {
            shown.clone()
        } else {
            format!("{shown}?{query_text}")
        };
        let sent = match &upload {
            None => {
                let mut request = self
                    .agent
                    .get(&url)
                    .header("x-ms-date", &date)
                    .header("x-ms-version", API_VERSION);
                if let Some(auth) = &authorization {
                    request = request.header("Authorization", auth);
                }
                request.call()
            }
            Some(upload) => {
                let mut request = self
                    .agent
                    .put(&url)
                    .header("x-ms-date", &date)
                    .header("x-ms-version", API_VERSION)
                    .header("x-ms-blob-type", "BlockBlob")
                    .header("Content-Type", upload.content_type);
                if let Some(auth) = &authorization {
                    request = request.header("Authorization", auth);
                }
                request.send(upload.bytes)
            }
        };
        let mut response = sent.map_err(|e| BlobError::Request {
            what,
            url: shown.clone(),
            // ureq's message may quote the URL, and with it a SAS token
            reason: scrub(&e.to_string(), &self.auth),
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BLOB_BYTES)
            .read_to_vec()
            .map_err(|e| BlobError::Request {
                what,
                url: shown.clone(),
                reason: scrub(&e.to_string(), &self.auth),
            })?;
        if !(200..300).contains(&status) {
            let message = String::from_utf8_lossy(&body);
            let message = elements(&message, "Message")
                .next()
                .unwrap_or(message.trim())
                .chars()
                .take(300)
                .collect::<String>();
            return Err(BlobError::Status {
                what,
                url: shown,
                status,
                message: scrub(&message, &self.auth),
            });
        }
        Ok(body)
    }
}

fn scrub(text: &str, auth: &Auth) -> String {
    match auth {
        Auth::Sas(token) if token.len() >= 3 => text.replace(token.trim_start_matches('?'), "***"),
        _ => text.to_owned(),
    }
}

/// The SharedKey string to sign of a GET without body or conditional headers: the
/// verb, eleven empty standard headers, the `x-ms-` headers sorted, then the
/// canonical resource (`/account/path` and each query parameter, lower-case name,
/// sorted, `\nname:value` with the value decoded).
pub fn string_to_sign(
    verb: &str,
    date: &str,
    account: &str,
    resource_path: &str,
    query: &[(&str, String)],
) -> String {
    let mut text = format!(
        "{verb}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n/{account}{}",
        percent_decode_str(resource_path).decode_utf8_lossy()
    );
    let mut params: Vec<(String, &str)> = query
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    params.sort();
    for (name, value) in params {
        text.push_str(&format!("\n{name}:{value}"));
    }
    text
}

/// What a PUT sends.
struct Upload<'a> {
    bytes: &'a [u8],
    content_type: &'a str,
}

/// The SharedKey string to sign of `Put Blob`: Content-Length (empty for 0) and
/// Content-Type among the standard headers, `x-ms-blob-type` among the `x-ms-` ones.
fn put_string_to_sign(
    date: &str,
    account: &str,
    resource_path: &str,
    upload: &Upload<'_>,
) -> String {
    let length = if upload.bytes.is_empty() {
        String::new()
    } else {
        upload.bytes.len().to_string()
    };
    format!(
        "PUT\n\n\n{length}\n\n{}\n\n\n\n\n\n\nx-ms-blob-type:BlockBlob\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n/{account}{}",
        upload.content_type,
        percent_decode_str(resource_path).decode_utf8_lossy()
    )
}

fn sign(key: &[u8], to_sign: &str) -> Result<String, BlobError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| BlobError::BadKey)?;
    mac.update(to_sign.as_bytes());
    Ok(BASE64.encode(mac.finalize().into_bytes()))
}

/// The account key from its base64 text.
pub fn decode_key(text: &str) -> Result<Vec<u8>, BlobError> {
    BASE64.decode(text.trim()).map_err(|_| BlobError::BadKey)
}

/// The text of every `<tag>…</tag>` in `xml`, in order (List Blobs' answer is flat
/// enough that this is all the XML it needs).
fn elements<'a>(xml: &'a str, tag: &str) -> impl Iterator<Item = &'a str> + 'a {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let end = rest[start..].find(&close)? + start;
        let found = &rest[start..end];
        rest = &rest[end + close.len()..];
        Some(found)
    })
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_answer_and_canonical_string() {
        let xml = "<EnumerationResults><Blobs><Blob><Name>a/b&amp;c</Name><Properties/></Blob>\
                   <Blob><Name>d</Name></Blob></Blobs><NextMarker /></EnumerationResults>";
        let names: Vec<String> = elements(xml, "Blob")
            .filter_map(|b| elements(b, "Name").next())
            .map(xml_unescape)
            .collect();
        assert_eq!(names, ["a/b&c", "d"]);
        let text = string_to_sign(
            "GET",
            "D",
            "acct",
            "/acct/c",
            &[("restype", "container".into()), ("comp", "list".into())],
        );
        assert!(
            text.ends_with("x-ms-version:2021-08-06\n/acct/acct/c\ncomp:list\nrestype:container")
        );
    }
}
