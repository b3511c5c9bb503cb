//! The MLflow sink (`--mlflow-uri`): each trial becomes an MLflow run of the
//! experiment `trainerd` (params from its spec and recipe, metrics per epoch
//! with the epoch as step, tags `trainerd.study`/`trial`/`rung`/`commit`),
//! each promotion a new version of the registered model (`--mlflow-model`)
//! with the champion's files as artifacts and the alias `champion` moved to
//! it; `trainerd rollback` queues the alias's move back.
//!
//! Fed by the event log's channel like the webhook sink, it never blocks
//! training: an event becomes operations appended (fsynced) to a bounded
//! queue on disk ([`queue`]), and a thread of its own sends them through
//! MLflow's REST API ([`client`], [`apply`]) with a time limit per call and
//! logged retries with backoff (`worker`). At start the latest study's
//! events are queued again by key, so an event whose operations a crash
//! swallowed is logged, and one already queued or sent is not; creates look
//! up before they create, so a crash between a call and its record changes
//! nothing twice.

pub mod apply;
pub mod client;
mod files;
pub mod ops;
pub mod queue;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use crate::config::MlflowTarget;
use crate::pipeline::events::{read_events, Event, EventLog};
use queue::DiskQueue;
use worker::{Backoff, Shared};

/// How the sink talks to the server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: MlflowTarget,
    /// The workspace whose commit tags each run.
    pub data_dir: PathBuf,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Per-call time limit.
    pub timeout: Duration,
}

impl Settings {
    /// Defaults: 1 s first backoff doubling to 60 s, 30 s per call; tests
    /// shorten them with `TRAINERD_MLFLOW_BACKOFF_MS` and `TRAINERD_MLFLOW_TIMEOUT_MS`.
    pub fn new(target: MlflowTarget, data_dir: PathBuf) -> Settings {
        let ms = |var: &str, default: u64| {
            Duration::from_millis(
                std::env::var(var)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(default),
            )
        };
        Settings {
            target,
            data_dir,
            backoff: ms("TRAINERD_MLFLOW_BACKOFF_MS", 1000),
            max_backoff: Duration::from_secs(60),
            timeout: ms("TRAINERD_MLFLOW_TIMEOUT_MS", 30_000),
        }
    }
}

/// Handle on the running sink.
pub struct Sink {
    tx: UnboundedSender<Event>,
    close: oneshot::Sender<()>,
    forward: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
    done: std::sync::mpsc::Receiver<()>,
}

/// Queues the operations of `ev` (the commit read for a trial's start).
fn enqueue(shared: &Shared, ev: &Event, data_dir: &Path) {
    let commit = matches!(ev.kind, crate::event_kind::EventKind::TrialStarted)
        .then(|| crate::watch::git::commit_of(data_dir))
        .flatten();
    let mut q = shared.lock();
    for op in ops::ops_for(ev, commit.as_deref()) {
        match q.push(op) {
            Ok(true) => shared.wake.notify_all(),
            Ok(false) => {}
            Err(e) => tracing::warn!("cannot queue an MLflow operation for event {}: {e}", ev.id),
        }
    }
}

/// Starts the sink; every event sent to [`Sink::sender`] is queued for
/// MLflow, then passed on to `next` (the webhook sink) if given.
pub fn spawn(
    state_dir: &Path,
    settings: Settings,
    next: Option<UnboundedSender<Event>>,
) -> std::io::Result<Sink> {
    let queue = DiskQueue::open(state_dir, queue::MAX_PENDING)?;
    let shared = Arc::new(Shared {
        queue: Mutex::new(queue),
        wake: Condvar::new(),
        closing: Default::default(),
    });
    for ev in latest_study(&EventLog::path(state_dir)) {
        enqueue(&shared, &ev, &settings.data_dir);
    }
    let waiting = shared.lock().len();
    tracing::info!(url = %settings.target.shown, model = %settings.target.model, waiting, "logging to MLflow");
    let client = client::Client::new(settings.target.clone(), settings.timeout);
    let applier = apply::Applier::new(client, state_dir.to_path_buf());
    let backoff = Backoff {
        first: settings.backoff,
        max: settings.max_backoff,
    };
    let (done_tx, done) = std::sync::mpsc::channel();
    let w = shared.clone();
    std::thread::Builder::new()
        .name("mlflow".into())
        .spawn(move || {
            worker::run(&w, applier, backoff);
            let _ = done_tx.send(());
        })?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (close, closed) = oneshot::channel();
    let forward = tokio::spawn(forward(shared.clone(), rx, closed, next, settings.data_dir));
    Ok(Sink {
        tx,
        close,
        forward,
        shared,
        done,
    })
}

/// The latest study's events in `events.jsonl` (none when unreadable).
fn latest_study(path: &Path) -> Vec<Event> {
    let events = read_events(path).unwrap_or_else(|e| {
        tracing::warn!("cannot read the event log for MLflow: {e}");
        vec![]
    });
    let Some(latest) = events.last().map(|e| e.study.clone()) else {
        return vec![];
    };
    events.into_iter().filter(|e| e.study == latest).collect()
}

async fn forward(
    shared: Arc<Shared>,
    mut rx: UnboundedReceiver<Event>,
    mut closed: oneshot::Receiver<()>,
    next: Option<UnboundedSender<Event>>,
    data_dir: PathBuf,
) {
    let pass = |ev: Event| {
        enqueue(&shared, &ev, &data_dir);
        if let Some(n) = &next {
            let _ = n.send(ev);
        }
    };
    loop {
        tokio::select! {
            biased;
            ev = rx.recv() => match ev {
                Some(ev) => pass(ev),
                None => return,
            },
            _ = &mut closed => break,
        }
    }
    while let Ok(ev) = rx.try_recv() {
        pass(ev);
    }
}

impl Sink {
    /// Where the event log sends new events.
    pub fn sender(&self) -> UnboundedSender<Event> {
        self.tx.clone()
    }

    /// Queues what the channel holds, then lets the thread send for up to
    /// `grace`; what is left stays queued on disk for the next start.
    pub async fn finish(self, grace: Duration) {
        let _ = self.close.send(());
        drop(self.tx);
        let _ = self.forward.await;
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        let done = self.done;
        let finished = tokio::task::spawn_blocking(move || done.recv_timeout(grace).is_ok())
            .await
            .unwrap_or(false);
        let left = self.shared.lock().len();
        if !finished || left > 0 {
            tracing::warn!(left, "MLflow operations still queued in mlflow/queue.jsonl; they are sent at the next start");
        }
    }
}

/// After `trainerd rollback` put `card`'s model back in `best/`: queues
/// moving the alias `champion` to its version (when this state dir logs to
/// MLflow), and with `target` sends what is queued at once, trying each
/// operation once (what fails stays queued for the next `train`/`run`).
pub fn rolled_back(
    state_dir: &Path,
    card: &crate::model::card::ModelCard,
    target: Option<&MlflowTarget>,
) {
    if target.is_none() && !crate::state_dir::mlflow(state_dir).exists() {
        return;
    }
    let mut q = match DiskQueue::open(state_dir, queue::MAX_PENDING) {
        Ok(q) => q,
        Err(e) => return tracing::warn!("cannot queue the MLflow alias move: {e}"),
    };
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let op = ops::Queued {
        key: format!("{}:alias:{nanos}", ops::run_key(&card.study, card.trial)),
        op: ops::Op::Alias {
            study: card.study.clone(),
            trial: card.trial,
        },
    };
    if let Err(e) = q.push(op) {
        return tracing::warn!("cannot queue the MLflow alias move: {e}");
    }
    let Some(target) = target else {
        return tracing::info!(
            "MLflow alias move queued; sent at the next train or run with --mlflow-uri"
        );
    };
    let shared = Shared {
        queue: Mutex::new(q),
        wake: Condvar::new(),
        closing: true.into(),
    };
    let settings = Settings::new(target.clone(), PathBuf::new());
    let client = client::Client::new(target.clone(), settings.timeout);
    let backoff = Backoff {
        first: settings.backoff,
        max: settings.max_backoff,
    };
    worker::run(
        &shared,
        apply::Applier::new(client, state_dir.to_path_buf()),
        backoff,
    );
}

#[cfg(test)]
mod tests;
