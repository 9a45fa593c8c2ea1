//! `smartgrid decode --format clemap` against the seed's reference vectors
//! (`testdata/clemap_vectors.jsonl`): good payloads give exactly the seed
//! decoder's fields, bad ones `{"error": <reason>}`, and the exit code says which.

use std::io::Write;
use std::process::{Command, Stdio};

fn vectors() -> Vec<serde_json::Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/clemap_vectors.jsonl");
    std::fs::read_to_string(path)
        .expect("the seed vectors in testdata/")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn decode(input: &str) -> (Option<i32>, Vec<serde_json::Value>) {
    decode_bytes(input.as_bytes())
}

fn decode_bytes(input: &[u8]) -> (Option<i32>, Vec<serde_json::Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smartgrid"))
        .args(["decode", "--format", "clemap"])
        .env("SMARTGRID_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run smartgrid");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let lines = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect();
    (out.status.code(), lines)
}

#[test]
fn every_seed_vector_decodes_as_the_seed_decoder_did() {
    let vectors = vectors();
    let input: String = vectors
        .iter()
        .map(|v| format!("{}\n", v["hex"].as_str().expect("hex")))
        .collect();
    let (code, out) = decode(&input);
    assert_eq!(out.len(), vectors.len(), "one line out per line in");
    assert_eq!(code, Some(1), "some vectors are malformed on purpose");
    for (i, (v, got)) in vectors.iter().zip(&out).enumerate() {
        if let Some(expect) = v.get("expect") {
            let got = got.as_object().expect("object");
            let expect = expect.as_object().expect("object");
            let got_keys: Vec<&String> = got.keys().collect();
            let expect_keys: Vec<&String> = expect.keys().collect();
            assert_eq!(
                got_keys, expect_keys,
                "vector {i}: the seed's field names, in layout order"
            );
            for (k, want) in expect {
                match (want.as_f64(), got[k].as_f64()) {
                    (Some(w), Some(g)) => assert!(w == g, "vector {i} `{k}`: {g} != {w}"),
                    _ => assert_eq!(&got[k], want, "vector {i} `{k}`"),
                }
            }
        } else {
            assert_eq!(
                got,
                &serde_json::json!({ "error": v["error"] }),
                "vector {i}"
            );
        }
    }
}

#[test]
fn exit_code_is_zero_when_everything_decodes_and_bad_hex_is_an_error_line() {
    let good: String = vectors()
        .iter()
        .filter(|v| v.get("expect").is_some())
        .map(|v| format!("{}\n", v["hex"].as_str().expect("hex")))
        .collect();
    let (code, out) = decode(&good);
    assert_eq!(code, Some(0));
    assert!(out.iter().all(|o| o.get("error").is_none()));

    let (code, out) = decode("zz-not-hex\n");
    assert_eq!(code, Some(1));
    assert_eq!(out, vec![serde_json::json!({ "error": "invalid_hex" })]);
}

#[test]
fn lines_that_are_not_utf8_or_too_long_get_an_error_line_and_the_rest_decode() {
    let good: Vec<String> = vectors()
        .iter()
        .filter(|v| v.get("expect").is_some())
        .map(|v| v["hex"].as_str().expect("hex").to_string())
        .take(2)
        .collect();
    let mut input = Vec::new();
    input.extend_from_slice(good[0].as_bytes());
    input.extend_from_slice(b"\n\xff\xfe not utf-8\n");
    input.extend_from_slice(&vec![b'a'; 3 * 1024 * 1024]);
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(good[1].as_bytes());
    input.extend_from_slice(b"\r\n");
    let (code, out) = decode_bytes(&input);
    assert_eq!(code, Some(1));
    assert_eq!(out.len(), 4, "one line out per line in: {out:?}");
    assert!(out[0].get("error").is_none(), "{}", out[0]);
    assert_eq!(out[1], serde_json::json!({ "error": "invalid_utf8" }));
    assert_eq!(out[2], serde_json::json!({ "error": "line_too_long" }));
    assert!(out[3].get("error").is_none(), "{}", out[3]);
}
