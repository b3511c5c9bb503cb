//! Push events as GitHub, GitLab and Gitea/Forgejo send them: which forge
//! sent a request, whether it is signed with the shared secret, and what it
//! says (event, delivery id, branch, commit). Pure functions of the headers
//! and body, so every case is a unit test.
//!
//! - GitHub: `X-GitHub-Event`, `X-GitHub-Delivery`, `X-Hub-Signature-256:
//!   sha256=<hex HMAC-SHA256 of the body>`.
//! - GitLab: `X-Gitlab-Event` (`Push Hook`), `X-Gitlab-Event-UUID`,
//!   `X-Gitlab-Token: <the secret itself>`.
//! - Gitea and Forgejo: `X-Gitea-Event` / `X-Forgejo-Event`,
//!   `X-Gitea-Delivery`, `X-Gitea-Signature` / `X-Forgejo-Signature: <hex
//!   HMAC-SHA256 of the body>`.
//!
//! Every comparison with the secret or a MAC is constant-time.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The forge a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    GitLab,
    Gitea,
}

/// What a verified request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// GitHub's `ping` (sent when the hook is created).
    Ping,
    /// A push of `commit` to `git_ref` (`refs/heads/<branch>`).
    Push { git_ref: String, commit: String },
}

/// A verified request and the forge's delivery id (a replay carries the same).
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub forge: Forge,
    pub delivery: Option<String>,
    pub request: Request,
}

/// Why a request is refused; each is a 4xx with this message.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "no forge event header (X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event or X-Forgejo-Event)"
    )]
    UnknownForge,
    #[error("{0:?} request without its signature header ({1})")]
    Unsigned(Forge, &'static str),
    #[error("{0:?} signature does not match the configured hook secret")]
    BadSignature(Forge),
    #[error("event {0:?} is not handled (only push, and GitHub's ping)")]
    Unhandled(String),
    #[error("the push payload is not the JSON a push event carries: {0}")]
    Payload(String),
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The forge, its event name and its delivery id, from the headers.
fn identify(headers: &HeaderMap) -> Result<(Forge, String, Option<String>), Refusal> {
    let owned = |v: Option<&str>| v.map(str::to_string);
    if let Some(ev) = header(headers, "x-github-event") {
        let delivery = owned(header(headers, "x-github-delivery"));
        return Ok((Forge::GitHub, ev.to_string(), delivery));
    }
    if let Some(ev) = header(headers, "x-gitlab-event") {
        let delivery = owned(header(headers, "x-gitlab-event-uuid"));
        return Ok((Forge::GitLab, ev.to_string(), delivery));
    }
    if let Some(ev) = header(headers, "x-gitea-event").or(header(headers, "x-forgejo-event")) {
        let delivery = owned(header(headers, "x-gitea-delivery"))
            .or(owned(header(headers, "x-forgejo-delivery")));
        return Ok((Forge::Gitea, ev.to_string(), delivery));
    }
    Err(Refusal::UnknownForge)
}

/// Checks the request's signature (or token) against `secret`.
fn authenticate(
    forge: Forge,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
) -> Result<(), Refusal> {
    let ok = match forge {
        Forge::GitHub => {
            let sig = header(headers, "x-hub-signature-256")
                .ok_or(Refusal::Unsigned(forge, "X-Hub-Signature-256"))?;
            let want = format!("sha256={}", hmac_hex(secret, body));
            same(sig.to_ascii_lowercase().as_bytes(), want.as_bytes())
        }
        Forge::GitLab => {
            let token = header(headers, "x-gitlab-token")
                .ok_or(Refusal::Unsigned(forge, "X-Gitlab-Token"))?;
            same(token.as_bytes(), secret)
        }
        Forge::Gitea => {
            let sig = header(headers, "x-gitea-signature")
                .or(header(headers, "x-forgejo-signature"))
                .ok_or(Refusal::Unsigned(forge, "X-Gitea-Signature"))?;
            same(
                sig.to_ascii_lowercase().as_bytes(),
                hmac_hex(secret, body).as_bytes(),
            )
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Refusal::BadSignature(forge))
    }
}

/// The fields of a push payload trainerd needs (all three forges send them).
#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
}

/// Identifies, authenticates and reads a request. The signature is checked
/// before the body is parsed: nothing of an unsigned body is looked at.
pub fn verify(headers: &HeaderMap, body: &[u8], secret: &[u8]) -> Result<Verified, Refusal> {
    let (forge, event, delivery) = identify(headers)?;
    authenticate(forge, headers, body, secret)?;
    let request = match (forge, event.as_str()) {
        (Forge::GitHub, "ping") => Request::Ping,
        (Forge::GitHub, "push") | (Forge::GitLab, "Push Hook") | (Forge::Gitea, "push") => {
            let p: PushPayload =
                serde_json::from_slice(body).map_err(|e| Refusal::Payload(e.to_string()))?;
            let is_commit = p.after.len() >= 40 && p.after.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_commit {
                return Err(Refusal::Payload(format!(
                    "\"after\" is {:?}, not a commit id",
                    p.after
                )));
            }
            Request::Push {
                git_ref: p.git_ref,
                commit: p.after.to_ascii_lowercase(),
            }
        }
        _ => return Err(Refusal::Unhandled(event)),
    };
    Ok(Verified {
        forge,
        delivery,
        request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn push_body() -> Vec<u8> {
        format!(r#"{{"ref":"refs/heads/main","before":"{SHA}","after":"{SHA}"}}"#).into_bytes()
    }

    #[test]
    fn github_documents_this_signature() {
        // The example in GitHub's "Validating webhook deliveries".
        assert_eq!(
            hmac_hex(SECRET, b"Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn each_forge_is_verified_its_own_way() {
        let body = push_body();
        let sig = hmac_hex(SECRET, &body);
        let want = Request::Push {
            git_ref: "refs/heads/main".into(),
            commit: SHA.into(),
        };
        let gh = headers(&[
            ("x-github-event", "push"),
            ("x-github-delivery", "d1"),
            ("x-hub-signature-256", &format!("sha256={sig}")),
        ]);
        let v = verify(&gh, &body, SECRET).unwrap();
        assert_eq!(
            (v.forge, v.delivery.as_deref(), &v.request),
            (Forge::GitHub, Some("d1"), &want)
        );
        let token = String::from_utf8(SECRET.to_vec()).unwrap();
        let gl = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", &token)]);
        assert_eq!(verify(&gl, &body, SECRET).unwrap().request, want);
        let gt = headers(&[("x-gitea-event", "push"), ("x-gitea-signature", &sig)]);
        assert_eq!(verify(&gt, &body, SECRET).unwrap().forge, Forge::Gitea);
        let fj = headers(&[("x-forgejo-event", "push"), ("x-forgejo-signature", &sig)]);
        assert_eq!(verify(&fj, &body, SECRET).unwrap().request, want);
    }

    #[test]
    fn wrong_missing_or_other_secrets_are_refused() {
        let body = push_body();
        let other = hmac_hex(b"another secret", &body);
        let cases = [
            (
                headers(&[
                    ("x-github-event", "push"),
                    ("x-hub-signature-256", &format!("sha256={other}")),
                ]),
                Refusal::BadSignature(Forge::GitHub),
            ),
            (
                headers(&[("x-github-event", "push")]),
                Refusal::Unsigned(Forge::GitHub, "X-Hub-Signature-256"),
            ),
            (
                headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "guess")]),
                Refusal::BadSignature(Forge::GitLab),
            ),
            (
                headers(&[("x-gitea-event", "push"), ("x-gitea-signature", &other)]),
                Refusal::BadSignature(Forge::Gitea),
            ),
            (
                headers(&[("content-type", "application/json")]),
                Refusal::UnknownForge,
            ),
        ];
        for (h, want) in cases {
            assert_eq!(verify(&h, &body, SECRET).unwrap_err(), want);
        }
        // A body changed after signing.
        let sig = hmac_hex(SECRET, &body);
        let h = headers(&[("x-gitea-event", "push"), ("x-gitea-signature", &sig)]);
        let mut tampered = body.clone();
        tampered[10] ^= 1;
        assert_eq!(
            verify(&h, &tampered, SECRET).unwrap_err(),
            Refusal::BadSignature(Forge::Gitea)
        );
    }

    #[test]
    fn ping_other_events_and_bad_payloads() {
        let ping = b"{\"zen\":\"Keep it logically awesome.\"}";
        let signed = |ev: &str, body: &[u8]| {
            headers(&[
                ("x-github-event", ev),
                (
                    "x-hub-signature-256",
                    &format!("sha256={}", hmac_hex(SECRET, body)),
                ),
            ])
        };
        assert_eq!(
            verify(&signed("ping", ping), ping, SECRET).unwrap().request,
            Request::Ping
        );
        assert_eq!(
            verify(&signed("issues", ping), ping, SECRET).unwrap_err(),
            Refusal::Unhandled("issues".into())
        );
        let bad = b"{\"ref\":\"refs/heads/main\",\"after\":\"../../etc\"}";
        assert!(matches!(
            verify(&signed("push", bad), bad, SECRET),
            Err(Refusal::Payload(_))
        ));
        let truncated = b"{\"ref\":";
        assert!(matches!(
            verify(&signed("push", truncated), truncated, SECRET),
            Err(Refusal::Payload(_))
        ));
    }
}
