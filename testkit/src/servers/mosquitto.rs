use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use crate::binary::running_as_root;
use crate::{Server, ServerCommand, free_port};

/// A mosquitto broker on a free loopback port, with persistence off, killed on drop.
///
/// ```no_run
/// testkit::require_binary("mosquitto");
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
}
