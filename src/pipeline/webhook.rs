//! The webhook sink: POSTs chosen events as JSON to configured URLs from a
//! task of the runtime (fed by a channel, so a slow or dead endpoint never
//! blocks training; each blocking `ureq` request runs on the blocking pool).
//!
//! Each request carries `Idempotency-Key: <event id>` and, when a secret is
//! configured, the Standard Webhooks headers (`webhook-id`: the event id,
//! stable across retries and restarts; `webhook-timestamp`: the attempt's;
//! `webhook-signature`), see [`crate::signing`].
//! Connection errors, 429 and 5xx are retried with exponential backoff; other
//! 4xx are final. Every outcome is a line in `state_dir/deliveries.jsonl`; at
//! start the sink re-sends the latest study's events that no line marks
//! delivered (at least once: a crash between the server's 2xx and the record
//! resends, and the idempotency key lets the receiver drop the duplicate).
//!
//! Redirects are never followed: re-sending a signed body to wherever a
//! `Location` points would hand the event and its signature to another host,
//! and 301/302 turn a POST into a GET. A 3xx is a failed attempt like a 5xx
//! (retried, and re-sent after a restart, so nothing is lost once the URL is
//! fixed); the redirect target is in the log and in `deliveries.jsonl` so the
//! operator can point `--webhook` at the final URL.
//!
//! URLs may carry credentials (`user:pass@`, `?token=`): they are written
//! only through [`crate::config::redact_url`], in the log and in `deliveries.jsonl` alike.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use serde::{Deserialize, Serialize};

use super::events::{read_events, Event, EventLog};
use super::jsonl::JsonlLog;

pub use crate::event_kind::DEFAULT_WEBHOOK_EVENTS as DEFAULT_EVENTS;
/// Version of the delivery lines.
pub const DELIVERY_FORMAT: u32 = 1;

/// Where and what to send.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub urls: Vec<String>,
    /// Event kinds to send.
    pub events: HashSet<String>,
    /// Signing keys; `None` sends unsigned requests (with a warning at start).
    pub secret: Option<crate::signing::Keys>,
    /// Tries per event and URL in one run.
    pub attempts: u32,
    /// First backoff; doubles per retry.
    pub backoff: Duration,
    /// Per-request time limit.
    pub timeout: Duration,
}

/// One line of `deliveries.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub v: u32,
    pub event: String,
    /// The URL with its credentials redacted ([`crate::config::redact_url`]).
    pub url: String,
    /// `delivered`, `rejected` (4xx: final) or `failed` (retried after a restart).
    pub status: String,
    pub attempts: u32,
    pub http_status: Option<u16>,
    #[serde(default)]
    pub error: Option<String>,
    pub time: String,
}

/// `text` with every URL in it (a word holding `://`) redacted: for error
/// messages that may quote the URL.
pub fn redact_in(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.contains("://") {
                crate::config::redact_url(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Handle on the sink task.
pub struct Notifier {
    tx: UnboundedSender<Event>,
    close: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Notifier {
    /// Where the event log sends new events.
    pub fn sender(&self) -> UnboundedSender<Event> {
        self.tx.clone()
    }

    /// Lets the sink deliver what is queued for up to `grace`, then returns;
    /// what is left undelivered is retried at the next start.
    pub async fn finish(self, grace: Duration) {
        let _ = self.close.send(());
        drop(self.tx);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            task.abort();
            tracing::warn!(
                "webhook deliveries still pending after {grace:?}; they are retried at the next start"
            );
        }
    }
}

/// Starts the sink task on the current runtime; `None` when no URL is configured.
pub fn spawn(state_dir: &Path, cfg: WebhookConfig) -> std::io::Result<Option<Notifier>> {
    if cfg.urls.is_empty() {
        return Ok(None);
    }
    if cfg.secret.is_none() {
        tracing::warn!("no webhook secret (TRAINERD_WEBHOOK_SECRET or --webhook-secret-file): requests are unsigned");
    }
    let path = deliveries_path(state_dir);
    let (log, past) = JsonlLog::open::<Delivery>(&path)?;
    let pending = pending(&EventLog::path(state_dir), &past, &cfg);
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    let (close, closed) = oneshot::channel();
    let task = tokio::spawn(Sink::new(cfg, log).run(pending, rx, closed));
    Ok(Some(Notifier { tx, close, task }))
}

/// (event, url) pairs of the latest study not yet delivered or rejected.
fn pending(events: &Path, past: &[Delivery], cfg: &WebhookConfig) -> Vec<(Event, String)> {
    let events = read_events(events).unwrap_or_else(|e| {
        tracing::warn!("cannot read the event log for pending webhooks: {e}");
        vec![]
    });
    let Some(latest) = events.last().map(|e| e.study.clone()) else {
        return vec![];
    };
    // Lines hold redacted URLs (older ones raw ones): compare redacted.
    let settled: HashSet<(&str, String)> = past
        .iter()
        .filter(|d| d.status != "failed")
        .map(|d| (d.event.as_str(), crate::config::redact_url(&d.url)))
        .collect();
    let mut out = Vec::new();
    for ev in events
        .into_iter()
        .filter(|e| e.study == latest && cfg.events.contains(e.kind.as_str()))
    {
        for url in &cfg.urls {
            if !settled.contains(&(ev.id.as_str(), crate::config::redact_url(url))) {
                out.push((ev.clone(), url.clone()));
            }
        }
    }
    if !out.is_empty() {
        tracing::info!(
            count = out.len(),
            "re-sending webhook deliveries left from before the restart"
        );
    }
    out
}

enum Attempt {
    Ok(u16),
    Final(u16),
    Retry(Option<u16>, String),
}

struct Sink {
    cfg: WebhookConfig,
    log: JsonlLog,
    agent: ureq::Agent,
    /// URLs already warned about, so a dead endpoint warns once per run.
    warned: HashSet<String>,
}

impl Sink {
    fn new(cfg: WebhookConfig, log: JsonlLog) -> Sink {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        Sink {
            cfg,
            log,
            agent,
            warned: HashSet::new(),
        }
    }

    /// The task body: what a restart left pending, then each new event,
    /// until `closed` (then what is queued) or every sender is gone.
    async fn run(
        mut self,
        pending: Vec<(Event, String)>,
        mut rx: UnboundedReceiver<Event>,
        mut closed: oneshot::Receiver<()>,
    ) {
        for (ev, url) in pending {
            self.deliver(&ev, &url).await;
        }
        loop {
            tokio::select! {
                // Queued events first: closing delivers what is already queued.
                biased;
                ev = rx.recv() => match ev {
                    Some(ev) => self.deliver_all(&ev).await,
                    None => return,
                },
                _ = &mut closed => break,
            }
        }
        while let Ok(ev) = rx.try_recv() {
            self.deliver_all(&ev).await;
        }
    }

    async fn deliver_all(&mut self, ev: &Event) {
        if !self.cfg.events.contains(ev.kind.as_str()) {
            return;
        }
        for url in self.cfg.urls.clone() {
            self.deliver(ev, &url).await;
        }
    }

    /// One POST, on the blocking pool (ureq blocks).
    async fn attempt(&self, url: &str, ev: &Event, body: &[u8]) -> Attempt {
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", "application/json")
            .header(
                "User-Agent",
                concat!("trainerd/", env!("CARGO_PKG_VERSION")),
            )
            .header("Idempotency-Key", &ev.id)
            .header("X-Trainerd-Event", ev.kind.as_str());
        if let Some(keys) = &self.cfg.secret {
            for (name, value) in keys.headers(&ev.id, chrono::Utc::now().timestamp(), body) {
                req = req.header(name, value);
            }
        }
        let body = body.to_vec();
        match tokio::task::spawn_blocking(move || req.send(&body[..])).await {
            Ok(Ok(resp)) => judge(resp.status().as_u16(), || {
                resp.headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(crate::config::redact_url)
            }),
            Ok(Err(e)) => Attempt::Retry(None, redact_in(&e.to_string())),
            Err(e) => Attempt::Retry(None, format!("request task failed: {e}")),
        }
    }

    /// Sends `ev` to `url` with retries and records the outcome.
    async fn deliver(&mut self, ev: &Event, url: &str) {
        let body = match serde_json::to_vec(ev) {
            Ok(b) => b,
            Err(e) => return tracing::warn!("cannot encode event {}: {e}", ev.id),
        };
        let shown = crate::config::redact_url(url);
        let mut delay = self.cfg.backoff;
        let mut tries = 0;
        let (status, http, error) = loop {
            tries += 1;
            match self.attempt(url, ev, &body).await {
                Attempt::Ok(code) => break ("delivered", Some(code), None),
                Attempt::Final(code) => {
                    tracing::warn!(url = %shown, event = %ev.id, code, "webhook rejected the event; not retrying");
                    break ("rejected", Some(code), Some(format!("HTTP {code}")));
                }
                Attempt::Retry(code, why) if tries >= self.cfg.attempts => {
                    if self.warned.insert(url.to_string()) {
                        tracing::warn!(url = %shown, event = %ev.id, tries, "webhook unreachable ({why}); will retry after a restart");
                    }
                    break ("failed", code, Some(why));
                }
                Attempt::Retry(_, why) => {
                    tracing::debug!(url = %shown, event = %ev.id, tries, "webhook attempt failed ({why}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        };
        let record = Delivery {
            v: DELIVERY_FORMAT,
            event: ev.id.clone(),
            url: shown,
            status: status.into(),
            attempts: tries,
            http_status: http,
            error,
            time: crate::timestamp::now_rfc3339(),
        };
        if let Err(e) = self.log.append(&record) {
            tracing::warn!(path = %self.log.path().display(), "cannot record a webhook delivery: {e}");
        }
    }
}

/// What an HTTP status means for a delivery: 2xx delivered; 3xx, 429 and
/// 5xx retried (a redirect is not followed: see the module doc; `location`
/// gives its redacted target); other codes final.
fn judge(code: u16, location: impl FnOnce() -> Option<String>) -> Attempt {
    match code {
        200..=299 => Attempt::Ok(code),
        300..=399 => {
            let to = location().unwrap_or_else(|| "no Location".into());
            Attempt::Retry(
                Some(code),
                format!("HTTP {code} redirect to {to}, not followed: set the webhook URL to the final address"),
            )
        }
        429 | 500..=599 => Attempt::Retry(Some(code), format!("HTTP {code}")),
        _ => Attempt::Final(code),
    }
}

/// Path of the delivery log.
pub fn deliveries_path(state_dir: &Path) -> PathBuf {
    crate::state_dir::deliveries(state_dir)
}

#[cfg(test)]
mod tests;
