//! The HTTP endpoints: one axum [`Router`] (`GET /metrics` in the Prometheus
//! text format, `GET /healthz`, the live page at `/` with its JSON API and
//! event stream from [`crate::dashboard`], and the push hooks'
//! `POST /hooks/git` from [`crate::hooks`]) served by hyper on the process's
//! tokio runtime.
//!
//! Bounded, so no client can pile up work: at most [`MAX_CONNECTIONS`] open
//! connections (more wait in the kernel's backlog until one closes), each
//! closed after one response, its request head read within
//! [`HEAD_TIMEOUT`]; at most [`MAX_IN_FLIGHT`] requests handled at once, each
//! answered within [`REQUEST_TIMEOUT`] (else 408). Scrapers connect every
//! few seconds at most. The page's event streams are outside the in-flight
//! limit (they last minutes) and capped by their own count; each request
//! carries a [`CloseConnection`] a stream uses to drop a client that stops
//! reading.
//!
//! Other endpoints (model serving, push hooks) join the same router:
//! [`router`] builds it from the shared [`HttpState`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::metrics::{health, Metrics};
use crate::dashboard::{CloseConnection, Dashboard};

/// Open connections at most.
pub const MAX_CONNECTIONS: usize = 256;
/// Requests being handled at once at most.
pub const MAX_IN_FLIGHT: usize = 16;
/// Time for a client to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to answer one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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

/// What the handlers share.
#[derive(Clone)]
pub struct HttpState {
    /// `/metrics` and `/healthz` read through it.
    pub metrics: Arc<Metrics>,
    /// The live page and its API (`None`: a bare index at `/`).
    pub dashboard: Option<Dashboard>,
}

/// The router of every endpoint, with the request limits applied.
pub fn router(state: HttpState) -> Router {
    let dashboard = state.dashboard.clone();
    let mut app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz));
    if dashboard.is_none() {
        app = app.route("/", get(index));
    }
    let mut app = app.fallback(not_found).with_state(state);
    if let Some(d) = &dashboard {
        app = app.merge(crate::dashboard::router(d.clone()));
    }
    let app = app
        // Outermost last: the timeout also covers waiting for a slot.
        .layer(GlobalConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ));
    match dashboard {
        Some(d) => app.merge(crate::dashboard::stream_router(d)),
        None => app,
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    // Reads files (the champion's card, the event log): off the async workers.
    let m = state.metrics.clone();
    match tokio::task::spawn_blocking(move || m.render()).await {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn healthz(State(state): State<HttpState>) -> Response {
    let m = state.metrics.clone();
    match tokio::task::spawn_blocking(move || health(&m)).await {
        Ok(Ok(msg)) => (StatusCode::OK, msg + "\n").into_response(),
        Ok(Err(msg)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {msg}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn index() -> Html<&'static str> {
    Html("<html><body><a href=\"/metrics\">/metrics</a> <a href=\"/healthz\">/healthz</a></body></html>\n")
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}

/// A running endpoint; dropping it stops accepting (open connections finish).
pub struct HttpServer {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl HttpServer {
    /// The address actually bound (port 0 picks a free one).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Starts the endpoint `--metrics-addr` names (if any) on the current
/// runtime; it serves while the returned handle lives.
pub async fn start(
    cfg: &crate::config::Config,
    progress: &Arc<crate::train::Progress>,
    training: &Arc<std::sync::atomic::AtomicBool>,
) -> Result<Option<HttpServer>, HttpError> {
    let Some(addr) = cfg.metrics_addr else {
        return Ok(None);
    };
    let metrics = Arc::new(Metrics::new(progress.clone(), cfg.state_dir.clone()));
    let dashboard = Dashboard::new(
        cfg.state_dir.clone(),
        progress.clone(),
        training.clone(),
        cfg.serve_addr,
    );
    let hooks = crate::hooks::router(crate::hooks::HookSettings {
        secret: cfg.hook_secret.clone(),
        workspace: cfg.data_dir.clone(),
        remote: cfg.git_remote.clone().unwrap_or_else(|| "origin".into()),
    });
    let state = HttpState {
        metrics,
        dashboard: Some(dashboard),
    };
    serve(addr, router(state).merge(hooks)).await.map(Some)
}

/// Binds `addr` now (so a taken port is an error at start) and serves `app`
/// on the current runtime.
pub async fn serve(addr: SocketAddr, app: Router) -> Result<HttpServer, HttpError> {
    let bind_err = |e: std::io::Error| HttpError::Bind {
        addr,
        what: e.to_string(),
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let bound = listener.local_addr().map_err(bind_err)?;
    let (stop, stopped) = oneshot::channel();
    let policy = ConnectionPolicy {
        max_connections: MAX_CONNECTIONS,
        head_timeout: HEAD_TIMEOUT,
        keep_alive: false,
        name: "metrics endpoint",
    };
    tokio::spawn(accept_loop(listener, app, policy, stopped));
    tracing::info!(addr = %bound, "metrics endpoint listening (the live page at /, /api/v1, /metrics, /healthz)");
    Ok(HttpServer {
        addr: bound,
        _stop: stop,
    })
}

/// How [`accept_loop`] treats connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionPolicy {
    /// Open connections at most (more wait in the kernel's backlog).
    pub max_connections: usize,
    /// Time for a request head (also an idle kept-alive connection's limit).
    pub head_timeout: Duration,
    /// Keep connections open between requests (serving) or close after one (scrapes).
    pub keep_alive: bool,
    /// Names the endpoint in debug logs.
    pub name: &'static str,
}

/// Accepts while a connection slot is free, each connection on its own task,
/// until `stopped` fires.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    policy: ConnectionPolicy,
    mut stopped: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(policy.max_connections.max(1)));
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            _ = &mut stopped => return,
        };
        let Ok(slot) = slot else { return };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stopped => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::debug!("{}: accept failed: {e}", policy.name);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if policy.keep_alive {
            let _ = stream.set_nodelay(true);
        }
        let closer = CloseConnection::default();
        let handle = closer.clone();
        let service = TowerToHyperService::new(
            tower::ServiceBuilder::new()
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(handle.clone());
                    req
                })
                .service(app.clone()),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(policy.head_timeout)
                .keep_alive(policy.keep_alive)
                .serve_connection(TokioIo::new(stream), service);
            let served = tokio::select! {
                served = conn => served,
                // A stream whose client stopped reading: drop the connection.
                _ = closer.closed() => Ok(()),
            };
            if let Err(e) = served {
                tracing::debug!("{}: connection ended: {e}", policy.name);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Progress;
    use std::io::{Read, Write};
    use std::net::TcpStream;

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

    fn serve_metrics(rt: &tokio::runtime::Runtime, m: Arc<Metrics>) -> HttpServer {
        let app = router(HttpState {
            metrics: m,
            dashboard: None,
        });
        rt.block_on(serve("127.0.0.1:0".parse().unwrap(), app))
            .unwrap()
    }

    #[test]
    fn serves_metrics_that_follow_progress_and_healthz() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let progress = Arc::new(Progress::default());
        let m = Arc::new(Metrics::new(progress.clone(), dir.path().to_path_buf()));
        let server = serve_metrics(&rt, m);
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
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(Metrics::new(Arc::default(), dir.path().to_path_buf()));
        let first = serve_metrics(&rt, m.clone());
        let app = router(HttpState {
            metrics: m,
            dashboard: None,
        });
        let err = rt
            .block_on(serve(first.addr(), app))
            .err()
            .expect("second bind fails");
        assert!(err.to_string().contains(&first.addr().to_string()), "{err}");
    }

    #[test]
    fn a_client_that_sends_nothing_holds_no_slot_for_others() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(Metrics::new(Arc::default(), dir.path().to_path_buf()));
        let server = serve_metrics(&rt, m);
        // More silent connections than requests may be in flight: each has
        // its own connection task, so a scrape still answers.
        let idle: Vec<TcpStream> = (0..MAX_IN_FLIGHT + 2)
            .map(|_| TcpStream::connect(server.addr()).unwrap())
            .collect();
        assert_eq!(get(server.addr(), "/metrics").0, "HTTP/1.1 200 OK");
        drop(idle);
    }
}
