//! `smartgrid keys generate`, `model sign` and `model verify` through the real binary,
//! on the default LightGBM model (`models/default/model.txt`): a signed model verifies;
//! every kind of tampering or a wrong key exits 1 with a reason naming what failed; a
//! key is never overwritten nor printed; and the signature checks with other
//! implementations (Python's `cryptography`, the `openssl` CLI) over the canonical
//! bytes as docs/models-signing.md describes them, built in Python from the JSON file.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::cli::{arg, text};

fn smartgrid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .args(args)
        .env("SMARTGRID_LOG", "off")
        .output()
        .expect("run smartgrid")
}

/// A scratch directory with a copy of the default model and a key pair in `keys/`.
struct Setup {
    dir: tempfile::TempDir,
    model: PathBuf,
    private: PathBuf,
    public: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("a temp dir");
    let model = dir.path().join("model.txt");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/models/default/model.txt"),
        &model,
    )
    .expect("copy the default model");
    let keys = dir.path().join("keys");
    let out = smartgrid(&["keys", "generate", "--out", arg(&keys)]);
    assert!(out.status.success(), "{}", text(&out));
    Setup {
        model,
        private: keys.join("model-signing.key"),
        public: keys.join("model-signing.pub"),
        dir,
    }
}

fn sign(s: &Setup) {
    let out = smartgrid(&[
        "model",
        "sign",
        "--key",
        arg(&s.private),
        arg(&s.model),
        "--version",
        "v7",
        "--parent",
        "v6",
        "--training-rows",
        "43200",
        "--metric",
        "mae=12.5",
        "--metric",
        "rmse=0.125",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(private_base64(s).as_str()));
}

fn verify(s: &Setup, public: &Path) -> Output {
    smartgrid(&[
        "model",
        "verify",
        "--public-key",
        arg(public),
        arg(&s.model),
    ])
}

fn manifest_path(s: &Setup) -> PathBuf {
    s.dir.path().join("model.txt.manifest.json")
}

fn manifest(s: &Setup) -> serde_json::Value {
    let text = std::fs::read_to_string(manifest_path(s)).expect("the manifest");
    serde_json::from_str(&text).expect("JSON")
}

fn private_base64(s: &Setup) -> String {
    let text = std::fs::read_to_string(&s.private).expect("the private key");
    text.lines().nth(1).expect("a key line").to_owned()
}

/// Exit code 1 and a message containing every one of `reasons`.
fn assert_fails(out: &Output, reasons: &[&str]) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    for reason in reasons {
        assert!(all.contains(reason), "expected {reason:?} in\n{all}");
    }
}

#[test]
fn generate_sign_verify() {
    let s = setup();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&s.private)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "private key mode {mode:o}");
    }
    let key = std::fs::read_to_string(&s.private).expect("key");
    assert!(
        key.starts_with("smartgrid ed25519 private key v1\n"),
        "{key}"
    );
    let public = std::fs::read_to_string(&s.public).expect("pub");
    assert!(
        public.starts_with("smartgrid ed25519 public key v1\n"),
        "{public}"
    );

    sign(&s);
    let m = manifest(&s);
    assert_eq!(m["format"], "smartgrid-model-manifest/1");
    assert_eq!(m["version"], "v7");
    assert_eq!(m["parent"], "v6");
    assert_eq!(m["training_rows"], 43200);
    assert_eq!(m["metrics"]["mae"], 12.5);
    assert!(m["trees"].as_u64().expect("trees") > 0);
    let names = m["feature_names"].as_array().expect("names");
    assert_eq!(names.len(), 18);
    assert_eq!(names[0], "p_l1");
    let created = m["created"].as_str().expect("created");
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );

    let out = verify(&s, &s.public);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("ok: ") && stdout.contains("version v7"),
        "{stdout}"
    );
    assert!(!text(&out).contains(private_base64(&s).as_str()));
}

#[test]
fn derived_version_without_options() {
    let s = setup();
    let out = smartgrid(&["model", "sign", "--key", arg(&s.private), arg(&s.model)]);
    assert!(out.status.success(), "{}", text(&out));
    let m = manifest(&s);
    let sha = m["model_sha256"].as_str().expect("sha");
    assert_eq!(m["version"].as_str(), Some(&sha[..12]));
    assert_eq!(m["parent"], serde_json::Value::Null);
    assert_eq!(m["metrics"], serde_json::json!({}));
    assert!(verify(&s, &s.public).status.success());
}

#[test]
fn a_changed_model_byte_fails() {
    let s = setup();
    sign(&s);
    let mut bytes = std::fs::read(&s.model).expect("model");
    // the first digit of the first tree's leaf values: still a valid model, with
    // another prediction
    let leaves = bytes
        .windows(11)
        .position(|w| w == b"leaf_value=")
        .expect("a leaf_value line")
        + 11;
    let at = leaves
        + bytes[leaves..]
            .iter()
            .position(u8::is_ascii_digit)
            .expect("a digit");
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&s.model, bytes).expect("write");
    assert_fails(
        &verify(&s, &s.public),
        &["does not match its manifest", "sha256"],
    );
}

#[test]
fn a_changed_manifest_field_fails() {
    let s = setup();
    sign(&s);
    for (field, value) in [
        ("version", serde_json::json!("v8")),
        ("parent", serde_json::Value::Null),
        ("training_rows", serde_json::json!(43201)),
        ("metrics", serde_json::json!({"mae": 12.4, "rmse": 0.125})),
        ("created", serde_json::json!("2020-01-01T00:00:00Z")),
    ] {
        let mut m = manifest(&s);
        m[field] = value;
        let path = s.dir.path().join("model.txt.manifest.json");
        std::fs::write(&path, serde_json::to_string_pretty(&m).expect("JSON")).expect("write");
        assert_fails(&verify(&s, &s.public), &["signature", "does not verify"]);
    }
}

#[test]
fn another_key_fails() {
    let s = setup();
    sign(&s);
    let other = s.dir.path().join("other");
    let out = smartgrid(&["keys", "generate", "--out", arg(&other)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_fails(
        &verify(&s, &other.join("model-signing.pub")),
        &["signature", "another key"],
    );
}

#[test]
fn a_missing_or_malformed_manifest_fails() {
    let s = setup();
    assert_fails(&verify(&s, &s.public), &["no manifest", "manifest.json"]);
    sign(&s);
    let good = manifest(&s);
    let path = manifest_path(&s);
    std::fs::write(&path, "{ not json").expect("write");
    assert_fails(&verify(&s, &s.public), &["malformed manifest"]);
    let mut extra = good.clone();
    extra["signed_by"] = serde_json::json!("me");
    std::fs::write(&path, extra.to_string()).expect("write");
    assert_fails(&verify(&s, &s.public), &["malformed manifest", "signed_by"]);
    let mut short = good;
    short["signature"] = serde_json::json!("AAAA");
    std::fs::write(&path, short.to_string()).expect("write");
    assert_fails(&verify(&s, &s.public), &["malformed manifest", "signature"]);
}

#[test]
fn a_malformed_key_file_fails() {
    let s = setup();
    sign(&s);
    let bad = s.dir.path().join("bad.pub");
    std::fs::write(&bad, "smartgrid ed25519 public key v1\nnot base64!\n").expect("write");
    assert_fails(&verify(&s, &bad), &["malformed key file", "base64"]);
    std::fs::write(&bad, "smartgrid ed25519 public key v1\nAAAA\n").expect("write");
    assert_fails(&verify(&s, &bad), &["malformed key file", "32"]);
    std::fs::write(&bad, "ssh-ed25519 AAAA\n").expect("write");
    assert_fails(&verify(&s, &bad), &["malformed key file", "first line"]);
    // the private key where the public one belongs: refused, and not echoed
    let out = verify(&s, &s.private);
    assert_fails(&out, &["malformed key file", "private key"]);
    assert!(!text(&out).contains(private_base64(&s).as_str()));
}

#[test]
fn generate_refuses_to_overwrite_a_key() {
    let s = setup();
    let dir = s.private.parent().expect("keys dir");
    let before = std::fs::read(&s.private).expect("key");
    let before_pub = std::fs::read(&s.public).expect("pub");
    let out = smartgrid(&["keys", "generate", "--out", arg(dir)]);
    assert_fails(&out, &["already exists", "model-signing.key"]);
    assert_eq!(std::fs::read(&s.private).expect("key"), before);
    assert_eq!(std::fs::read(&s.public).expect("pub"), before_pub);
}

/// Rebuilds the canonical signed bytes from the JSON file in Python (json.dumps with
/// sorted keys, no whitespace, no ASCII escaping) and checks the signature with
/// Python's `cryptography` and with `openssl pkeyutl -rawin`, whichever are installed
/// (at least one must be). A tampered message must fail the same check.
#[test]
fn signature_verifies_with_other_implementations() {
    let s = setup();
    sign(&s);
    let work = s.dir.path().join("independent");
    std::fs::create_dir(&work).expect("mkdir");
    const SCRIPT: &str = r#"
import base64, json, sys
manifest, public, work = sys.argv[1:4]
m = json.load(open(manifest, encoding="utf-8"))
sig = base64.b64decode(m["signature"], validate=True)
msg = json.dumps({k: v for k, v in m.items() if k != "signature"},
                 sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
lines = open(public).read().splitlines()
assert lines[0] == "smartgrid ed25519 public key v1", lines[0]
raw = base64.b64decode(lines[1], validate=True)
assert len(raw) == 32 and len(sig) == 64
der = bytes.fromhex("302a300506032b6570032100") + raw
pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"
open(work + "/pub.pem", "w").write(pem)
open(work + "/msg", "wb").write(msg)
open(work + "/tampered", "wb").write(msg.replace(b'"v7"', b'"v8"'))
open(work + "/sig", "wb").write(sig)
try:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.exceptions import InvalidSignature
except ImportError:
    print("no-cryptography")
    sys.exit(0)
key = Ed25519PublicKey.from_public_bytes(raw)
key.verify(sig, msg)
try:
    key.verify(sig, msg.replace(b'"v7"', b'"v8"'))
    sys.exit("a tampered message verified")
except InvalidSignature:
    pass
print("cryptography-verified")
"#;
    let out = Command::new("python3")
        .args([
            "-c",
            SCRIPT,
            arg(&manifest_path(&s)),
            arg(&s.public),
            arg(&work),
        ])
        .output()
        .expect("python3 (needed to rebuild the canonical bytes)");
    assert!(out.status.success(), "{}", text(&out));
    let python = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut checked = python == "cryptography-verified";

    let openssl = |message: &str| {
        Command::new("openssl")
            .args(["pkeyutl", "-verify", "-pubin", "-rawin", "-inkey"])
            .arg(work.join("pub.pem"))
            .arg("-in")
            .arg(work.join(message))
            .arg("-sigfile")
            .arg(work.join("sig"))
            .output()
    };
    match openssl("msg") {
        Ok(out) => {
            assert!(out.status.success(), "openssl: {}", text(&out));
            let tampered = openssl("tampered").expect("openssl ran once");
            assert!(!tampered.status.success(), "openssl: {}", text(&tampered));
            checked = true;
        }
        Err(e) => eprintln!("openssl not run ({e}); python said {python}"),
    }
    assert!(
        checked,
        "neither Python's cryptography nor openssl could check the signature"
    );
}
