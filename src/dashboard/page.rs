//! The page itself: one HTML file, one script and one style sheet, compiled
//! into the binary (no CDN, nothing fetched from elsewhere: the offline
//! image shows the same page). The script builds every element from the
//! API's JSON with `textContent` and `createElementNS`, never from markup.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::Dashboard;

pub const INDEX: &str = include_str!("assets/index.html");
pub const SCRIPT: &str = include_str!("assets/app.js");
pub const STYLE: &str = include_str!("assets/app.css");

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/", get(|| asset(INDEX, "text/html; charset=utf-8")))
        .route(
            "/index.html",
            get(|| asset(INDEX, "text/html; charset=utf-8")),
        )
        .route(
            "/assets/app.js",
            get(|| asset(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route(
            "/assets/app.css",
            get(|| asset(STYLE, "text/css; charset=utf-8")),
        )
        .route(
            "/favicon.ico",
            get(|| async { axum::http::StatusCode::NO_CONTENT }),
        )
}

async fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // Always asked again, so a new binary's page is never mixed with an old script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_never_builds_markup_from_strings_and_is_small() {
        for (name, text) in [("app.js", SCRIPT), ("index.html", INDEX)] {
            // The SVG namespace is a name, not an address the page fetches.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "javascript:",
                "http://",
                "https://",
            ] {
                assert!(!text.contains(banned), "{name} uses {banned}");
            }
        }
        assert!(
            !INDEX.contains("<script>") && !INDEX.contains(" style="),
            "no inline script or style"
        );
        assert!(INDEX.contains("<script src=\"/assets/app.js\" defer></script>"));
        let total = INDEX.len() + SCRIPT.len() + STYLE.len();
        assert!(total < 300 * 1024, "the page is {total} bytes");
    }
}
