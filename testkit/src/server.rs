use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binary::{find_binary, missing_message};

/// How long [`Server`] waits for a server's port to accept connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many log lines a failure message shows.
const TAIL_LINES: usize = 40;

/// How to run a server: the program, its arguments and extra environment variables.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    /// The program to run (a path, or a name looked up with [`find_binary`]).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Environment variables to set for it.
    pub env: Vec<(OsString, OsString)>,
}

impl ServerCommand {
    /// `program` with no arguments. A bare name is looked up with [`find_binary`].
    pub fn new(program: impl Into<PathBuf>) -> Self {
        let program = program.into();
        let program = match program.to_str() {
            Some(name) if !name.contains('/') => find_binary(name).unwrap_or(program),
            _ => program,
        };
        ServerCommand {
            program,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// An external server process listening on a loopback port, killed on drop.
///
/// It owns a temporary directory (removed on drop) for its config, data and logs. The
/// child's stdout and stderr go to `<name>.stdout.log` / `<name>.stderr.log` there;
/// further log files (a server's own log file) can be registered so that failure
/// messages show their tails too.
pub struct Server {
    name: String,
    command: ServerCommand,
    port: u16,
    dir: TempDir,
    logs: Vec<PathBuf>,
    ready_timeout: Duration,
    child: Option<Child>,
}

impl Server {
    /// A server that is not running yet, with a fresh temporary directory. Write its
    /// config into [`dir`](Self::dir), then call [`start`](Self::start).
    pub fn new(name: &str, command: ServerCommand, port: u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("testkit-{name}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for {name}: {e}"));
        Server {
            name: name.to_string(),
            command,
            port,
            dir,
            logs: Vec::new(),
            ready_timeout: READY_TIMEOUT,
            child: None,
        }
    }

    /// The command, to add arguments that name files in [`dir`](Self::dir) (which
    /// exists only once the `Server` does), e.g. a config file written there.
    pub fn command_mut(&mut self) -> &mut ServerCommand {
        &mut self.command
    }

    /// Also show the tail of `path` (the server's own log file) in failure messages.
    pub fn with_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.logs.push(path.into());
        self
    }

    /// Wait this long for the port to accept connections (default [`READY_TIMEOUT`]).
    pub fn with_ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Spawns the process (if not running) and waits until the port accepts TCP
    /// connections. Panics with the logs' tails if the process exits or the port is not
    /// ready within the timeout.
    pub fn start(&mut self) {
        if self.child.is_some() {
            return;
        }
        let out = self.open_output("stdout");
        let err = self.open_output("stderr");
        let mut cmd = Command::new(&self.command.program);
        cmd.args(&self.command.args)
            .envs(self.command.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| {
            let program = self.command.program.display();
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!(
                    "cannot start {}: {}",
                    self.name,
                    missing_message(&program.to_string())
                )
            }
            panic!("cannot start {} ({program}): {e}", self.name)
        });
        self.child = Some(child);
        self.wait_ready();
    }

    fn open_output(&self, stream: &str) -> fs::File {
        let path = self.output_path(stream);
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
    }

    fn output_path(&self, stream: &str) -> PathBuf {
        self.dir.path().join(format!("{}.{stream}.log", self.name))
    }

    fn wait_ready(&mut self) {
        let addr = self.addr();
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "{} exited ({status}) before accepting connections on {addr}\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail();
                self.stop();
                panic!(
                    "{} did not accept connections on {addr} within {:?}\n{tail}",
                    self.name, self.ready_timeout
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process and waits for it to exit. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends the signal `name` (`HUP`, `STOP`, `CONT`, …) with `kill`. Panics if the
    /// server is not running or `kill` fails.
    pub fn signal(&self, name: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(status.success(), "kill -{name} {pid} failed: {status}");
    }

    /// Sends SIGHUP (many servers re-read their configuration on it).
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    /// Stops and starts the process again, on the same port with the same config.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Whether the process is running (it was started and has not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's temporary directory (config, data, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of each log (stdout, stderr and registered log files), with
    /// headers, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        let files = [self.output_path("stdout"), self.output_path("stderr")];
        for path in files.iter().chain(&self.logs) {
            let Some(tail) = tail_of(path, TAIL_LINES) else {
                continue;
            };
            if tail.trim().is_empty() {
                continue;
            }
            let _ = writeln!(out, "--- {} (last {TAIL_LINES} lines) ---", path.display());
            out.push_str(&tail);
            if !tail.ends_with('\n') {
                out.push('\n');
            }
        }
        if out.is_empty() {
            out.push_str("(no log output)\n");
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .field("running", &self.child.is_some())
            .finish()
    }
}

/// The last `lines` lines of a file (reads at most its last 64 KiB).
fn tail_of(path: &Path, lines: usize) -> Option<String> {
    const MAX: u64 = 64 * 1024;
    let mut file = fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(MAX))).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    Some(all[start..].join("\n"))
}

/// Send SIGTERM and wait up to 20 s for the process to exit (then kill it): a server
/// that flushes its buffers on a clean stop keeps what it acknowledged.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Server {
    /// Stop the process with SIGTERM (waiting for it to exit), unlike [`stop`](Self::stop)
    /// which kills it. Does nothing if it is not running.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::free_port;
    use crate::require_binary;

    #[test]
    fn tail_shows_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        fs::write(&path, text).expect("write");
        let tail = tail_of(&path, 3).expect("tail");
        assert_eq!(tail, "line 97\nline 98\nline 99");
    }

    #[test]
    fn server_whose_program_is_missing_names_it_and_the_install_script() {
        let name = "smartgrid-testkit-no-such-server";
        let mut server = Server::new("ghost", ServerCommand::new(name), free_port());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.start()));
        let message = *result
            .expect_err("start must panic")
            .downcast::<String>()
            .expect("a formatted panic message");
        assert!(message.contains(name), "{message}");
        assert!(message.contains("bash scripts/test.sh"), "{message}");
    }

    #[test]
    fn server_that_exits_reports_its_stderr() {
        let sh = require_binary("sh");
        let mut server = Server::new(
            "failing",
            ServerCommand::new(sh)
                .arg("-c")
                .arg("echo broken config >&2; exit 3"),
            free_port(),
        );
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.start()));
        let message = *result
            .expect_err("start must panic")
            .downcast::<String>()
            .expect("a formatted panic message");
        assert!(message.contains("exited"), "{message}");
        assert!(message.contains("broken config"), "{message}");
    }
}
