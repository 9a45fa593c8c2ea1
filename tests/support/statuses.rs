//! The decisions a `predict` node with `updates:` publishes on its status topic, read
//! by a `mosquitto_sub` that is subscribed before anything can be decided.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A subscription to a status topic: one JSON decision per line.
pub struct Statuses {
    child: Child,
    pub rx: Receiver<String>,
}

impl Statuses {
    /// Subscribes to `topic` on `broker`; returns once a probe published there came back,
    /// so no later decision can be missed.
    pub fn subscribe(broker: &testkit::Mosquitto, topic: &str) -> Statuses {
        let mut child = Command::new(testkit::find_binary("mosquitto_sub").expect("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
            .args(["-q", "1", "-t", topic])
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let statuses = Statuses { child, rx };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = broker
                .publisher(topic)
                .args(["-m", "{\"probe\":true}"])
                .status()
                .expect("mosquitto_pub");
            assert!(status.success());
            if let Ok(line) = statuses.rx.recv_timeout(Duration::from_millis(300))
                && line.contains("probe")
            {
                return statuses;
            }
            assert!(
                Instant::now() < deadline,
                "the status subscription never came up"
            );
        }
    }

    /// The next decision published (probes skipped), within `within`.
    pub fn next_within(&self, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("a status message within {within:?}"));
            let value: serde_json::Value = serde_json::from_str(&line).expect("status JSON");
            if value.get("probe").is_none() {
                return value;
            }
        }
    }

    /// The next decision published (probes skipped), within 90 s.
    pub fn next(&self) -> serde_json::Value {
        self.next_within(Duration::from_secs(90))
    }

    /// The next decision, which must be `decision` about `version` by node `predictions`.
    pub fn expect(&self, decision: &str, version: &str) -> serde_json::Value {
        let status = self.next();
        assert_eq!(status["decision"], decision, "{status}");
        assert_eq!(status["version"], version, "{status}");
        assert_eq!(status["node"], "predictions", "{status}");
        status
    }
}

impl Drop for Statuses {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
