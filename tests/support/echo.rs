//! A hostile HTTP server for secret tests.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// An HTTP server on loopback that answers every request (up to 500) with 400 and the
/// request's head, its `Authorization` header too, as the error: the worst a server can
/// do with a token. Returns its port.
pub fn echoing_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten().take(500) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut request = Vec::new();
            let mut buffer = [0u8; 65536];
            // Headers and a small body arrive within one or two reads.
            while let Ok(n) = stream.read(&mut buffer) {
                request.extend_from_slice(&buffer[..n]);
                if n == 0 || n < buffer.len() {
                    break;
                }
            }
            let head: String = String::from_utf8_lossy(&request)
                .split("\r\n\r\n")
                .next()
                .unwrap_or_default()
                .to_string();
            let body = format!("{{\"error\":\"bad request\",\"request\":{head:?}}}");
            let _ = write!(
                stream,
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}
