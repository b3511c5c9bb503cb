//! `--mlflow-uri` and `--mlflow-model`, validated: the server's base URL
//! without credentials, the Basic auth header made of them, and the
//! redacted form that is the only one ever shown.

use base64::Engine as _;

use super::{invalid, redact_url, ConfigError, Options};

/// Longest registered model name accepted (MLflow stores names in a 256-char column).
const MAX_MODEL_NAME: usize = 256;

/// Where and as what trials and promotions are logged to MLflow.
#[derive(Clone, PartialEq, Eq)]
pub struct MlflowTarget {
    /// `scheme://host[:port][/prefix]`, no credentials, no trailing slash.
    pub base: String,
    /// `Basic ...` from the URL's `user:pass@`, if any.
    pub auth: Option<String>,
    /// The URL as logs and errors show it (credentials as `***`).
    pub shown: String,
    /// The registered model promotions become versions of.
    pub model: String,
}

/// Never prints the credentials (a `Config` is debug-printed in places).
impl std::fmt::Debug for MlflowTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowTarget")
            .field("uri", &self.shown)
            .field("model", &self.model)
            .finish()
    }
}

/// The MLflow target of the options; `None` without `mlflow_uri`.
pub(super) fn target(o: &Options) -> Result<Option<MlflowTarget>, ConfigError> {
    let model = o.mlflow_model.as_deref().map_or("trainerd", str::trim);
    if model.is_empty() || model.len() > MAX_MODEL_NAME || model.chars().any(char::is_control) {
        return Err(invalid(
            "mlflow_model",
            format!("{model:?} must be 1 to {MAX_MODEL_NAME} printable characters"),
        ));
    }
    let Some(uri) = o
        .mlflow_uri
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    let mut t = parse_uri(uri)?;
    t.model = model.to_string();
    Ok(Some(t))
}

/// Splits `uri` into base URL and Basic auth; the error shows it redacted.
pub fn parse_uri(uri: &str) -> Result<MlflowTarget, ConfigError> {
    let shown = redact_url(uri);
    let bad = |why: &str| {
        invalid(
            "mlflow_uri",
            format!("{shown:?} {why} (expected http(s)://[user:pass@]host[:port][/prefix])"),
        )
    };
    let (scheme, rest) = uri
        .split_once("://")
        .filter(|(s, _)| *s == "http" || *s == "https")
        .ok_or_else(|| bad("is not an http(s) URL"))?;
    if rest.contains(['?', '#']) || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not hold a query, a fragment or spaces"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if host.is_empty() || host.starts_with(':') {
        return Err(bad("has no host"));
    }
    let auth = match userinfo {
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let pair = format!("{}:{}", percent_decode(user), percent_decode(pass));
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
        None => None,
    };
    Ok(MlflowTarget {
        base: format!("{scheme}://{host}{}", path.trim_end_matches('/')),
        auth,
        shown,
        model: "trainerd".into(),
    })
}

/// `%XX` escapes of a URL's user or password decoded (others kept as written).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The MLflow target from `TRAINERD_MLFLOW_URI` and `TRAINERD_MLFLOW_MODEL`
/// alone (commands without the training options: `rollback`).
pub fn from_env() -> Result<Option<MlflowTarget>, ConfigError> {
    let o = Options {
        mlflow_uri: std::env::var("TRAINERD_MLFLOW_URI").ok(),
        mlflow_model: std::env::var("TRAINERD_MLFLOW_MODEL").ok(),
        ..Options::default()
    };
    target(&o)
}
