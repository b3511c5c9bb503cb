//! The serving endpoint's axum router: the Open Inference Protocol v2 REST
//! routes, `/metrics`, and the limits (body size, requests in flight,
//! request timeout). Errors are JSON, `{"error": "..."}`, as the protocol
//! specifies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::timeout::TimeoutLayer;

use super::binary;
use super::failure::Failure;
use super::infer::{Arriving, Core, Target};
use super::metadata;
use super::protocol::{self, Geometry, InferRequest, Validated, MODEL_NAME};

/// Largest request body: 16 MiB (a thousand MNIST images as JSON text).
pub const MAX_BODY: usize = 16 << 20;
/// Request bodies being read, parsed or answered at once, in KiB (256 MiB):
/// a request holds its body's length of it (the cap if undeclared) until
/// answered, so bodies and the values parsed from them (at most twice a
/// body's size) stay under 768 MiB however many clients send at once.
pub const BODY_BUDGET_KIB: usize = 256 << 10;
/// Time to answer one request, reading its body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bodies larger than this are parsed on a blocking thread, not a tokio worker.
const PARSE_INLINE: usize = 64 << 10;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub core: Core,
    /// [`BODY_BUDGET_KIB`] permits.
    pub bodies: Arc<tokio::sync::Semaphore>,
}

/// A JSON response.
fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn ok(value: serde_json::Value) -> Response {
    json(StatusCode::OK, &value)
}

fn error(status: StatusCode, what: impl Into<String>) -> Response {
    json(status, &serde_json::json!({ "error": what.into() }))
}

/// A shared-path failure as its HTTP status and message.
fn failed(f: Failure) -> Response {
    match f {
        Failure::NotFound(w) => error(StatusCode::NOT_FOUND, w),
        Failure::Unavailable(w) => error(StatusCode::SERVICE_UNAVAILABLE, w),
        Failure::Invalid(w) => error(StatusCode::BAD_REQUEST, w),
        Failure::Internal(w) => error(StatusCode::INTERNAL_SERVER_ERROR, w),
    }
}

/// The router, limits applied.
pub fn router(state: AppState) -> Router {
    let infer_routes = Router::new()
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_version),
        )
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(version_ready),
        )
        .route("/metrics", get(metrics))
        .merge(infer_routes)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
}

async fn observe(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let resp = next.run(req).await;
    app.core
        .metrics
        .observe(resp.status().as_u16(), start.elapsed().as_secs_f64());
    resp
}

async fn live() -> Response {
    ok(serde_json::json!({ "live": true }))
}

async fn ready(State(app): State<AppState>) -> Response {
    match app.core.shared.loaded() {
        Some(_) => ok(serde_json::json!({ "ready": true })),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no verified champion loaded yet",
        ),
    }
}

async fn server_metadata() -> Response {
    json(StatusCode::OK, &metadata::server_metadata())
}

fn metadata_answer(found: Result<Target, Failure>) -> Response {
    match found.map(|t| t.loaded) {
        Ok(l) => json(
            StatusCode::OK,
            &metadata::model_metadata(l.geometry, l.version, &l.class_names, l.platform),
        ),
        Err(f) => failed(f),
    }
}

async fn model_metadata(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    metadata_answer(app.core.resolve(&name, None).await)
}

async fn version_metadata(
    State(app): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    metadata_answer(app.core.resolve(&name, Some(&version)).await)
}

fn ready_answer(found: Result<Target, Failure>) -> Response {
    match found {
        Ok(_) => ok(serde_json::json!({ "name": MODEL_NAME, "ready": true })),
        Err(f) => failed(f),
    }
}

async fn model_ready(State(app): State<AppState>, Path(name): Path<String>) -> Response {
    ready_answer(app.core.resolve(&name, None).await)
}

async fn version_ready(
    State(app): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    ready_answer(app.core.resolve(&name, Some(&version)).await)
}

async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        app.core.metrics.render(),
    )
        .into_response()
}

async fn infer(State(app): State<AppState>, Path(name): Path<String>, req: Request) -> Response {
    infer_checked(app, name, None, req).await
}

async fn infer_version(
    State(app): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    req: Request,
) -> Response {
    infer_checked(app, name, Some(version), req).await
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {MAX_BODY} bytes; send fewer images per request"),
    )
}

/// The body, at most [`MAX_BODY`] bytes; a declared length beyond it is
/// refused before anything is read.
async fn read_body(req: Request) -> Result<Bytes, Response> {
    let declared = body_len(req.headers());
    if declared != usize::MAX && declared > MAX_BODY {
        return Err(too_large());
    }
    axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| {
            if e.to_string().contains("length limit exceeded") {
                too_large()
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}"),
                )
            }
        })
}

async fn infer_checked(
    app: AppState,
    name: String,
    version: Option<String>,
    req: Request,
) -> Response {
    let arriving = Arriving::new(&app.core.shared);
    let target = match app.core.resolve(&name, version.as_deref()).await {
        Ok(t) => t,
        Err(f) => return failed(f),
    };
    let header_len = match req.headers().get(binary::HEADER_LENGTH).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v.to_owned()),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{}: not a byte count", binary::HEADER_LENGTH),
            )
        }
    };
    let declared = body_len(req.headers());
    if declared != usize::MAX && declared > MAX_BODY {
        return too_large();
    }
    let kib = (declared.min(MAX_BODY) / 1024 + 1) as u32;
    let Ok(_budget) = app.bodies.clone().acquire_many_owned(kib).await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let large = declared > PARSE_INLINE;
    let mut v = match parse_request(body, header_len, large, target.loaded.geometry).await {
        Ok(v) => v,
        Err(what) => return error(StatusCode::BAD_REQUEST, what),
    };
    match app.core.infer(&target, &mut v, arriving).await {
        Ok(a) => infer_reply(&v, protocol::respond(&v, a.logits, a.classes, a.version)),
        Err(f) => failed(f),
    }
}

/// The body (a JSON header of `header_len` bytes and a binary part, when
/// the header is given) as an inference request checked against the model's
/// geometry; a `large` one is parsed off the async threads.
async fn parse_request(
    body: Bytes,
    header_len: Option<String>,
    large: bool,
    geo: Geometry,
) -> Result<Validated, String> {
    let parse = move || {
        let (head, tail) = match &header_len {
            Some(len) => binary::split(&body, len)?,
            None => (&body[..], &[][..]),
        };
        let mut req: InferRequest = serde_json::from_slice(head)
            .map_err(|e| format!("not an inference request (JSON): {e}"))?;
        binary::attach(&mut req.inputs, tail, header_len.is_some())?;
        protocol::validate(req, geo)
    };
    if large {
        tokio::task::spawn_blocking(parse)
            .await
            .unwrap_or_else(|e| Err(format!("parsing failed: {e}")))
    } else {
        parse()
    }
}

/// An inference answer: JSON, or with the outputs asked for as binary, a
/// JSON header (its length in `Inference-Header-Content-Length`) and their bytes.
fn infer_reply(v: &Validated, mut resp: protocol::InferResponse) -> Response {
    if !v.binary.contains(&true) {
        return json(StatusCode::OK, &resp);
    }
    let tail = binary::take_binary(&mut resp, &v.binary);
    let mut body = match serde_json::to_vec(&resp) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let head_len = body.len().to_string();
    body.extend_from_slice(&tail);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::HeaderName::from_static(binary::HEADER_LENGTH),
                head_len,
            ),
        ],
        body,
    )
        .into_response()
}

fn body_len(headers: &HeaderMap) -> usize {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(usize::MAX)
}
