use std::ffi::OsString;
use std::time::Duration;

use crate::{Server, ServerCommand, free_port, http};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn victoria_metrics_takes_v2_line_protocol() {
        crate::require_binary("victoria-metrics");
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
