//! The writer against a scripted HTTP server on loopback: answers the real servers do not
//! give on demand (429 with `Retry-After`, 401, 503), checked on what arrives.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smartgrid_runtime::metrics::Metrics;

use super::client::Client;
use super::config::{InfluxApi, parse_url};
use super::writer::{Counters, Settings, Writer};
use crate::delivery::{DeadLetters, Handoff, Lines, SinkCheckpoint, handoff};
use crate::formats::Precision;
use crate::spool::{Spool, SpoolOptions};

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    path: String,
    authorization: Option<String>,
    body: String,
}

/// Answers requests with `script` in order (the last answer repeats), recording them.
fn scripted_server(
    script: Vec<(u16, &'static str, &'static str)>,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let log = Arc::clone(&log);
            let script = script.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut authorization) = (0usize, None);
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "authorization" => authorization = Some(value.trim().to_string()),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let index = {
                        let mut log = log.lock().unwrap();
                        log.push(Seen {
                            at: Instant::now(),
                            path: request_line.split(' ').nth(1).unwrap().to_string(),
                            authorization,
                            body: String::from_utf8(body).unwrap(),
                        });
                        log.len() - 1
                    };
                    let (status, headers, text) = script[index.min(script.len() - 1)];
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{headers}\r\n{text}",
                        text.len()
                    );
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

struct Harness {
    metrics: Metrics,
    dir: tempfile::TempDir,
}

/// Run a writer over `batches` (each sent as one full batch) until it drains.
fn run_writer(url: &str, batches: &[&str], api: InfluxApi) -> Harness {
    run_writer_with(url, api, |handoff| {
        for batch in batches {
            handoff.push(lines(batch));
        }
    })
}

fn lines(text: &str) -> Lines {
    Lines {
        text: text.to_string(),
        records: text.lines().count(),
    }
}

/// Run a writer over what `feed` hands over until it drains.
fn run_writer_with(url: &str, api: InfluxApi, feed: impl FnOnce(&mut Handoff<Lines>)) -> Harness {
    let client = Client::new(
        &parse_url(url).unwrap(),
        &api,
        Precision::Ms,
        false,
        Duration::from_secs(5),
        None,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(
        dir.path().join("spool"),
        SpoolOptions {
            fsync: false,
            ..SpoolOptions::default()
        },
    )
    .unwrap();
    let metrics = Metrics::default();
    let counters = Counters {
        written: metrics.counter("written"),
        spooled: metrics.counter("spooled"),
        dropped: metrics.counter("dropped"),
        failures: metrics.counter("failures"),
        failing: metrics.gauge("failing"),
    };
    let settings = Settings {
        batch_size: 2,
        flush_interval: Duration::from_secs(10),
        drain_timeout: Duration::from_secs(2),
        attempts_before_spool: 2,
        retry_initial: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
    };
    let writer = Writer::new(
        "store".into(),
        client,
        spool,
        DeadLetters::new(
            "store",
            dir.path().join("dead.jsonl"),
            metrics.counter("dead_letters"),
        ),
        settings,
        counters,
    );
    let (mut handoff, inbox) = handoff::<Lines>(8, &smartgrid_runtime::pressure::Pressure::new());
    let thread = std::thread::spawn(move || writer.run(inbox));
    feed(&mut handoff);
    assert!(handoff.flush(), "eight chunks fit");
    drop(handoff);
    thread.join().unwrap();
    Harness { metrics, dir }
}

fn counter(h: &Harness, name: &str) -> u64 {
    h.metrics
        .snapshot()
        .into_iter()
        .find(|(k, _)| k == name)
        .map_or(0, |(_, v)| v)
}

const A: &str = "m,sensor_id=a v=1 1000\nm,sensor_id=a v=2 2000\n";
const B: &str = "m,sensor_id=b v=3 1000\nm,sensor_id=b v=4 2000\n";
const C: &str = "m,sensor_id=c v=5 1000\nm,sensor_id=c v=6 2000\n";

#[test]
fn retry_after_is_honoured_and_the_batch_sent_once_accepted() {
    let (url, seen) = scripted_server(vec![
        (429, "retry-after: 1\r\n", "slow down"),
        (204, "", ""),
    ]);
    let api = InfluxApi::V2 {
        org: "o".into(),
        bucket: "b".into(),
        token: Some("tok-123".into()),
    };
    let h = run_writer(&url, &[A], api);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(1),
        "the second attempt waited for Retry-After: {:?}",
        seen[1].at - seen[0].at
    );
    assert_eq!(seen[1].body, A);
    assert_eq!(seen[1].path, "/api/v2/write?org=o&bucket=b&precision=ms");
    assert_eq!(seen[1].authorization.as_deref(), Some("Token tok-123"));
    assert_eq!(counter(&h, "written"), 2);
    assert_eq!(counter(&h, "spooled"), 0);
    assert_eq!(counter(&h, "failures"), 1);
}

#[test]
fn an_outage_keeps_the_order_through_the_spool() {
    // Two failed attempts spool A; B and C go behind it; then the server is back.
    let (url, seen) = scripted_server(vec![
        (503, "", "down"),
        (503, "", "down"),
        (503, "", "down"),
        (204, "", ""),
    ]);
    let h = run_writer(
        &url,
        &[A, B, C],
        InfluxApi::V2 {
            org: "o".into(),
            bucket: "b".into(),
            token: None,
        },
    );
    let seen = seen.lock().unwrap().clone();
    let accepted: Vec<&str> = seen[3..].iter().map(|s| s.body.as_str()).collect();
    assert_eq!(accepted, vec![A, B, C], "replayed in order, each once");
    assert_eq!(counter(&h, "written"), 6);
    assert_eq!(counter(&h, "spooled"), 3);
    let spool = Spool::open(h.dir.path().join("spool"), SpoolOptions::default()).unwrap();
    assert!(spool.is_empty(), "acknowledged after the 2xx");
}

#[test]
fn unauthorized_batches_wait_in_the_spool() {
    // 401 forever: nothing is lost, nothing dead-lettered; the batch stays spooled.
    let (url, seen) = scripted_server(vec![(401, "", "{\"error\":\"authorization failed\"}")]);
    let api = InfluxApi::V1 {
        db: "db".into(),
        rp: None,
        credentials: Some(("me".into(), Some("pw".into()))),
    };
    let h = run_writer(&url, &[A], api);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "retried: {seen:?}");
    assert_eq!(seen[0].path, "/write?db=db&precision=ms");
    assert_eq!(seen[0].authorization.as_deref(), Some("Basic bWU6cHc="));
    assert_eq!(counter(&h, "written"), 0);
    assert_eq!(counter(&h, "dead_letters"), 0);
    let spool = Spool::open(h.dir.path().join("spool"), SpoolOptions::default()).unwrap();
    let kept: Vec<Vec<u8>> = spool.iter().map(Result::unwrap).collect();
    assert_eq!(kept, vec![A.as_bytes().to_vec()]);
}

#[test]
fn bad_data_goes_to_the_dead_letter_file_once() {
    let (url, seen) = scripted_server(vec![
        (
            400,
            "",
            "{\"error\":\"unable to parse 'm,sensor_id=a v=': missing field value\"}",
        ),
        (204, "", ""),
    ]);
    let h = run_writer(
        &url,
        &[A, B],
        InfluxApi::V2 {
            org: "o".into(),
            bucket: "b".into(),
            token: None,
        },
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "a rejected batch is not retried: {seen:?}");
    assert_eq!(counter(&h, "dead_letters"), 2);
    assert_eq!(counter(&h, "written"), 2);
    let text = std::fs::read_to_string(h.dir.path().join("dead.jsonl")).unwrap();
    let letters: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["reason"], "rejected");
    assert_eq!(letters[0]["lines"], A);
    assert_eq!(letters[0]["records"], 2);
    assert!(
        letters[0]["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 400: {\"error\":\"unable to parse")
    );
}

#[test]
fn a_checkpoint_mark_ships_the_open_batch_and_is_taken_once_accepted() {
    use smartgrid_runtime::checkpoint::{AT_STOP, Checkpoints, OnStop};
    use smartgrid_runtime::shutdown::Shutdown;
    use smartgrid_runtime::state::StateStore;

    let (url, seen) = scripted_server(vec![(204, "", "")]);
    let state = tempfile::tempdir().unwrap();
    let stop = Shutdown::new();
    stop.trigger();
    let open = || StateStore::open(state.path(), "p", 0, 1).unwrap();
    let checkpoints =
        Arc::new(Checkpoints::new(open(), OnStop::Checkpoint, None, stop.clone()).unwrap());
    let sink = SinkCheckpoint::new(checkpoints.node("store", 0, 1));
    let api = InfluxApi::V2 {
        org: "o".into(),
        bucket: "b".into(),
        token: None,
    };
    let first = "m,sensor_id=a v=1 1000\n";
    let second = "m,sensor_id=a v=2 2000\n";
    let h = run_writer_with(&url, api, |handoff| {
        // One point: the batch (size 2, 10 s) would wait; the mark sends it now.
        handoff.push(lines(first));
        handoff.push_mark(sink.mark(AT_STOP, None));
        handoff.push(lines(second));
    });
    let bodies: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.body.clone())
        .collect();
    assert_eq!(bodies, [first, second]);
    assert_eq!(counter(&h, "written"), 2);
    assert!(checkpoints.commit_at_stop().unwrap() > 0);
    drop((sink, checkpoints));
    let restored = Checkpoints::new(open(), OnStop::Checkpoint, None, stop).unwrap();
    let restored = Arc::new(restored);
    let part = SinkCheckpoint::new(restored.node("store", 0, 1)).restored("influx v1");
    assert_eq!(part, Some(Vec::new()), "taken, with nothing to restore");
}
