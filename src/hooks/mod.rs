//! Push hooks: `POST /hooks/git` on the daemon's HTTP server takes push
//! events from GitHub, GitLab and Gitea/Forgejo ([`forge`]), verified
//! against the configured secret, and fetches and fast-forwards the
//! workspace checkout at once; the workspace watcher then sees HEAD move and
//! starts the new study (the commit goes into `model.json`), as it does for
//! the periodic `--git-remote` fetch, which stays as the fallback.
//!
//! Answers (JSON, `{"error": ...}` for every refusal):
//! - 403 without a configured secret (hooks are refused, never open);
//! - 400 no forge headers, an unhandled event or a malformed push payload;
//!   401 a missing or wrong signature; 409 a delivery already handled (a
//!   replay) or a workspace that is not a checkout; 413 a body over
//!   [`MAX_BODY`]; 502 the fetch failed;
//! - 200 GitHub's ping, a push to another branch than the checked-out one
//!   (ignored), or a commit the checkout already has; 202 fetched and
//!   fast-forwarded.

pub mod forge;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::json;

use crate::signing::Secret;
use crate::watch::git::{self, Fetched};
use forge::{Refusal, Request};

/// Largest push payload read (GitHub caps deliveries at 25 MB; a push of a
/// few commits is a few kB).
pub const MAX_BODY: usize = 8 << 20;
/// Delivery ids remembered to refuse replays.
const REMEMBERED: usize = 1024;

/// What the endpoint needs, built from the config at the top.
#[derive(Debug, Clone)]
pub struct HookSettings {
    /// The secret the forge signs with; `None` refuses every request.
    pub secret: Option<Secret>,
    /// The workspace: a git checkout (or a directory inside one).
    pub workspace: PathBuf,
    /// The remote to fetch from.
    pub remote: String,
}

struct Hooks {
    settings: HookSettings,
    seen: Mutex<VecDeque<String>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

/// The `/hooks/git` route.
pub fn router(settings: HookSettings) -> Router {
    let hooks = Arc::new(Hooks {
        settings,
        seen: Mutex::new(VecDeque::new()),
        fetching: tokio::sync::Mutex::new(()),
    });
    Router::new()
        .route("/hooks/git", post(handle))
        .with_state(hooks)
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    (status, json, body.to_string() + "\n").into_response()
}

fn refuse(status: StatusCode, what: impl std::fmt::Display) -> Response {
    tracing::warn!(status = status.as_u16(), "push hook refused: {what}");
    answer(status, json!({ "error": what.to_string() }))
}

async fn handle(State(hooks): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &hooks.settings.secret else {
        return refuse(
            StatusCode::FORBIDDEN,
            "push hooks are off: set TRAINERD_HOOK_SECRET or --hook-secret-file to the secret \
             the forge signs with",
        );
    };
    let verified = match forge::verify(&headers, &body, secret.as_bytes()) {
        Ok(v) => v,
        Err(r @ (Refusal::Unsigned(..) | Refusal::BadSignature(_))) => {
            return refuse(StatusCode::UNAUTHORIZED, r)
        }
        Err(r) => return refuse(StatusCode::BAD_REQUEST, r),
    };
    let Request::Push { git_ref, commit } = verified.request else {
        return answer(StatusCode::OK, json!({ "ok": "pong" }));
    };
    if let Some(id) = &verified.delivery {
        if !hooks.remember(id) {
            return refuse(
                StatusCode::CONFLICT,
                format!("delivery {id} was handled already (a replay)"),
            );
        }
    }
    tracing::info!(forge = ?verified.forge, %git_ref, %commit, "push hook");
    let _one = hooks.fetching.lock().await;
    let settings = hooks.settings.clone();
    let done = tokio::task::spawn_blocking(move || fetch(&settings, &git_ref, &commit)).await;
    match done {
        Ok(Ok((status, body))) => answer(status, body),
        Ok(Err((status, what))) => refuse(status, what),
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("fetch task failed: {e}"),
        ),
    }
}

impl Hooks {
    /// Records a delivery id; false when it was seen before.
    fn remember(&self, id: &str) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        if seen.iter().any(|s| s == id) {
            return false;
        }
        if seen.len() == REMEMBERED {
            seen.pop_front();
        }
        seen.push_back(id.to_string());
        true
    }
}

type Answer = Result<(StatusCode, serde_json::Value), (StatusCode, String)>;

/// Fetches and fast-forwards the checkout when the push is to its branch.
fn fetch(settings: &HookSettings, git_ref: &str, commit: &str) -> Answer {
    let conflict = |what: String| (StatusCode::CONFLICT, what);
    let repo = git::discover(&settings.workspace).ok_or_else(|| {
        conflict(format!(
            "{} is not in a git checkout: nothing to fast-forward",
            settings.workspace.display()
        ))
    })?;
    let head = git::head(&repo).map_err(|e| conflict(format!("reading HEAD: {e}")))?;
    let Some(branch) = head.branch else {
        return Err(conflict(
            "the checkout's HEAD is detached: nothing to fast-forward".into(),
        ));
    };
    if git_ref != format!("refs/heads/{branch}") {
        return Ok((
            StatusCode::OK,
            json!({ "ignored": format!("a push to {git_ref}; the workspace tracks {branch}") }),
        ));
    }
    if head.commit.as_deref() == Some(commit) {
        return Ok((StatusCode::OK, json!({ "up_to_date": commit })));
    }
    match git::fetch_fast_forward(&repo, &settings.remote) {
        Ok(Fetched::Advanced { from, to }) => {
            tracing::info!(remote = %settings.remote, ?from, %to, "push hook: fetched and fast-forwarded the workspace");
            Ok((StatusCode::ACCEPTED, json!({ "fetched": to, "from": from })))
        }
        Ok(Fetched::UpToDate) => Ok((StatusCode::OK, json!({ "up_to_date": commit }))),
        Err(e) => Err((
            StatusCode::BAD_GATEWAY,
            format!("git fetch from {}: {e}", settings.remote),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt as _;

    async fn status_of(app: Router, req: HttpRequest<Body>) -> StatusCode {
        app.oneshot(req)
            .await
            .map(|r| r.status())
            .unwrap_or(StatusCode::IM_A_TEAPOT)
    }

    fn push(body: Vec<u8>) -> HttpRequest<Body> {
        HttpRequest::post("/hooks/git")
            .header("x-github-event", "push")
            .body(Body::from(body))
            .unwrap()
    }

    fn settings(secret: Option<&str>) -> HookSettings {
        HookSettings {
            secret: secret.map(|s| Secret::new(s.as_bytes().to_vec())),
            workspace: PathBuf::from("/nonexistent"),
            remote: "origin".into(),
        }
    }

    #[tokio::test]
    async fn without_a_secret_every_request_is_refused_and_bodies_are_capped() {
        let app = router(settings(None));
        assert_eq!(
            status_of(app, push(b"{}".to_vec())).await,
            StatusCode::FORBIDDEN
        );
        let app = router(settings(Some("s")));
        let huge = vec![b' '; MAX_BODY + 1];
        assert_eq!(
            status_of(app, push(huge)).await,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn replays_are_remembered_within_a_bound() {
        let hooks = Hooks {
            settings: settings(None),
            seen: Mutex::new(VecDeque::new()),
            fetching: tokio::sync::Mutex::new(()),
        };
        assert!(hooks.remember("a") && !hooks.remember("a"));
        for i in 0..REMEMBERED {
            hooks.remember(&i.to_string());
        }
        assert!(hooks.remember("a"), "the oldest id is forgotten first");
        assert!(hooks.seen.lock().unwrap().len() <= REMEMBERED);
    }
}
