//! The live page and its read-only JSON API, on the daemon's HTTP server
//! (`--metrics-addr`): `GET /` with its script and style (`page`), the
//! `/api/v1/…` JSON (`api`) built from the state dir (`studies`, `curves`,
//! `events`, `champion`, `live`) and the process's own progress counters,
//! and the Server-Sent Events stream `/api/v1/stream` (`stream`).
//!
//! Read-only and bounded: every file is read with a byte cap, nothing under
//! the state dir is written, curves are downsampled, lists are capped, and
//! open streams have their own cap beside the router's in-flight limit.
//! Every string from data (class names are folder names) reaches the page
//! as JSON and is set as text there; the Content-Security-Policy forbids
//! inline script and any other origin.

mod api;
mod champion;
mod curves;
mod events;
mod live;
mod page;
mod stream;
mod studies;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::Router;

pub use events::{parse_seq, EventTail};
pub use stream::CloseConnection;

use crate::train::Progress;
// A panic while a cache was held leaves a cache, still usable (each
// refresh re-reads what changed).
use crate::lock::lock;

/// The policy sent with the page, its assets and every API answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'";

/// What the page's handlers share: where to read, and the caches that keep
/// each file from being parsed again while it has not changed.
#[derive(Clone)]
pub struct Dashboard {
    inner: Arc<Inner>,
}

struct Inner {
    state_dir: PathBuf,
    progress: Arc<Progress>,
    /// Set while a trial trains (the heartbeat's flag).
    training: Arc<AtomicBool>,
    /// The `--serve-addr` of this process, whose `/metrics` the page shows.
    serve_addr: Option<std::net::SocketAddr>,
    events: Mutex<EventTail>,
    journal: Mutex<studies::JournalCache>,
    curves: Mutex<curves::CurveCache>,
    champion: Mutex<champion::ChampionCache>,
    hub: stream::Hub,
}

impl Dashboard {
    /// The page of `state_dir`, with this process's progress counters.
    /// Starts the stream's shared poller on the current tokio runtime.
    pub fn new(
        state_dir: PathBuf,
        progress: Arc<Progress>,
        training: Arc<AtomicBool>,
        serve_addr: Option<std::net::SocketAddr>,
    ) -> Dashboard {
        let d = Dashboard {
            inner: Arc::new(Inner {
                state_dir,
                progress,
                training,
                serve_addr,
                events: Mutex::new(EventTail::default()),
                journal: Mutex::default(),
                curves: Mutex::default(),
                champion: Mutex::default(),
                hub: stream::Hub::new(),
            }),
        };
        stream::spawn_poller(&d);
        d
    }
}

/// The page, its assets and the JSON API: to be placed under the server's
/// in-flight and time limits.
pub fn router(d: Dashboard) -> Router {
    page::routes()
        .merge(api::routes())
        .with_state(d)
        .layer(axum::middleware::map_response(secure))
}

/// `/api/v1/stream`: outside the in-flight limit (a stream lasts minutes),
/// capped by its own count of open streams.
pub fn stream_router(d: Dashboard) -> Router {
    stream::routes()
        .with_state(d)
        .layer(axum::middleware::map_response(secure))
}

/// Headers of every answer: the policy, no MIME sniffing, no referrer.
async fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

/// `s` cut to at most `max` characters (names and messages from files).
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
