use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Server, ServerCommand, free_port, http, try_http, urlencode};

/// Prometheus on a free loopback port, scraping `targets` every second, its data in a
/// temporary directory. The Debian package's system service (port 9090) is not used.
/// Stopped on drop.
#[derive(Debug)]
pub struct Prometheus {
    server: Server,
}

impl Prometheus {
    /// Start it, scraping `/metrics` of every target every second, and wait until it
    /// says it is ready (`/-/ready`).
    pub fn start(targets: &[SocketAddr]) -> Self {
        let port = free_port();
        let mut server = Server::new("prometheus", ServerCommand::new("prometheus"), port)
            .with_ready_timeout(Duration::from_secs(30));
        let dir = server.dir().to_path_buf();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: smartgrid\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        server.command_mut().args.extend(
            [
                format!("--config.file={}", config_path.display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn".to_string(),
            ]
            .map(OsString::from),
        );
        server.start();
        // The port opens before the storage is: queries answer 503 until `/-/ready`.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            // A starting server can also accept a connection and then reset it.
            let answer = try_http("GET", server.addr(), "/-/ready", b"");
            if matches!(answer, Ok((200, _))) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "Prometheus is not ready: {answer:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Prometheus { server }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.server.port())
    }

    /// The JSON answer of an instant query (`/api/v1/query`); panics unless 200.
    pub fn query(&self, promql: &str) -> String {
        let path = format!("/api/v1/query?query={}", urlencode(promql));
        let (status, body) = http("GET", self.server.addr(), &path, b"");
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The JSON answer of `/api/v1/targets` (each target's health and last error).
    pub fn targets(&self) -> String {
        let (status, body) = http("GET", self.server.addr(), "/api/v1/targets", b"");
        assert_eq!(status, 200, "GET /api/v1/targets: {body}");
        body
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
    fn prometheus_answers_queries() {
        crate::require_binary("prometheus");
        let prometheus = Prometheus::start(&[]);
        let body = prometheus.query("vector(1)");
        assert!(body.contains(r#""status":"success""#), "{body}");
    }
}
