//! The job chain's options (search ladder, promotion, webhooks, push-hook
//! secret), validated.

use std::path::PathBuf;

use super::{invalid, ConfigError, Options, DEFAULT_LADDER};

/// The job chain's keys (search, promotion, notifications), validated.
pub(super) struct ChainSettings {
    pub(super) ladder: Vec<crate::model::TrialSpec>,
    pub(super) min_accuracy: f64,
    pub(super) promote_margin: f64,
    pub(super) prune_margin: f64,
    pub(super) webhooks: Vec<String>,
    pub(super) webhook_events: Vec<String>,
    pub(super) webhook_secret: Option<crate::signing::Keys>,
    pub(super) hook_secret: Option<crate::signing::Secret>,
}

pub(super) fn settings(o: &Options, target: f64) -> Result<ChainSettings, ConfigError> {
    let ladder_text = o.ladder.clone().unwrap_or_else(|| DEFAULT_LADDER.into());
    let ladder = crate::model::parse_ladder(&ladder_text).map_err(|w| invalid("ladder", w))?;
    let min_accuracy = o.min_accuracy.unwrap_or(target);
    if !(min_accuracy > 0.0 && min_accuracy <= 1.0) {
        return Err(invalid(
            "min_accuracy",
            format!("{min_accuracy} is outside (0, 1]"),
        ));
    }
    let promote_margin = o.promote_margin.unwrap_or(0.0);
    if !(0.0..1.0).contains(&promote_margin) {
        return Err(invalid(
            "promote_margin",
            format!("{promote_margin} is outside [0, 1)"),
        ));
    }
    let prune_margin = o.prune_margin.unwrap_or(0.005);
    if !(0.0..=1.0).contains(&prune_margin) {
        return Err(invalid(
            "prune_margin",
            format!("{prune_margin} is outside [0, 1]"),
        ));
    }
    let webhooks = webhook_urls(&o.webhook)?;
    let webhook_events = webhook_events(o.webhook_events.as_deref())?;
    let file = o.webhook_secret_file.clone();
    let webhook_secret = match secret_bytes(file, "webhook_secret_file", "TRAINERD_WEBHOOK_SECRET")?
    {
        Some((bytes, from)) => Some(
            crate::signing::parse(&bytes)
                .map_err(|w| invalid(&from.key, format!("{}: {w}", from.name)))?,
        ),
        None => None,
    };
    let file = o.hook_secret_file.clone();
    let hook_secret = secret_bytes(file, "hook_secret_file", "TRAINERD_HOOK_SECRET")?
        .map(|(bytes, _)| crate::signing::Secret::new(bytes));
    Ok(ChainSettings {
        ladder,
        min_accuracy,
        promote_margin,
        prune_margin,
        webhooks,
        webhook_events,
        webhook_secret,
        hook_secret,
    })
}

/// The `webhook` URLs, trimmed, blanks dropped; each must be http(s) with a host.
fn webhook_urls(given: &[String]) -> Result<Vec<String>, ConfigError> {
    let webhooks: Vec<String> = given
        .iter()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    for url in &webhooks {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            return Err(invalid(
                "webhook",
                format!("{:?} is not an http(s) URL with a host", redact_url(url)),
            ));
        }
    }
    Ok(webhooks)
}

/// The event kinds `webhook_events` sends: a comma list, `all`, or the default set.
fn webhook_events(given: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let kinds = crate::event_kind::KINDS;
    let Some(s) = given else {
        return Ok(crate::event_kind::DEFAULT_WEBHOOK_EVENTS
            .iter()
            .map(|k| k.to_string())
            .collect());
    };
    if s.trim() == "all" {
        return Ok(kinds.iter().map(|k| k.to_string()).collect());
    }
    let list: Vec<String> = s
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(bad) = list.iter().find(|k| !kinds.contains(&k.as_str())) {
        return Err(invalid(
            "webhook_events",
            format!("{bad:?} is not an event ({}, or all)", kinds.join(", ")),
        ));
    }
    Ok(list)
}

/// Where a secret came from: the config key and the file or variable.
struct SecretSource {
    key: String,
    name: String,
}

/// A secret's bytes: from `file` (the flag or config key `key`; trimmed,
/// non-empty), else from env `var` as raw bytes (a secret need not be
/// UTF-8). `None` when neither is set.
fn secret_bytes(
    file: Option<PathBuf>,
    key: &'static str,
    var: &str,
) -> Result<Option<(Vec<u8>, SecretSource)>, ConfigError> {
    if let Some(path) = file {
        let text =
            std::fs::read(&path).map_err(|e| invalid(key, format!("{}: {e}", path.display())))?;
        let trimmed = text.trim_ascii().to_vec();
        if trimmed.is_empty() {
            return Err(invalid(key, format!("{} is empty", path.display())));
        }
        let (key, name) = (key.to_string(), path.display().to_string());
        return Ok(Some((trimmed, SecretSource { key, name })));
    }
    let bytes = std::env::var_os(var)
        .map(std::os::unix::ffi::OsStringExt::into_vec)
        .filter(|s| !s.is_empty());
    Ok(bytes.map(|b| {
        let source = SecretSource {
            key: var.trim_start_matches("TRAINERD_").to_ascii_lowercase(),
            name: var.to_string(),
        };
        (b, source)
    }))
}

/// The URL as it may be written down: a password in `user:pass@` and every
/// query value replaced by `***` (tokens travel in both). Idempotent, so
/// redacted and raw URLs compare equal after redacting both.
pub fn redact_url(url: &str) -> String {
    let (head, fragment) = match url.split_once('#') {
        Some((h, f)) => (h, Some(f)),
        None => (url, None),
    };
    let (base, query) = match head.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (head, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("", base));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut out = String::with_capacity(url.len());
    if !scheme.is_empty() {
        out.push_str(scheme);
        out.push_str("://");
    }
    match authority.rsplit_once('@') {
        Some((_, host)) => {
            out.push_str("***@");
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    out.push_str(path);
    if let Some(q) = query {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) => format!("{k}=***"),
                None => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}
