//! The model registry through the real binary: `model list`, `model promote`, `model
//! rollback` change what is active and announce it, retained, on a real mosquitto;
//! `registry serve` returns each version's exact bytes and nothing outside the
//! registry. The registry is built as `smartgrid retrain` lays it out
//! (`versions/VERSION/model.txt` + its signed manifest), with `model sign`.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use support::cli::{arg, run, smartgrid, text};

use serde_json::{Value, json};

/// A registry with versions `v1` (the default model) and `v2` (the seed XGBoost model
/// is not LightGBM text, so v2 is the default model with one more line: other bytes,
/// same trees), both signed; none active yet.
fn registry(dir: &Path) -> PathBuf {
    let keys = dir.join("keys");
    let out = run(&["keys", "generate", "--out", arg(&keys)]);
    assert!(out.status.success(), "{}", text(&out));
    let registry = dir.join("registry");
    let default = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/default/model.txt"
    ))
    .expect("the default model");
    for (version, extra) in [("v1", &b""[..]), ("v2", &b"\n"[..])] {
        let model = registry.join("versions").join(version).join("model.txt");
        std::fs::create_dir_all(model.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&model, [default.as_slice(), extra].concat()).expect("write model");
        let out = run(&[
            "model",
            "sign",
            "--key",
            arg(&keys.join("model-signing.key")),
            arg(&model),
            "--version",
            version,
            "--training-rows",
            "100",
            "--metric",
            "mae=20.5",
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    registry
}

fn active_line(registry: &Path) -> String {
    let out = run(&["model", "list", "--registry", arg(registry)]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let active: Vec<&str> = stdout.lines().filter(|l| l.starts_with('*')).collect();
    assert!(active.len() <= 1, "{stdout}");
    active.first().map(|l| l.to_string()).unwrap_or_default()
}

fn retained(broker: &testkit::Mosquitto, topic: &str) -> Value {
    let text = broker.retained(topic).expect("a retained announcement");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn manifest_json(registry: &Path, version: &str) -> Value {
    let path = registry
        .join("versions")
        .join(version)
        .join("model.txt.manifest.json");
    serde_json::from_slice(&std::fs::read(path).expect("manifest")).expect("JSON")
}

#[test]
fn promote_and_rollback_change_the_active_version_and_announce_it() {
    testkit::require_binary("mosquitto");
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = registry(dir.path());
    let broker = testkit::Mosquitto::start();
    let announce = [
        "--announce-broker",
        &broker.url(),
        "--announce-topic",
        "test/model",
        "--announce-base-url",
        "http://pi.local:8900",
    ];
    assert_eq!(active_line(&registry), "", "nothing is active yet");

    for version in ["v1", "v2"] {
        let out = smartgrid()
            .args(["model", "promote", version, "--registry", arg(&registry)])
            .args(announce)
            .output()
            .expect("run");
        assert!(out.status.success(), "{}", text(&out));
        assert!(active_line(&registry).starts_with(&format!("* {version} ")));
        let announced = retained(&broker, "test/model");
        assert_eq!(announced["manifest"], manifest_json(&registry, version));
        assert_eq!(
            announced["url"],
            json!(format!("http://pi.local:8900/models/{version}/model.txt"))
        );
    }

    let out = smartgrid()
        .args(["model", "rollback", "--registry", arg(&registry)])
        .args(announce)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(active_line(&registry).starts_with("* v1 "));
    assert_eq!(
        retained(&broker, "test/model")["manifest"]["version"],
        json!("v1")
    );

    // nothing left to roll back to; an unknown or path-like version is refused
    let out = run(&["model", "rollback", "--registry", arg(&registry)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to roll back to"));
    for bad in ["v9", "../v1"] {
        let out = run(&["model", "promote", bad, "--registry", arg(&registry)]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    }
    assert!(active_line(&registry).starts_with("* v1 "));

    // a model changed after signing cannot be promoted
    let model = registry.join("versions/v2/model.txt");
    let mut bytes = std::fs::read(&model).expect("model");
    bytes.push(b'\n');
    std::fs::write(&model, bytes).expect("write");
    let out = run(&["model", "promote", "v2", "--registry", arg(&registry)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match its manifest"));
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A promotion waits while another command holds the registry (a `retrain` service
/// publishing), so neither's update of the active version is lost.
#[test]
fn a_promotion_waits_for_the_registry_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry(dir.path());
    assert!(
        run(&["model", "promote", "v1", "--registry", arg(&registry)])
            .status
            .success()
    );
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(registry.join(".lock"))
        .expect("the lock file");
    held.lock().expect("lock");
    let mut promote = smartgrid()
        .args(["model", "promote", "v2", "--registry", arg(&registry)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        promote.try_wait().expect("try_wait").is_none(),
        "promote went on while the registry was locked"
    );
    assert!(
        active_line(&registry).starts_with("* v1 "),
        "unchanged while locked"
    );
    drop(held);
    assert!(promote.wait().expect("wait").success());
    assert!(active_line(&registry).starts_with("* v2 "));
}

#[test]
fn registry_serve_returns_the_exact_bytes_read_only() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = registry(dir.path());
    let out = run(&["model", "promote", "v2", "--registry", arg(&registry)]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(dir.path().join("secret.txt"), "outside").expect("write");

    let mut child = Serve(
        smartgrid()
            .args([
                "registry",
                "serve",
                arg(&registry),
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the address line");
    let addr: SocketAddr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));

    for version in ["v1", "v2"] {
        for file in ["model.txt", "model.txt.manifest.json"] {
            let (status, body) =
                testkit::http("GET", addr, &format!("/models/{version}/{file}"), b"");
            assert_eq!(status, 200, "{version}/{file}");
            let stored =
                std::fs::read(registry.join("versions").join(version).join(file)).expect("file");
            assert!(
                body.as_bytes() == stored.as_slice(),
                "{version}/{file} differs from the stored bytes"
            );
        }
    }
    let (status, body) = testkit::http("GET", addr, "/models/active", b"");
    assert_eq!(status, 200);
    let announced: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(announced["manifest"], manifest_json(&registry, "v2"));
    assert_eq!(
        announced["url"],
        json!(format!("http://{addr}/models/v2/model.txt"))
    );

    for path in [
        "/models/v1/state.json",
        "/models/v3/model.txt",
        "/models/..%2F..%2Fsecret.txt/model.txt",
        "/models/../../secret.txt",
        "/state.json",
    ] {
        let (status, _) = testkit::http("GET", addr, path, b"");
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = testkit::http("PUT", addr, "/models/v1/model.txt", b"x");
    assert_eq!(status, 405);
    drop(child);
}

/// A stand-in for IoT Hub's service API on loopback (there is no emulator of it):
/// records each request (head and body) and answers with `status`, echoing the
/// request's head in the body as a hostile server might.
fn twin_service(status: u16) -> (SocketAddr, std::sync::mpsc::Receiver<(String, Vec<u8>)>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut buffer = [0u8; 65536];
            let (head, body) = loop {
                let n = stream.read(&mut buffer).unwrap_or(0);
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, _)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let start = head.len() + 4;
                    if request.len() >= start + length || n == 0 {
                        break (head.to_owned(), request[start..].to_vec());
                    }
                }
                if n == 0 {
                    break (text, Vec::new());
                }
            };
            let answer = format!("{{\"request\":{head:?}}}");
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = tx.send((head, body));
        }
    });
    (addr, rx)
}

#[test]
fn promote_sets_the_desired_property_of_each_device_twin() {
    use base64::Engine;
    use hmac::Mac;
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = registry(dir.path());
    let key = base64::engine::general_purpose::STANDARD.encode(b"a service policy key, 32 bytes!!");
    let connection = format!(
        "HostName=myhub.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey={key}"
    );
    let (addr, requests) = twin_service(200);
    let out = smartgrid()
        .args(["model", "promote", "v1", "--registry", arg(&registry)])
        .args([
            "--announce-base-url",
            "http://pi.local:8900",
            "--twin-device",
            "pi-1",
            "--twin-device",
            "pi 2",
        ])
        .args(["--twin-endpoint", &format!("http://{addr}")])
        .env("IOTHUB_SERVICE_CONNECTION_STRING", &connection)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    for device in ["pi-1", "pi%202"] {
        let (head, body) = requests
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a request");
        let first = head.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            format!("PATCH /twins/{device}?api-version=2021-04-12 HTTP/1.1")
        );
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim().to_owned())
                })
                .unwrap_or_default()
        };
        assert_eq!(header("If-Match"), "*");
        // the token, checked by recomputing its signature here
        let token = header("Authorization");
        let fields: std::collections::HashMap<&str, &str> = token
            .strip_prefix("SharedAccessSignature ")
            .expect("a SAS token")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        assert_eq!(fields["sr"], "myhub.azure-devices.net");
        assert_eq!(fields["skn"], "service");
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(b"a service policy key, 32 bytes!!")
                .expect("key");
        mac.update(format!("myhub.azure-devices.net\n{}", fields["se"]).as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let signature = percent_decode(fields["sig"]);
        assert_eq!(signature, expected);
        let body: Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!(
            body["properties"]["desired"]["model"]["manifest"],
            manifest_json(&registry, "v1")
        );
        assert_eq!(
            body["properties"]["desired"]["model"]["url"],
            json!("http://pi.local:8900/models/v1/model.txt")
        );
    }

    // a refusal is an error naming the device and status, never showing the token
    let (addr, _requests) = twin_service(401);
    let out = smartgrid()
        .args(["model", "promote", "v2", "--registry", arg(&registry)])
        .args([
            "--announce-base-url",
            "http://pi.local:8900",
            "--twin-device",
            "pi-1",
        ])
        .args(["--twin-endpoint", &format!("http://{addr}")])
        .env("IOTHUB_SERVICE_CONNECTION_STRING", &connection)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("twin of pi-1: HTTP 401"), "{stderr}");
    assert!(
        !stderr.contains("sig=") && !stderr.contains(&key),
        "{stderr}"
    );
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

/// `registry push` mirrors the registry into a container (Azurite) in the `serve`
/// layout, uploads a version once, and the state last; an announcement with a SAS
/// query points into it without printing the query.
#[test]
fn registry_push_mirrors_the_registry_into_a_blob_container() {
    testkit::require_binary("mosquitto");
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = registry(dir.path());
    let out = run(&["model", "promote", "v1", "--registry", arg(&registry)]);
    assert!(out.status.success(), "{}", text(&out));
    let azurite = testkit::Azurite::start();
    azurite.create_container("models");
    let push = || {
        smartgrid()
            .args([
                "registry",
                "push",
                arg(&registry),
                "--account-url",
                &azurite.account_url(),
            ])
            .args([
                "--container",
                "models",
                "--account",
                testkit::AZURITE_ACCOUNT,
                "--key-env",
                "TEST_KEY",
            ])
            .env("TEST_KEY", testkit::AZURITE_KEY)
            .output()
            .expect("run")
    };
    let out = push();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pushed 4 file(s)"),
        "{}",
        text(&out)
    );
    for version in ["v1", "v2"] {
        for file in ["model.txt", "model.txt.manifest.json"] {
            let stored =
                std::fs::read(registry.join("versions").join(version).join(file)).expect("file");
            let blob = azurite.get_blob("models", &format!("models/{version}/{file}"));
            assert!(
                blob.as_deref() == Some(stored.as_slice()),
                "models/{version}/{file} differs"
            );
        }
    }
    let state: Value =
        serde_json::from_slice(&azurite.get_blob("models", "state.json").expect("state"))
            .expect("JSON");
    assert_eq!(state["active"], json!("v1"));

    // again after a promotion: no version uploaded twice, the new state
    let out = run(&["model", "promote", "v2", "--registry", arg(&registry)]);
    assert!(out.status.success(), "{}", text(&out));
    let out = push();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pushed 0 file(s)"),
        "{}",
        text(&out)
    );
    let state: Value =
        serde_json::from_slice(&azurite.get_blob("models", "state.json").expect("state"))
            .expect("JSON");
    assert_eq!(state["active"], json!("v2"));

    // the announcement's URL is the blob's, with the SAS query; the query is not printed
    let broker = testkit::Mosquitto::start();
    let container = format!("{}/models", azurite.account_url());
    let out = smartgrid()
        .args(["model", "promote", "v2", "--registry", arg(&registry)])
        .args([
            "--announce-broker",
            &broker.url(),
            "--announce-topic",
            "test/model",
        ])
        .args([
            "--announce-base-url",
            &container,
            "--announce-url-query-env",
            "TEST_SAS",
        ])
        .env("TEST_SAS", "sv=2021-08-06&sr=c&sp=r&sig=c2VjcmV0")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("c2VjcmV0"), "{}", text(&out));
    let announced = retained(&broker, "test/model");
    assert_eq!(
        announced["url"],
        json!(format!(
            "{container}/models/v2/model.txt?sv=2021-08-06&sr=c&sp=r&sig=c2VjcmV0"
        ))
    );
}
