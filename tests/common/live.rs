//! Helpers for the live page's tests: start the real binary with its HTTP
//! endpoint on a free port, and plain HTTP/1.1 requests over loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Spawns `cmd` (given `--metrics-addr 127.0.0.1:0`) logging to `log`, and
/// waits for the address its endpoint listens on.
pub fn spawn_with_endpoint(cmd: &mut Command, log: &Path) -> (Child, SocketAddr) {
    let mut child = super::spawn_logged(cmd, log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = super::read_log(log);
        let addr = text
            .lines()
            .filter(|l| l.contains("metrics endpoint listening"))
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| v["addr"].as_str().and_then(|a| a.parse().ok()));
        if let Some(addr) = addr {
            return (child, addr);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("trainerd exited ({status}) before listening:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "no 'metrics endpoint listening' line:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `method path` with an empty body: the status code, the head and the body.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

/// `GET path` answered 200 with JSON: the value.
pub fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (code, _, body) = request(addr, "GET", path);
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Sends SIGTERM to `child` (it checkpoints and exits) and waits.
pub fn stop(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap()
}
