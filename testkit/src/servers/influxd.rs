use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::{Server, ServerCommand, free_port, http, try_http, urlencode};

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
            // A starting influxd can accept a connection and then reset it: try again.
            if let Ok((204, _)) = try_http("GET", self.server.addr(), "/ping", b"") {
                return;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn influxd_stores_and_answers_queries_across_a_restart() {
        crate::require_binary("influxd");
        let mut db = Influxd::start();
        db.query("t", "CREATE DATABASE t");
        let (status, body) = db.write("t", "m,s=a v=1.5 1000\nm,s=a v=2.5 2000\n");
        assert_eq!(status, 204, "{body}");
        db.restart();
        let answer = db.query("t", "SELECT sum(v) FROM m");
        assert!(answer.contains("[[0,4]]"), "{answer}");
    }
}
