//! Azurite's blob service (the Azure Storage emulator, from npm) on a free loopback
//! port, data in a temporary directory, stopped on drop; and the two writes the tests
//! need (`Create Container`, `Put Blob`), authorized with the emulator's well-known
//! account key (public, documented by Microsoft) by SharedKey, implemented here on its
//! own so that a test does not check the client code under test with itself.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Server, ServerCommand, find_binary, free_port};

/// The emulator's account name.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// The emulator's well-known account key (the same in every Azurite; not a secret).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite's blob service, killed on drop.
#[derive(Debug)]
pub struct Azurite {
    server: Server,
}

/// Where `azurite-blob` is: `AZURITE_BLOB`, then the directory `scripts/test.sh`
/// installs it into, then `PATH`. Panics (failing the test) if it is nowhere.
pub fn azurite_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("AZURITE_BLOB") {
        return PathBuf::from(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let installed =
            PathBuf::from(home).join(".cache/smartgrid/azurite/node_modules/.bin/azurite-blob");
        if installed.is_file() {
            return installed;
        }
    }
    find_binary("azurite-blob").unwrap_or_else(|| {
        panic!(
            "azurite-blob is not installed (looked in $AZURITE_BLOB, \
             ~/.cache/smartgrid/azurite and PATH); `bash scripts/test.sh` installs it"
        )
    })
}

impl Azurite {
    /// Start it and wait until its port accepts connections.
    pub fn start() -> Self {
        let port = free_port();
        let mut server = Server::new("azurite", ServerCommand::new(azurite_binary()), port)
            .with_ready_timeout(Duration::from_secs(60));
        let data = server.dir().join("data");
        server.command_mut().args.extend(
            [
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--location",
                &data.display().to_string(),
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ]
            .map(OsString::from),
        );
        server.start();
        Azurite { server }
    }

    /// The account's blob endpoint, path style: `http://127.0.0.1:PORT/devstoreaccount1`.
    pub fn account_url(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.server.port())
    }

    /// `Create Container`; panics unless it is created.
    pub fn create_container(&self, container: &str) {
        let (status, body) = self.request(
            "PUT",
            &format!("/{container}"),
            &[("restype", "container")],
            &[],
            &[],
        );
        assert_eq!(status, 201, "create container {container}: {body}");
    }

    /// `Put Blob` (a block blob); panics unless it is stored.
    pub fn put_blob(&self, container: &str, name: &str, bytes: &[u8]) {
        let path = format!("/{container}/{name}");
        let (status, body) =
            self.request("PUT", &path, &[], &[("x-ms-blob-type", "BlockBlob")], bytes);
        assert_eq!(status, 201, "put blob {name}: {body}");
    }

    /// `Get Blob`: its bytes, or `None` if it does not exist (404).
    pub fn get_blob(&self, container: &str, name: &str) -> Option<Vec<u8>> {
        let (status, answer) = self.request("GET", &format!("/{container}/{name}"), &[], &[], &[]);
        if status == 404 {
            return None;
        }
        assert_eq!(status, 200, "get blob {name}: {answer}");
        let (_, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        Some(body.as_bytes().to_vec())
    }

    /// A service SAS (query string, without `?`) that lets its holder read the blobs of
    /// `container` for an hour: what a device is given to fetch a model.
    pub fn read_sas(&self, container: &str) -> String {
        let expiry =
            humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600))
                .to_string();
        let version = "2021-08-06";
        // Service SAS, version 2020-12-06 and later: sp, st, se, canonicalized resource,
        // si, sip, spr, sv, sr, snapshot time, encryption scope, rscc, rscd, rsce, rscl,
        // rsct, one a line.
        let to_sign = format!(
            "r\n\n{expiry}\n/blob/{AZURITE_ACCOUNT}/{container}\n\n\n\n{version}\nc\n\n\n\n\n\n\n"
        );
        format!(
            "sv={version}&sr=c&sp=r&se={}&sig={}",
            crate::urlencode(&expiry),
            crate::urlencode(&sign(&to_sign))
        )
    }

    /// A SharedKey-signed request to the emulator (`path` below the account).
    fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let mut ms_headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
            .chain([
                ("x-ms-date".to_owned(), date.clone()),
                ("x-ms-version".to_owned(), "2021-08-06".to_owned()),
            ])
            .collect();
        ms_headers.sort();
        let full_path = format!("/{AZURITE_ACCOUNT}{path}");
        // Blob service SharedKey: verb, 11 standard headers (Content-Length empty when
        // 0), canonical x-ms- headers, then /account/path and sorted query parameters.
        let length = if body.is_empty() {
            String::new()
        } else {
            body.len().to_string()
        };
        let mut to_sign = format!("{method}\n\n\n{length}\n\n\n\n\n\n\n\n\n");
        for (k, v) in &ms_headers {
            to_sign.push_str(&format!("{k}:{v}\n"));
        }
        to_sign.push_str(&format!("/{AZURITE_ACCOUNT}{full_path}"));
        let mut sorted_query = query.to_vec();
        sorted_query.sort();
        for (k, v) in &sorted_query {
            to_sign.push_str(&format!("\n{k}:{v}"));
        }
        let signature = sign(&to_sign);

        let query_text = sorted_query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let target = if query_text.is_empty() {
            full_path
        } else {
            format!("{full_path}?{query_text}")
        };
        let addr = self.server.addr();
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Length: {}\r\nAuthorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\n",
            body.len()
        );
        for (k, v) in &ms_headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("cannot connect to azurite at {addr}: {e}"));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .unwrap_or_else(|e| panic!("cannot send to azurite: {e}"));
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("cannot read azurite's answer: {e}"));
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer from azurite: {text}"));
        (status, text)
    }

    /// The underlying [`Server`].
    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// `to_sign` signed with the emulator's well-known account key (HMAC-SHA256, base64),
/// as SharedKey and SAS signatures are.
fn sign(to_sign: &str) -> String {
    let key = BASE64
        .decode(AZURITE_KEY)
        .expect("the well-known key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}
