//! The metrics endpoint: a small HTTP/1.1 server on a std thread serving
//! `GET /metrics` (Prometheus text format) and `GET /healthz`.
//!
//! A thread per connection, each closed after one response: scrapers connect
//! every few seconds at most, and no request can hold the accept loop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::metrics::{health, Metrics};

/// Errors starting the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("metrics endpoint: cannot listen on {addr}: {what}")]
    Bind { addr: SocketAddr, what: String },
}

impl crate::exit::ExitStatus for HttpError {
    fn exit_code(&self) -> u8 {
        crate::exit::CONFIG
    }
}

/// A running endpoint; dropping it stops the accept loop.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address actually bound (port 0 picks a free one).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// Leaves the endpoint serving until the process exits.
    pub fn detach(mut self) -> SocketAddr {
        self.thread = None;
        self.addr
    }
}

/// Starts the endpoint `--metrics-addr` names (if any) for the process's
/// lifetime; returns the address bound.
pub fn start(
    cfg: &crate::config::Config,
    progress: &Arc<crate::train::Progress>,
) -> Result<Option<SocketAddr>, HttpError> {
    let Some(addr) = cfg.metrics_addr else {
        return Ok(None);
    };
    let metrics = Metrics::new(progress.clone(), cfg.state_dir.clone());
    Ok(Some(serve(addr, Arc::new(metrics))?.detach()))
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if self.thread.is_none() {
            return;
        }
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `addr` now (so a taken port is an error at start) and serves in
/// the background.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<MetricsServer, HttpError> {
    let bind_err = |e: std::io::Error| HttpError::Bind {
        addr,
        what: e.to_string(),
    };
    let listener = TcpListener::bind(addr).map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let m = metrics.clone();
                let _ = std::thread::Builder::new()
                    .name("metrics-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(stream, &m) {
                            tracing::debug!("metrics request failed: {e}");
                        }
                    });
            }
        })
        .map_err(bind_err)?;
    tracing::info!(addr = %bound, "metrics endpoint listening (/metrics, /healthz)");
    Ok(MetricsServer {
        addr: bound,
        stop,
        thread: Some(thread),
    })
}

/// Reads the request head (up to 8 KiB) and returns method and path.
fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, String)> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_string();
    Ok((method, path))
}

fn handle(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let (method, path) = read_request(&mut stream)?;
    let (status, ctype, body) = match (method.as_str(), path.as_str()) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET" | "HEAD", "/healthz") => match health(metrics) {
            Ok(msg) => ("200 OK", "text/plain; charset=utf-8", msg + "\n"),
            Err(msg) => (
                "503 Service Unavailable",
                "text/plain; charset=utf-8",
                format!("unhealthy: {msg}\n"),
            ),
        },
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/html; charset=utf-8",
            "<html><body><a href=\"/metrics\">/metrics</a> <a href=\"/healthz\">/healthz</a></body></html>\n".into(),
        ),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "not found\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Progress;

    fn get(addr: SocketAddr, path: &str) -> (String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    fn sample(body: &str, name: &str) -> Option<f64> {
        body.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn serves_metrics_that_follow_progress_and_healthz() {
        let dir = tempfile::tempdir().unwrap();
        let progress = Arc::new(Progress::default());
        let m = Arc::new(Metrics::new(progress.clone(), dir.path().to_path_buf()));
        let server = serve("127.0.0.1:0".parse().unwrap(), m).unwrap();
        let addr = server.addr();

        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(sample(&body, "trainerd_step"), Some(0.0));
        assert_eq!(
            sample(&body, "trainerd_val_accuracy"),
            None,
            "unknown yet: left out"
        );
        assert_eq!(sample(&body, "trainerd_checkpoint_age_seconds"), None);

        progress.start_trial(3, 100, 0);
        progress.set_step(42);
        progress.end_epoch(1, 0.25, 0.875);
        progress.checkpoint_saved();
        let (_, body) = get(addr, "/metrics?x=1");
        assert_eq!(sample(&body, "trainerd_step"), Some(42.0));
        assert_eq!(sample(&body, "trainerd_trial"), Some(3.0));
        assert_eq!(sample(&body, "trainerd_epoch"), Some(1.0));
        assert_eq!(sample(&body, "trainerd_train_loss"), Some(0.25));
        assert_eq!(sample(&body, "trainerd_val_accuracy"), Some(0.875));
        assert!(sample(&body, "trainerd_checkpoint_age_seconds").unwrap() < 60.0);
        assert!(body.contains("# TYPE trainerd_restarts_total counter"));

        let (status, body) = get(addr, "/healthz");
        assert!(status.contains("503"), "no heartbeat yet: {status} {body}");
        let beat = crate::telemetry::heartbeat::Heartbeat::from_progress(&progress, true);
        std::fs::write(
            crate::telemetry::heartbeat::path(dir.path()),
            serde_json::to_vec(&beat).unwrap(),
        )
        .unwrap();
        let (status, _) = get(addr, "/healthz");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(get(addr, "/nope").0.contains("404"));
    }

    #[test]
    fn taken_port_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(Metrics::new(Arc::default(), dir.path().to_path_buf()));
        let first = serve("127.0.0.1:0".parse().unwrap(), m.clone()).unwrap();
        let err = serve(first.addr(), m).err().expect("second bind fails");
        assert!(err.to_string().contains(&first.addr().to_string()), "{err}");
    }
}
