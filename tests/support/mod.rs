//! What the end-to-end tests of runs share: starting `smartgrid`, following its log,
//! reading a broker's log, running a two-process cluster.
#![allow(dead_code)] // each test file uses its own part

pub mod cli;
pub mod echo;
pub mod fleet;
pub mod records;
pub mod rollout;
pub mod static_files;
pub mod statuses;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `smartgrid` binary, logging at info.
pub fn smartgrid() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smartgrid"));
    command.env("SMARTGRID_LOG", "info");
    command
}

/// Polls `check` until it returns `Some`, failing with `what` after 90 s: the deadline
/// only bounds a broken run, nothing is asserted about how long it took.
pub fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `text` written as `pipeline.yaml` in `dir`.
pub fn write_pipeline(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

/// A running `smartgrid run`, its log lines echoed to ours and kept for the test.
pub struct Run {
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Run {
    /// `smartgrid run pipeline args…`.
    pub fn start(pipeline: &Path, args: &[&str]) -> Run {
        Run::start_with_env(pipeline, args, &[])
    }

    /// `smartgrid run pipeline args…` with environment variables `env` set.
    pub fn start_with_env(pipeline: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut child = smartgrid()
            .arg("run")
            .arg(pipeline)
            .args(args)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start smartgrid");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[smartgrid] {line}");
                kept.lock().expect("log lock").push(line.clone());
                let _ = tx.send(line);
            }
        });
        Run { child, lines, log }
    }

    /// Every line logged so far, including those [`wait_for`](Self::wait_for) read.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Returns the first log line from now on that contains `needle` (within 20 s).
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100))
                && line.contains(needle)
            {
                return line;
            }
            assert!(Instant::now() < deadline, "no log line with {needle:?}");
        }
    }

    /// The counters line the run logs when it stops; the run must succeed.
    pub fn counters(mut self) -> String {
        let counters = self
            .lines
            .iter()
            .filter(|line| line.contains("stopped;"))
            .last()
            .unwrap_or_default();
        assert!(self.child.wait().expect("wait").success(), "the run failed");
        counters
    }

    /// SIGTERM, and the run must end well; the counters line it logs when it stops.
    pub fn terminate(self) -> String {
        self.signal("TERM");
        self.counters()
    }

    /// SIGKILL: a crash, with no chance to save or flush anything; returns once the
    /// process is gone.
    pub fn kill(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// Whether the run has not exited yet.
    pub fn still_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The exit code of a run that has ended (`None` if killed by a signal).
    pub fn exit_code(&mut self) -> Option<i32> {
        self.child.wait().expect("wait").code()
    }

    /// Sends the signal `name` (`TERM`, `STOP`, `CONT`, …) to the run.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }
}

/// A test that fails half-way must not leave its run behind (holding the test's
/// output pipe open, so `cargo test` would wait for it).
impl Drop for Run {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of `name` (`<node>.<what>`) in a counters line, if it is there.
pub fn counter(counters: &str, name: &str) -> Option<u64> {
    counters
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .map(|value| value.parse().expect("a counter's value"))
}

/// A mosquitto that keeps sessions and queued messages across restarts (saved every
/// second and on SIGTERM), queueing without a limit for a consumer that is away.
pub fn persistent_broker() -> testkit::Mosquitto {
    testkit::Mosquitto::start_persistent("autosave_interval 1\nmax_queued_messages 0")
}

/// Everything `broker` logged.
pub fn broker_log(broker: &testkit::Mosquitto) -> String {
    std::fs::read_to_string(broker.dir().join("mosquitto.log")).unwrap_or_default()
}

/// Runs `pipeline` as a cluster of two processes on loopback and waits for both, which
/// must succeed.
pub fn run_cluster(pipeline: &Path, dir: &Path) {
    let hosts = dir.join("hosts.txt");
    std::fs::write(
        &hosts,
        format!(
            "127.0.0.1:{}\n127.0.0.1:{}\n",
            testkit::free_port(),
            testkit::free_port()
        ),
    )
    .expect("hosts file");
    let processes: Vec<Child> = ["0", "1"]
        .iter()
        .map(|index| {
            smartgrid()
                .arg("run")
                .arg(pipeline)
                .arg("--hosts")
                .arg(&hosts)
                .args(["--process", index])
                .spawn()
                .expect("start a process")
        })
        .collect();
    for mut process in processes {
        assert!(process.wait().expect("wait").success());
    }
}
