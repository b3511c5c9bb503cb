//! MLflow's REST API 2.0 over blocking `ureq`: one JSON call, one artifact
//! upload, each with a time limit; failures sorted into worth retrying
//! (unreachable, timeout, 429, 5xx) and final (other 4xx). Every message
//! names the server only by its redacted URL.

use std::time::Duration;

use serde_json::Value;

use crate::config::MlflowTarget;

/// Largest response body read (search answers are capped at a few runs).
const MAX_RESPONSE: u64 = 8 << 20;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// Try again later (the server is down, slow, or overloaded).
    Retry(String),
    /// The server refused it: HTTP status and MLflow's `error_code` (may be empty).
    Refused(u16, String, String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Retry(why) => f.write_str(why),
            CallError::Refused(code, err, msg) => write!(f, "HTTP {code} {err}: {msg}"),
        }
    }
}

impl CallError {
    /// The server answered with MLflow error `code` (e.g. `RESOURCE_ALREADY_EXISTS`).
    pub fn is(&self, code: &str) -> bool {
        matches!(self, CallError::Refused(_, c, _) if c == code)
    }
}

/// A connection to one MLflow server.
pub struct Client {
    target: MlflowTarget,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(target: MlflowTarget, timeout: Duration) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Client { target, agent }
    }

    /// The redacted server URL.
    pub fn shown(&self) -> &str {
        &self.target.shown
    }

    pub fn model(&self) -> &str {
        &self.target.model
    }

    /// `GET /api/2.0/mlflow/<path>?<query>` (query pairs URL-encoded).
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, CallError> {
        let mut url = format!("{}/api/2.0/mlflow/{path}", self.target.base);
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("{}={}", encode(k), encode(v)));
        }
        let mut req = self.agent.get(&url);
        if let Some(a) = &self.target.auth {
            req = req.header("Authorization", a);
        }
        self.finish(req.call())
    }

    /// `POST /api/2.0/mlflow/<path>` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.target.base);
        let bytes = serde_json::to_vec(body).map_err(|e| CallError::Retry(e.to_string()))?;
        let mut req = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(a) = &self.target.auth {
            req = req.header("Authorization", a);
        }
        self.finish(req.send(&bytes[..]))
    }

    /// Uploads `bytes` through the artifact proxy to `<run's artifacts>/<path>`.
    pub fn put_artifact(
        &self,
        experiment: &str,
        run: &str,
        path: &str,
        bytes: &[u8],
    ) -> Result<(), CallError> {
        let path: Vec<String> = path.split('/').map(encode).collect();
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{}/artifacts/{}",
            self.target.base,
            encode(experiment),
            encode(run),
            path.join("/")
        );
        let mut req = self
            .agent
            .put(&url)
            .header("Content-Type", "application/octet-stream");
        if let Some(a) = &self.target.auth {
            req = req.header("Authorization", a);
        }
        self.finish(req.send(bytes)).map(|_| ())
    }

    fn finish(
        &self,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, CallError> {
        let mut resp = sent.map_err(|e| {
            CallError::Retry(format!(
                "{}: {}",
                self.target.shown,
                crate::pipeline::webhook::redact_in(&e.to_string())
            ))
        })?;
        let code = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_string()
            .unwrap_or_default();
        judge(code, &text, &self.target.shown)
    }
}

/// What an answer means: 2xx its JSON (empty body: `{}`); 3xx, 429, 5xx retried; else refused.
pub fn judge(code: u16, text: &str, shown: &str) -> Result<Value, CallError> {
    let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    match code {
        200..=299 => Ok(if json.is_null() {
            serde_json::json!({})
        } else {
            json
        }),
        300..=399 | 429 | 500..=599 => Err(CallError::Retry(format!("{shown}: HTTP {code}"))),
        _ => {
            let field = |k: &str| {
                json.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let mut msg = field("message");
            super::ops::cut(&mut msg, 300);
            Err(CallError::Refused(code, field("error_code"), msg))
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
