//! `/api/v1/stream`: Server-Sent Events that tell an open page what
//! changed. One shared task looks at the state dir and the progress
//! counters every [`TICK`] (only while a stream is open) and sends the
//! status (`event: status`) through a broadcast channel when it differs
//! from the last; each stream forwards it into a small queue its response
//! body drains. A client that stops reading fills that queue and is
//! dropped (its connection closed), never buffered without bound. At most
//! [`MAX_STREAMS`] are open at once (more: 503), apart from the server's
//! cap on requests in flight; each ends after [`MAX_LIFETIME`] (the
//! browser reconnects).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use http_body::Frame;
use tokio::sync::{broadcast, mpsc, Notify, Semaphore};

use super::{lock, Dashboard, Inner};

/// Streams open at most.
pub const MAX_STREAMS: usize = 32;
/// How often the shared task looks for changes.
pub const TICK: Duration = Duration::from_millis(500);
/// Messages queued for one client at most before it counts as not reading.
pub const QUEUE: usize = 16;
/// A stream ends after this (the page's EventSource reconnects).
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// A comment this often, so a proxy keeps the stream open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often serve figures are read again.
const SERVE_EVERY: Duration = Duration::from_secs(2);

/// Closes the connection it was handed with: the server's accept loop puts
/// one into each request's extensions, and a stream whose client stopped
/// reading uses it (a response body that is not drained cannot end itself).
#[derive(Clone, Default)]
pub struct CloseConnection(Arc<Notify>);

impl CloseConnection {
    /// Asks the connection's task to drop the connection.
    pub fn close(&self) {
        self.0.notify_one();
    }
    /// Resolves once [`CloseConnection::close`] was called.
    pub async fn closed(&self) {
        self.0.notified().await
    }
}

/// The last status sent: its number, its JSON, the message that carried it.
#[derive(Default)]
struct Last {
    seq: u64,
    data: String,
    msg: Bytes,
    /// The serve figures last read.
    figures: serde_json::Value,
}

/// The broadcast of status changes and the streams' slots.
pub struct Hub {
    tx: broadcast::Sender<Bytes>,
    slots: Arc<Semaphore>,
    /// The last status sent (a new stream starts with it).
    last: Mutex<Last>,
    open: AtomicU64,
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            tx: broadcast::channel(QUEUE).0,
            slots: Arc::new(Semaphore::new(MAX_STREAMS)),
            last: Mutex::default(),
            open: AtomicU64::new(0),
        }
    }
    /// The serve figures last read (`null` before the first look).
    pub fn figures(&self) -> serde_json::Value {
        lock(&self.last).figures.clone()
    }
    /// Streams open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
}

pub fn routes() -> Router<Dashboard> {
    Router::new().route(
        "/api/v1/stream",
        get(stream).fallback(super::api::read_only),
    )
}

fn tick() -> Duration {
    // Tests shorten it with TRAINERD_DASHBOARD_TICK_MS (like TRAINERD_HEARTBEAT_MS).
    std::env::var("TRAINERD_DASHBOARD_TICK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(TICK, |ms: u64| Duration::from_millis(ms.max(10)))
}

/// Starts the shared task; it ends when the dashboard is dropped.
pub fn spawn_poller(d: &Dashboard) {
    let weak = Arc::downgrade(&d.inner);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(tick());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut serve = (serde_json::Value::Null, None::<tokio::time::Instant>);
        loop {
            every.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.hub.tx.receiver_count() == 0 {
                continue;
            }
            if serve.1.is_none_or(|t| t.elapsed() >= SERVE_EVERY) {
                serve = (
                    super::live::serve_figures(inner.serve_addr).await,
                    Some(tokio::time::Instant::now()),
                );
            }
            let figures = serve.0.clone();
            lock(&inner.hub.last).figures = figures.clone();
            let i = inner.clone();
            let Ok(status) =
                tokio::task::spawn_blocking(move || super::live::status(&i, figures)).await
            else {
                continue;
            };
            publish(&inner, &status);
        }
    });
}

/// Sends `status` when it differs from the last one sent.
fn publish(inner: &Inner, status: &serde_json::Value) {
    let data = status.to_string();
    let mut last = lock(&inner.hub.last);
    if last.seq > 0 && last.data == data {
        return;
    }
    last.seq += 1;
    last.msg = Bytes::from(format!("event: status\nid: {}\ndata: {data}\n\n", last.seq));
    last.data = data;
    let _ = inner.hub.tx.send(last.msg.clone());
}

async fn stream(
    State(d): State<Dashboard>,
    closer: Option<Extension<CloseConnection>>,
) -> Response {
    let Ok(slot) = d.inner.hub.slots.clone().try_acquire_owned() else {
        let mut r = super::api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} streams are open, the most this server keeps; try again later"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    };
    let rx = d.inner.hub.tx.subscribe();
    // A fresh status first (the last one sent may be old while no stream was open).
    let figures = d.inner.hub.figures();
    let i = d.inner.clone();
    let first = tokio::task::spawn_blocking(move || super::live::status(&i, figures))
        .await
        .map(|s| Bytes::from(format!("event: status\ndata: {s}\n\n")))
        .unwrap_or_default();
    let (tx, body) = mpsc::channel::<Bytes>(QUEUE);
    let _ = tx.try_send(Bytes::from_static(b"retry: 2000\n\n"));
    let _ = tx.try_send(first);
    let inner = d.inner.clone();
    inner.hub.open.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        forward(rx, tx, closer.map(|c| c.0)).await;
        inner.hub.open.fetch_sub(1, Ordering::Relaxed);
        drop(slot);
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::new(SseBody(body)),
    )
        .into_response()
}

/// Moves broadcast messages into the client's queue until the client goes
/// away, stops reading (its queue is full, or it lagged behind the
/// broadcast), or the stream's lifetime is over.
async fn forward(
    mut rx: broadcast::Receiver<Bytes>,
    tx: mpsc::Sender<Bytes>,
    closer: Option<CloseConnection>,
) {
    let mut keep = tokio::time::interval(KEEP_ALIVE);
    keep.tick().await;
    let end = tokio::time::sleep(MAX_LIFETIME);
    tokio::pin!(end);
    loop {
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Ok(m) => m,
                Err(broadcast::error::RecvError::Lagged(_)) => break drop_slow(&closer),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = keep.tick() => Bytes::from_static(b": keep-alive\n\n"),
            _ = tx.closed() => return,
            _ = &mut end => return,
        };
        if tx.try_send(msg).is_err() {
            break drop_slow(&closer);
        }
    }
}

fn drop_slow(closer: &Option<CloseConnection>) {
    tracing::info!("dropping a live-page stream whose client does not read");
    if let Some(c) = closer {
        c.close();
    }
}

/// The response body: whatever the queue holds, as it arrives.
struct SseBody(mpsc::Receiver<Bytes>);

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(Frame::data(b))))
    }
}
