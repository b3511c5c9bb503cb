//! The JSON API under `/api/v1/`, read-only (any other method: 405):
//! `status`, `champion`, `studies`, `studies/{id}` (its trials with their
//! curves), `events?since=SEQ&limit=N`. Files are read on the blocking
//! pool; answers are bounded (lists capped, curves downsampled).

use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, MethodRouter};
use axum::Router;
use serde_json::{json, Value};

use super::{curves, events, lock, studies, Dashboard, Inner};

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/api/v1/status", reading(status))
        .route("/api/v1/champion", reading(champion))
        .route("/api/v1/studies", reading(study_list))
        .route("/api/v1/studies/{id}", reading(study))
        .route("/api/v1/events", reading(events))
        .route("/api/{*rest}", any(unknown))
}

/// GET (and HEAD) only.
fn reading<H, T>(h: H) -> MethodRouter<Dashboard>
where
    H: axum::handler::Handler<T, Dashboard>,
    T: 'static,
{
    get(h).fallback(read_only)
}

/// The answer to any method but GET on the API.
pub async fn read_only() -> Response {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "the API is read-only: use GET".into(),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

async fn unknown(method: Method) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return read_only().await;
    }
    error(
        StatusCode::NOT_FOUND,
        "no such API route; see /api/v1/status, /api/v1/champion, /api/v1/studies, \
         /api/v1/studies/{id}, /api/v1/events, /api/v1/stream"
            .into(),
    )
}

/// `{"error": what}` with `code`.
pub fn error(code: StatusCode, what: String) -> Response {
    let mut r = json_response(&json!({ "error": what }));
    *r.status_mut() = code;
    r
}

/// `v` as an `application/json` answer, never cached.
fn json_response(v: &Value) -> Response {
    let mut r = v.to_string().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(&mut r);
    r
}

fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// An answer other than 200: its status and what went wrong.
type Failure = (StatusCode, String);

/// Runs `f` on the blocking pool (it reads files) and answers its JSON.
async fn blocking(
    d: Dashboard,
    f: impl FnOnce(&Inner) -> Result<Value, Failure> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(&d.inner)).await {
        Ok(Ok(v)) => json_response(&v),
        Ok(Err((code, what))) => error(code, what),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn status(State(d): State<Dashboard>) -> Response {
    let figures = match d.inner.hub.figures() {
        Value::Null => super::live::serve_figures(d.inner.serve_addr).await,
        f => f,
    };
    blocking(d, move |i| Ok(super::live::status(i, figures))).await
}

async fn champion(State(d): State<Dashboard>) -> Response {
    blocking(d, |i| Ok(lock(&i.champion).champion(&i.state_dir))).await
}

async fn study_list(State(d): State<Dashboard>) -> Response {
    blocking(d, |i| {
        let entries = lock(&i.journal).entries(&i.state_dir);
        let ids = studies::ids(&entries);
        let running = running_trial(i);
        let latest = ids.last().copied();
        let list: Vec<Value> = ids
            .iter()
            .rev()
            .take(studies::MAX_STUDIES)
            .filter_map(|id| {
                let run = running.filter(|_| Some(*id) == latest);
                studies::study(&entries, id, run, None)
            })
            .map(|s| {
                json!({
                    "id": s.id, "state": s.state, "trials": s.trials.len(),
                    "started_at": s.started["time"], "target": s.started["target"],
                    "best_val_accuracy": s.trials.iter().filter_map(|r| r.val_accuracy).reduce(f64::max),
                })
            })
            .collect();
        Ok(json!({ "studies": list, "total": ids.len() }))
    })
    .await
}

/// The trial this process trains now, if any.
fn running_trial(i: &Inner) -> Option<u32> {
    use std::sync::atomic::Ordering;
    i.training
        .load(Ordering::Relaxed)
        .then(|| i.progress.trial.load(Ordering::Relaxed) as u32)
}

async fn study(State(d): State<Dashboard>, UrlPath(id): UrlPath<String>) -> Response {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("study id: expected up to 64 letters, digits, - or _ (as /api/v1/studies lists), got {:?}", super::clip(&id, 40)),
        );
    }
    blocking(d, move |i| study_detail(i, &id)).await
}

fn study_detail(i: &Inner, id: &str) -> Result<Value, Failure> {
    let entries = lock(&i.journal).entries(&i.state_dir);
    let latest = studies::latest(&entries) == Some(id);
    let running = running_trial(i).filter(|_| latest);
    let input = input_shape(i);
    let Some(s) = studies::study(&entries, id, running, input) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no study {id:?} in the journal"),
        ));
    };
    let mut cache = lock(&i.curves);
    let trials: Vec<Value> = s
        .trials
        .iter()
        .map(|r| {
            let dir = crate::state_dir::tensorboard(&i.state_dir, id, r.trial);
            let c = match cache.of_dir(&dir) {
                Some(c) => (*c).clone(),
                None => curves::from_history(&r.history),
            };
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            v["curves"] = curves_json(&c);
            v
        })
        .collect();
    Ok(json!({
        "id": s.id, "state": s.state, "started": s.started, "trials": trials,
        "max_points": curves::MAX_POINTS,
    }))
}

/// The data set's input shape, from the champion's card (for parameter counts).
fn input_shape(i: &Inner) -> Option<crate::model::InputShape> {
    crate::model::card::read(&crate::state_dir::best(&i.state_dir))
        .ok()
        .flatten()
        .map(|c| crate::export::input_shape(&c))
}

fn curves_json(c: &curves::Curves) -> Value {
    c.iter()
        .map(|(tag, s)| {
            (
                tag.clone(),
                json!(s.iter().map(|(x, y)| [*x as f64, *y]).collect::<Vec<_>>()),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

async fn events(State(d): State<Dashboard>, RawQuery(q): RawQuery) -> Response {
    let (since, limit) = match events_query(q.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    blocking(d, move |i| {
        let mut tail = lock(&i.events);
        tail.refresh(&crate::state_dir::events(&i.state_dir));
        Ok(tail.since(since, limit))
    })
    .await
}

/// `since` and `limit` of an events query (others are ignored).
fn events_query(q: &str) -> Result<(Option<u64>, usize), String> {
    let (mut since, mut limit) = (None, 100);
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "since" => since = Some(events::parse_seq("since", v)?),
            "limit" => {
                let n = events::parse_seq("limit", v)?;
                if n == 0 || n > events::MAX_LIMIT as u64 {
                    return Err(format!(
                        "limit: expected 1 to {}, got {n}",
                        events::MAX_LIMIT
                    ));
                }
                limit = n as usize;
            }
            _ => {}
        }
    }
    Ok((since, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_queries_name_the_bad_parameter() {
        assert_eq!(events_query(""), Ok((None, 100)));
        assert_eq!(events_query("since=5&limit=7&x=y"), Ok((Some(5), 7)));
        assert_eq!(
            events_query(&format!("since={}", "9".repeat(50))),
            Ok((Some(u64::MAX), 100))
        );
        assert!(events_query("since=garbage")
            .unwrap_err()
            .starts_with("since:"));
        assert!(events_query("since=").unwrap_err().starts_with("since:"));
        assert!(events_query("limit=0").unwrap_err().starts_with("limit:"));
        assert!(events_query("limit=100000")
            .unwrap_err()
            .starts_with("limit:"));
    }
}
