//! The webhook sink: POSTs chosen events as JSON to configured URLs from its
//! own thread (fed by a channel, so a slow or dead endpoint never blocks
//! training).
//!
//! Each request carries `Idempotency-Key: <event id>` and, when a secret is
//! configured, `X-Trainerd-Signature: sha256=<hex HMAC-SHA256 of the body>`.
//! Connection errors, 429 and 5xx are retried with exponential backoff; other
//! 4xx are final. Every outcome is a line in `state_dir/deliveries.jsonl`; at
//! start the sink re-sends the latest study's events that no line marks
//! delivered (at least once: a crash between the server's 2xx and the record
//! resends, and the idempotency key lets the receiver drop the duplicate).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::events::{read_events, Event, EventLog};
use super::jsonl::JsonlLog;
use super::promote::ModelCard;

/// Events sent when `--webhook-events` is not given.
pub const DEFAULT_EVENTS: &[&str] = &[
    "new_best",
    "below_target",
    "target_reached",
    "budget_exhausted",
];
/// Version of the delivery lines.
pub const DELIVERY_FORMAT: u32 = 1;

/// Where and what to send.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub urls: Vec<String>,
    /// Event kinds to send.
    pub events: HashSet<String>,
    /// HMAC key; `None` sends unsigned requests (with a warning at start).
    pub secret: Option<Vec<u8>>,
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
    pub url: String,
    /// `delivered`, `rejected` (4xx: final) or `failed` (retried after a restart).
    pub status: String,
    pub attempts: u32,
    pub http_status: Option<u16>,
    #[serde(default)]
    pub error: Option<String>,
    pub time: String,
}

/// `sha256=<hex>` of the body under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Handle on the sink thread.
pub struct Notifier {
    tx: Sender<Event>,
    closing: Arc<AtomicBool>,
    done: Receiver<()>,
}

impl Notifier {
    /// Where the event log sends new events.
    pub fn sender(&self) -> Sender<Event> {
        self.tx.clone()
    }

    /// Lets the sink finish its queue for up to `grace`, then returns; what is
    /// left undelivered is retried at the next start.
    pub fn finish(self, grace: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        drop(self.tx);
        if self.done.recv_timeout(grace).is_err() {
            tracing::warn!(
                "webhook deliveries still pending after {grace:?}; they are retried at the next start"
            );
        }
    }
}

/// Starts the sink thread; `None` when no URL is configured.
pub fn spawn(state_dir: &Path, cfg: WebhookConfig) -> std::io::Result<Option<Notifier>> {
    if cfg.urls.is_empty() {
        return Ok(None);
    }
    if cfg.secret.is_none() {
        tracing::warn!("no webhook secret (TRAINERD_WEBHOOK_SECRET or --webhook-secret-file): requests are unsigned");
    }
    let path = state_dir.join("deliveries.jsonl");
    let (log, past) = JsonlLog::open::<Delivery>(&path)?;
    let pending = pending(&EventLog::path(state_dir), &past, &cfg);
    let (tx, rx) = mpsc::channel::<Event>();
    let (done_tx, done) = mpsc::channel();
    let closing = Arc::new(AtomicBool::new(false));
    let flag = closing.clone();
    std::thread::Builder::new()
        .name("webhook".into())
        .spawn(move || {
            let mut sink = Sink::new(cfg, log);
            for (ev, url) in pending {
                sink.deliver(&ev, &url);
            }
            loop {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(ev) => {
                        for url in sink.cfg.urls.clone() {
                            if sink.cfg.events.contains(&ev.kind) {
                                sink.deliver(&ev, &url);
                            }
                        }
                    }
                    Err(RecvTimeoutError::Timeout) if !flag.load(Ordering::Relaxed) => {}
                    Err(_) => break,
                }
            }
            let _ = done_tx.send(());
        })?;
    Ok(Some(Notifier { tx, closing, done }))
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
    let settled: HashSet<(&str, &str)> = past
        .iter()
        .filter(|d| d.status != "failed")
        .map(|d| (d.event.as_str(), d.url.as_str()))
        .collect();
    let mut out = Vec::new();
    for ev in events
        .into_iter()
        .filter(|e| e.study == latest && cfg.events.contains(&e.kind))
    {
        for url in &cfg.urls {
            if !settled.contains(&(ev.id.as_str(), url.as_str())) {
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

    fn attempt(&self, url: &str, ev: &Event, body: &[u8]) -> Attempt {
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", "application/json")
            .header(
                "User-Agent",
                concat!("trainerd/", env!("CARGO_PKG_VERSION")),
            )
            .header("Idempotency-Key", &ev.id)
            .header("X-Trainerd-Event", &ev.kind);
        if let Some(secret) = &self.cfg.secret {
            req = req.header("X-Trainerd-Signature", signature(secret, body));
        }
        match req.send(body) {
            Ok(resp) => {
                let code = resp.status().as_u16();
                match code {
                    200..=299 => Attempt::Ok(code),
                    429 | 500..=599 => Attempt::Retry(Some(code), format!("HTTP {code}")),
                    _ => Attempt::Final(code),
                }
            }
            Err(e) => Attempt::Retry(None, e.to_string()),
        }
    }

    /// Sends `ev` to `url` with retries and records the outcome.
    fn deliver(&mut self, ev: &Event, url: &str) {
        let body = match serde_json::to_vec(ev) {
            Ok(b) => b,
            Err(e) => return tracing::warn!("cannot encode event {}: {e}", ev.id),
        };
        let mut delay = self.cfg.backoff;
        let mut tries = 0;
        let (status, http, error) = loop {
            tries += 1;
            match self.attempt(url, ev, &body) {
                Attempt::Ok(code) => break ("delivered", Some(code), None),
                Attempt::Final(code) => {
                    tracing::warn!(url, event = %ev.id, code, "webhook rejected the event; not retrying");
                    break ("rejected", Some(code), Some(format!("HTTP {code}")));
                }
                Attempt::Retry(code, why) if tries >= self.cfg.attempts => {
                    if self.warned.insert(url.to_string()) {
                        tracing::warn!(url, event = %ev.id, tries, "webhook unreachable ({why}); will retry after a restart");
                    }
                    break ("failed", code, Some(why));
                }
                Attempt::Retry(_, why) => {
                    tracing::debug!(url, event = %ev.id, tries, "webhook attempt failed ({why}); retrying in {delay:?}");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
        };
        let record = Delivery {
            v: DELIVERY_FORMAT,
            event: ev.id.clone(),
            url: url.to_string(),
            status: status.into(),
            attempts: tries,
            http_status: http,
            error,
            time: ModelCard::now(),
        };
        if let Err(e) = self.log.append(&record) {
            tracing::warn!(path = %self.log.path().display(), "cannot record a webhook delivery: {e}");
        }
    }
}

/// Reads the delivery log (for tests and `status`).
pub fn read_deliveries(state_dir: &Path) -> Vec<Delivery> {
    super::jsonl::read(&state_dir.join("deliveries.jsonl"))
        .map(|(d, _, _)| d)
        .unwrap_or_default()
}

/// Path of the delivery log.
pub fn deliveries_path(state_dir: &Path) -> PathBuf {
    state_dir.join("deliveries.jsonl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    fn ev(study: &str, id: &str, kind: &str) -> Event {
        Event {
            v: 1,
            id: id.into(),
            kind: kind.into(),
            study: study.into(),
            trial: None,
            time: "t".into(),
            message: String::new(),
            data: serde_json::json!({}),
        }
    }

    #[test]
    fn pending_is_the_latest_studys_chosen_undelivered_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path(), None).unwrap();
        for e in [
            ev("old", "old:new_best:t0", "new_best"),
            ev("s", "s:new_best:t0", "new_best"),
            ev("s", "s:trial_started:t1", "trial_started"),
            ev("s", "s:new_best:t1", "new_best"),
            ev("s", "s:target_reached", "target_reached"),
        ] {
            log.emit(e).unwrap();
        }
        let cfg = WebhookConfig {
            urls: vec!["http://a".into(), "http://b".into()],
            events: ["new_best", "target_reached"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            secret: None,
            attempts: 1,
            backoff: Duration::ZERO,
            timeout: Duration::from_secs(1),
        };
        let d = |event: &str, url: &str, status: &str| Delivery {
            v: 1,
            event: event.into(),
            url: url.into(),
            status: status.into(),
            attempts: 1,
            http_status: None,
            error: None,
            time: "t".into(),
        };
        let past = vec![
            d("s:new_best:t0", "http://a", "delivered"),
            d("s:new_best:t0", "http://b", "failed"),
            d("s:new_best:t1", "http://a", "rejected"),
        ];
        let got: Vec<(String, String)> = pending(&EventLog::path(dir.path()), &past, &cfg)
            .into_iter()
            .map(|(e, u)| (e.id, u))
            .collect();
        let want = [
            ("s:new_best:t0", "http://b"),
            ("s:new_best:t1", "http://b"),
            ("s:target_reached", "http://a"),
            ("s:target_reached", "http://b"),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (e, u) in want {
            assert!(got.contains(&(e.to_string(), u.to_string())), "{e} {u}");
        }
    }
}
