//! Test harness: starts real servers on loopback on free ports and stops them on drop.
//!
//! Everything here is for tests: failures panic with a message that says what went wrong
//! (and, for a server, the tail of its log), instead of returning errors.
//!
//! * [`free_port`]: a TCP port on 127.0.0.1 that was free a moment ago.
//! * [`require_binary`]: the rule for tests that need an external program: skip with a
//!   printed note when it is missing on a developer machine, fail when it is missing in CI.
//! * [`Server`]: the shared lifecycle of an external server process: spawn it with its
//!   output in a temporary directory, wait until its port accepts connections, show the
//!   tail of its logs on failure, stop/restart it, and kill it on drop. Starters for
//!   particular servers ([`Mosquitto`], [`Influxd`], [`VictoriaMetrics`]) are thin
//!   wrappers that write a config file and describe the command.
//! * [`http`]: a tiny HTTP/1.1 client for querying those servers in assertions.
//!
//! ```no_run
//! if !testkit::require_binary("mosquitto") {
//!     return; // skipped (printed "SKIP: …")
//! }
//! let broker = testkit::Mosquitto::start();
//! println!("connect to {}", broker.url()); // mqtt://127.0.0.1:PORT
//! ```

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long [`Server`] waits for a server's port to accept connections.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many log lines a failure message shows.
const TAIL_LINES: usize = 40;

/// A TCP port on 127.0.0.1 that was free when this was called.
///
/// It binds port 0, reads the port the OS picked and closes the socket, so another
/// process could take it in between. The OS may hand the same port to two binds in a
/// row, so this remembers the ports it returned and never returns one twice in a
/// process: tests running in parallel threads get distinct ports.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind a socket on 127.0.0.1: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read the address of a bound socket: {e}"))
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("the OS keeps returning ports this process already used");
}

/// Whether the environment variable `CI` is set (to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Where `name` is installed: the first match in `PATH`, then in the `sbin` directories
/// (Debian installs `mosquitto` in `/usr/sbin`, which a non-root `PATH` often lacks).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Whether a test that needs the program `name` can run.
///
/// * installed: `true`;
/// * missing and `CI` unset: prints `SKIP: <name> not installed …` and returns `false`,
///   so the test returns early and passes (a developer without the program is not
///   blocked);
/// * missing and `CI` set: panics, because CI installs every program the tests need
///   and a missing one means the CI setup is broken (a silently skipped test would hide
///   that).
pub fn require_binary(name: &str) -> bool {
    if find_binary(name).is_some() {
        return true;
    }
    if in_ci() {
        panic!("{name} is not installed, but CI is set: the CI script must install it");
    }
    println!("SKIP: {name} not installed (install it to run this test; under CI=true this fails)");
    false
}

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
            panic!(
                "cannot start {} ({}): {e}",
                self.name,
                self.command.program.display()
            )
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

/// A mosquitto broker on a free loopback port, with persistence off, killed on drop.
///
/// ```no_run
/// # if !testkit::require_binary("mosquitto") { return; }
/// let mut broker = testkit::Mosquitto::start();
/// let url = broker.url();
/// broker.restart(); // same port; sessions are gone (persistence false)
/// ```
#[derive(Debug)]
pub struct Mosquitto {
    server: Server,
}

impl Mosquitto {
    /// A broker allowing anonymous clients on `127.0.0.1:<free port>`.
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// A broker with `config_extra` appended to its config file, after the
    /// `listener PORT 127.0.0.1` line, so listener options such as `cafile`, `certfile`,
    /// `keyfile` apply to that listener. `allow_anonymous true` is written unless
    /// `config_extra` sets `allow_anonymous` itself. Files the extra lines name must
    /// be readable by the broker (tests usually keep them in a temp dir).
    pub fn start_with(config_extra: &str) -> Self {
        let port = free_port();
        let mut server = Server::new("mosquitto", Self::command(), port);
        let log = server.dir().join("mosquitto.log");
        let conf = server.dir().join("mosquitto.conf");
        fs::write(&conf, Self::config(port, &log, config_extra))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        server.command_mut().args.extend(["-c".into(), conf.into()]);
        let mut server = server.with_log(log);
        server.start();
        Mosquitto { server }
    }

    fn command() -> ServerCommand {
        ServerCommand::new("mosquitto")
    }

    fn config(port: u16, log: &Path, extra: &str) -> String {
        let mut conf = String::new();
        // Run as root only when started as root: mosquitto otherwise drops to the
        // `mosquitto` user, which cannot read files in a root-owned temp dir. For a
        // non-root user the option has no effect.
        if running_as_root() {
            conf.push_str("user root\n");
        }
        let _ = writeln!(conf, "persistence false");
        let _ = writeln!(conf, "log_dest file {}", log.display());
        let _ = writeln!(
            conf,
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information"
        );
        let _ = writeln!(conf, "listener {port} 127.0.0.1");
        if !extra.contains("allow_anonymous") {
            conf.push_str("allow_anonymous true\n");
        }
        conf.push_str(extra);
        conf.push('\n');
        conf
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port())
    }

    /// Kills the broker (clients see the connection drop).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts it again on the same port with the same config (and, since persistence is
    /// off, without any session state). Works after [`stop`](Self::stop) too.
    pub fn restart(&mut self) {
        self.server.restart();
    }

    /// Its temporary directory.
    pub fn dir(&self) -> &Path {
        self.server.dir()
    }

    /// Makes the broker re-read its password and ACL files (SIGHUP); clients already
    /// connected stay connected.
    pub fn reload(&self) {
        self.server.hangup();
    }

    /// Freezes the broker (SIGSTOP): connections stay open but nothing is read,
    /// forwarded or acknowledged, until [`stop`](Self::stop) or SIGCONT.
    pub fn freeze(&self) {
        self.server.signal("STOP");
    }

    /// The tail of its logs, for assertion messages.
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    /// The underlying [`Server`].
    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }
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

/// A minimal HTTP/1.1 client for talking to test servers on loopback: `(status, body)`.
/// (Tests must not depend on the client code they test.)
pub fn http(method: &str, addr: SocketAddr, path_and_query: &str, body: &[u8]) -> (u16, String) {
    use std::io::Write;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let head = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .unwrap_or_else(|e| panic!("cannot send to {addr}: {e}"));
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("cannot read the answer of {addr}: {e}"));
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer from {addr}: {head}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Percent-encode a query value.
pub fn urlencode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// InfluxDB 1.x (`influxd`) on a free loopback port: every listener on loopback, data in
/// a temporary directory, reporting disabled, auth off. Stopped on drop.
#[derive(Debug)]
pub struct Influxd {
    server: Server,
}

impl Influxd {
    /// Start it and wait until its HTTP API answers `/ping`.
    pub fn start() -> Self {
        let port = free_port();
        let rpc = free_port();
        let mut server = Server::new("influxd", ServerCommand::new("influxd"), port)
            .with_ready_timeout(Duration::from_secs(30));
        let dir = server.dir().to_path_buf();
        let conf = dir.join("influxdb.conf");
        let text = format!(
            r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[coordinator]
  log-queries-after = "0s"
[retention]
  enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  auth-enabled = false
  log-enabled = false
  max-body-size = 0
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
[logging]
  level = "warn"
"#,
            d = dir.display()
        );
        fs::write(&conf, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        server
            .command_mut()
            .args
            .extend(["run".into(), "-config".into(), conf.into()]);
        server.start();
        let mut influxd = Influxd { server };
        influxd.wait_ping();
        influxd
    }

    fn wait_ping(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(self.server.addr()).is_ok() {
                let (status, _) = http("GET", self.server.addr(), "/ping", b"");
                if status == 204 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "influxd does not answer /ping\n{}",
                self.server.log_tail()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// Run an InfluxQL statement (`POST /query`, times in epoch milliseconds), return the
    /// JSON answer. Panics unless the server answers 200.
    pub fn query(&self, db: &str, q: &str) -> String {
        let path = format!("/query?db={}&epoch=ms&q={}", urlencode(db), urlencode(q));
        let (status, body) = http("POST", self.server.addr(), &path, b"");
        assert_eq!(status, 200, "query {q}: {body}");
        body
    }

    /// Write line protocol directly (`POST /write`), return the status and body.
    pub fn write(&self, db: &str, lines: &str) -> (u16, String) {
        let path = format!("/write?db={}&precision=ms", urlencode(db));
        http("POST", self.server.addr(), &path, lines.as_bytes())
    }

    /// Kill it (clients see connections refused). Its data stays.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Start it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.server.restart();
        self.wait_ping();
    }

    /// The underlying [`Server`].
    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }
}

/// VictoriaMetrics (single node) on a free loopback port, data in a temporary directory,
/// `-retentionPeriod 100y` (simulated data may be old) and `-dedup.minScrapeInterval 1ms`
/// (one sample per series and millisecond: writes overwrite like InfluxDB's). Stopped on
/// drop.
#[derive(Debug)]
pub struct VictoriaMetrics {
    server: Server,
}

impl VictoriaMetrics {
    /// Start it and wait until it answers `/health`.
    pub fn start() -> Self {
        let port = free_port();
        let mut server = Server::new(
            "victoria-metrics",
            ServerCommand::new("victoria-metrics"),
            port,
        )
        .with_ready_timeout(Duration::from_secs(30));
        let data = server.dir().join("data");
        server.command_mut().args.extend(
            [
                format!("-httpListenAddr=127.0.0.1:{port}"),
                format!("-storageDataPath={}", data.display()),
                "-retentionPeriod=100y".to_string(),
                "-dedup.minScrapeInterval=1ms".to_string(),
                "-search.latencyOffset=0s".to_string(),
                "-loggerLevel=WARN".to_string(),
            ]
            .map(OsString::from),
        );
        server.start();
        VictoriaMetrics { server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// Make everything ingested so far searchable (`/internal/force_flush`).
    pub fn flush(&self) {
        let (status, body) = http("GET", self.server.addr(), "/internal/force_flush", b"");
        assert_eq!(status, 200, "force_flush: {body}");
    }

    /// `GET path` (e.g. `/api/v1/export?match[]=…`), flushing first; panics unless 200.
    pub fn get(&self, path_and_query: &str) -> String {
        self.flush();
        let (status, body) = http("GET", self.server.addr(), path_and_query, b"");
        assert_eq!(status, 200, "GET {path_and_query}: {body}");
        body
    }

    /// Stop it cleanly (SIGTERM: it flushes what it accepted).
    pub fn stop(&mut self) {
        self.server.terminate();
    }

    /// Start it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.server.terminate();
        self.server.start();
    }

    /// The underlying [`Server`].
    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }
}

fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // The owner of /proc/self is the process's effective user.
        fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free");
    }

    #[test]
    fn missing_binary_skips_locally_and_fails_in_ci() {
        let name = "smartgrid-testkit-no-such-program";
        let outcome = std::panic::catch_unwind(|| require_binary(name));
        if in_ci() {
            let message = *outcome
                .expect_err("a missing program fails under CI")
                .downcast::<String>()
                .expect("a formatted panic message");
            assert!(message.contains(name), "{message}");
        } else {
            assert_eq!(outcome.ok(), Some(false));
        }
        assert!(require_binary("sh") || find_binary("sh").is_none());
    }

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
    fn server_that_exits_reports_its_stderr() {
        let Some(sh) = find_binary("sh") else {
            return;
        };
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

    #[test]
    fn mosquitto_starts_stops_and_restarts_on_the_same_port() {
        if !require_binary("mosquitto") {
            return;
        }
        let mut broker = Mosquitto::start();
        let port = broker.port();
        assert_eq!(broker.url(), format!("mqtt://127.0.0.1:{port}"));
        TcpStream::connect(("127.0.0.1", port)).expect("running");
        broker.stop();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped");
        broker.restart();
        TcpStream::connect(("127.0.0.1", port)).expect("running again");
    }

    #[test]
    fn influxd_stores_and_answers_queries_across_a_restart() {
        if !require_binary("influxd") {
            return;
        }
        let mut db = Influxd::start();
        db.query("t", "CREATE DATABASE t");
        let (status, body) = db.write("t", "m,s=a v=1.5 1000\nm,s=a v=2.5 2000\n");
        assert_eq!(status, 204, "{body}");
        db.restart();
        let answer = db.query("t", "SELECT sum(v) FROM m");
        assert!(answer.contains("[[0,4]]"), "{answer}");
    }

    #[test]
    fn victoria_metrics_takes_v2_line_protocol() {
        if !require_binary("victoria-metrics") {
            return;
        }
        let vm = VictoriaMetrics::start();
        let (status, body) = http(
            "POST",
            vm.server.addr(),
            "/api/v2/write?org=o&bucket=b&precision=ms",
            b"m,s=a v=1.25 1000\nm,s=a v=2.5 2000\n",
        );
        assert_eq!(status, 204, "{body}");
        let export = vm.get("/api/v1/export?match[]=m_v");
        assert!(export.contains("[1.25,2.5]"), "{export}");
        assert!(export.contains("[1000,2000]"), "{export}");
    }
}
