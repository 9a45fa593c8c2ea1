use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::binary::running_as_root;
use crate::{Server, ServerCommand, free_port};

/// A mosquitto broker on a free loopback port, killed on drop. Persistence is off
/// unless it was started with [`start_persistent`](Self::start_persistent).
///
/// ```no_run
/// testkit::require_binary("mosquitto");
/// let mut broker = testkit::Mosquitto::start();
/// let url = broker.url();
/// broker.restart(); // same port; sessions are gone (persistence false)
///
/// let mut kept = testkit::Mosquitto::start_persistent("");
/// kept.terminate(); // SIGTERM: mosquitto saves its sessions and queued messages
/// kept.restart(); // same port, sessions restored
/// ```
#[derive(Debug)]
pub struct Mosquitto {
    server: Server,
    /// The persistence database, for a persistent broker.
    database: Option<PathBuf>,
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
        Self::launch(config_extra, false)
    }

    /// Like [`start_with`](Self::start_with), with `persistence true`: sessions,
    /// subscriptions and queued messages are written to `mosquitto.db` in its directory
    /// when it stops with SIGTERM ([`terminate`](Self::terminate)), on SIGUSR1
    /// ([`save`](Self::save)) and every `autosave_interval` seconds (mosquitto's
    /// default: 1800; set it in `config_extra`), and read back when it starts again.
    /// What it had not written is lost when it is killed ([`stop`](Self::stop)).
    pub fn start_persistent(config_extra: &str) -> Self {
        Self::launch(config_extra, true)
    }

    fn launch(config_extra: &str, persistent: bool) -> Self {
        let port = free_port();
        let mut server = Server::new("mosquitto", Self::command(), port);
        let log = server.dir().join("mosquitto.log");
        let conf = server.dir().join("mosquitto.conf");
        let database = persistent.then(|| server.dir().join("mosquitto.db"));
        fs::write(
            &conf,
            Self::config(port, &log, database.as_deref(), config_extra),
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
        server.command_mut().args.extend(["-c".into(), conf.into()]);
        let mut server = server.with_log(log);
        server.start();
        Mosquitto { server, database }
    }

    fn command() -> ServerCommand {
        ServerCommand::new("mosquitto")
    }

    fn config(port: u16, log: &Path, database: Option<&Path>, extra: &str) -> String {
        let mut conf = String::new();
        // Run as root only when started as root: mosquitto otherwise drops to the
        // `mosquitto` user, which cannot read files in a root-owned temp dir. For a
        // non-root user the option has no effect.
        if running_as_root() {
            conf.push_str("user root\n");
        }
        match database.and_then(|db| Some((db.parent()?, db.file_name()?))) {
            Some((dir, file)) => {
                let _ = writeln!(conf, "persistence true");
                // mosquitto joins the location and the file name without a separator.
                let _ = writeln!(conf, "persistence_location {}/", dir.display());
                let _ = writeln!(conf, "persistence_file {}", file.to_string_lossy());
            }
            None => {
                let _ = writeln!(conf, "persistence false");
            }
        }
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

    /// `mosquitto_pub` to this broker at QoS 1 on `topic`; the caller adds the message
    /// (`-m TEXT` or `-f FILE`).
    pub fn publisher(&self, topic: &str) -> std::process::Command {
        let mut command = std::process::Command::new(crate::require_binary("mosquitto_pub"));
        command
            .args(["-h", "127.0.0.1", "-p", &self.port().to_string(), "-q", "1"])
            .args(["-t", topic]);
        command
    }

    /// The message retained on `topic` (as `mosquitto_sub --retained-only` prints it,
    /// trimmed), or `None` if there is none.
    pub fn retained(&self, topic: &str) -> Option<String> {
        let out = std::process::Command::new(crate::require_binary("mosquitto_sub"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port().to_string(),
                "-t",
                topic,
            ])
            .args(["-C", "1", "-W", "3", "--retained-only"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run mosquitto_sub: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!text.is_empty()).then_some(text)
    }

    /// `mqtt://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port())
    }

    /// Kills the broker with SIGKILL (clients see the connection drop; a persistent
    /// broker loses what it had not saved).
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Stops the broker with SIGTERM and waits for it to exit: a persistent broker
    /// saves its database first. [`restart`](Self::restart) starts it again.
    pub fn terminate(&mut self) {
        self.server.terminate();
    }

    /// Starts it again on the same port with the same config: without any session
    /// state, unless it is persistent (then with what it last saved). Kills it first
    /// if it is running; works after [`stop`](Self::stop) and
    /// [`terminate`](Self::terminate) too.
    pub fn restart(&mut self) {
        self.server.restart();
    }

    /// Makes a persistent broker write its database now (SIGUSR1) and waits until it
    /// has. Panics for a broker without persistence.
    pub fn save(&self) {
        let before = self.saved_version();
        self.server.signal("USR1");
        self.wait_saved_since(before);
    }

    /// Waits until a persistent broker next writes its database (an autosave, see
    /// [`start_persistent`](Self::start_persistent)). Panics for a broker without
    /// persistence, or after 10 s.
    pub fn wait_autosave(&self) {
        let before = self.saved_version();
        self.wait_saved_since(before);
    }

    /// The database's inode and modification time: mosquitto writes a new file and
    /// renames it over the old one, so either changes with every save.
    fn saved_version(&self) -> Option<(u64, i64, i64)> {
        let database = self
            .database
            .as_ref()
            .expect("a broker started with Mosquitto::start_persistent");
        let meta = fs::metadata(database).ok()?;
        Some((meta.ino(), meta.mtime(), meta.mtime_nsec()))
    }

    fn wait_saved_since(&self, before: Option<(u64, i64, i64)>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.saved_version();
            if now.is_some() && now != before {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not save its database within 10 s\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(20));
        }
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

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn mosquitto_starts_stops_and_restarts_on_the_same_port() {
        crate::require_binary("mosquitto");
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
    fn a_persistent_mosquitto_saves_on_demand_on_autosave_and_on_sigterm() {
        crate::require_binary("mosquitto");
        let mut broker = Mosquitto::start_persistent("autosave_interval 1\n");
        let database = broker.dir().join("mosquitto.db");
        broker.save();
        assert!(database.exists(), "{}", broker.log_tail());
        broker.wait_autosave();
        broker.terminate();
        fs::remove_file(&database).expect("the saved database");
        broker.restart();
        broker.terminate();
        assert!(database.exists(), "saved on SIGTERM\n{}", broker.log_tail());
        broker.restart();
        TcpStream::connect(("127.0.0.1", broker.port())).expect("running again");
    }
}
