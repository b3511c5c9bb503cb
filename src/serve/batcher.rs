//! Dynamic batching on a dedicated OS thread (libtorch blocks; no forward
//! pass runs on a tokio worker). Requests queue in a bounded channel
//! ([`Batcher::submit`] refuses when it is full); the thread takes the first,
//! collects more for up to the batch window or until `max_batch` images,
//! runs one forward pass (onnxruntime's, or libtorch's under `no_grad`: see
//! [`super::engine`]) and answers each request through its
//! oneshot channel. The window is only waited for while other requests are
//! arriving (being read or parsed), so a lone client is not delayed by it.
//!
//! A new champion comes through the same channel ([`Msg::Swap`]) and is
//! installed between batches: a batch runs wholly on the model it started
//! with, and its answers carry that model's version.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::engine::Served;
use super::metrics::ServeMetrics;
use super::protocol::Geometry;

/// The model being served, as the HTTP handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub version: u64,
    pub geometry: Geometry,
    /// The card's class names (label `i` is entry `i`; empty for older cards).
    pub class_names: Arc<[String]>,
    /// The engine serving it, as the model metadata's `platform`.
    pub platform: &'static str,
}

/// What the handlers and the thread share.
#[derive(Default)]
pub struct Shared {
    /// `None` until a verified champion is installed.
    pub loaded: RwLock<Option<Loaded>>,
    /// Requests read or parsed but not yet queued.
    pub arriving: AtomicUsize,
}

impl Shared {
    pub fn loaded(&self) -> Option<Loaded> {
        self.loaded.read().map(|g| g.clone()).unwrap_or(None)
    }
}

/// The logits of one request, and the model version that computed them.
#[derive(Debug)]
pub struct Answer {
    pub logits: Vec<f32>,
    pub classes: usize,
    pub version: u64,
}

/// Why a queued request was not answered with logits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("no model is loaded yet")]
    NotReady,
    #[error("the model changed to one with another input shape; send {0} values per image")]
    Reshaped(usize),
    #[error("the forward pass failed (see the server log)")]
    Forward,
}

/// One request's images (grey values in [0, 1]).
pub struct Job {
    pub pixels: Vec<f32>,
    pub n: usize,
    pub reply: oneshot::Sender<Result<Answer, JobError>>,
}

pub enum Msg {
    Job(Job),
    Swap(Box<Served>),
}

/// The handle the HTTP handlers queue requests through.
#[derive(Clone)]
pub struct Batcher {
    tx: SyncSender<Msg>,
}

/// How the thread batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub window: Duration,
    pub max_batch: usize,
    pub queue: usize,
}

impl Batcher {
    /// Queues a request; false when the queue is full (or the thread is gone).
    pub fn submit(&self, job: Job) -> bool {
        self.tx.try_send(Msg::Job(job)).is_ok()
    }

    /// Hands a new champion to the thread (waits for room in the queue).
    pub fn swap(&self, served: Served) -> bool {
        self.tx.send(Msg::Swap(Box::new(served))).is_ok()
    }
}

/// Starts the champion's inference thread.
pub fn spawn(
    settings: BatchSettings,
    shared: Arc<Shared>,
    metrics: Arc<ServeMetrics>,
) -> std::io::Result<Batcher> {
    spawn_for(settings, shared, metrics, Role::Champion)
}

/// Whose thread it is: the champion's sets the served-version gauge and
/// counts swaps; a kept version's ([`super::kept`]) only answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Champion,
    Kept,
}

/// Starts an inference thread for `role`; it ends when every [`Batcher`] is dropped.
pub fn spawn_for(
    settings: BatchSettings,
    shared: Arc<Shared>,
    metrics: Arc<ServeMetrics>,
    role: Role,
) -> std::io::Result<Batcher> {
    let (tx, rx) = mpsc::sync_channel(settings.queue.max(1));
    std::thread::Builder::new()
        .name("trainerd-infer".into())
        .spawn(move || {
            let mut worker = Worker {
                settings,
                shared,
                metrics,
                role,
                champion: None,
                carry: None,
            };
            worker.run(&rx);
        })?;
    Ok(Batcher { tx })
}

struct Worker {
    settings: BatchSettings,
    shared: Arc<Shared>,
    metrics: Arc<ServeMetrics>,
    role: Role,
    champion: Option<Box<Served>>,
    /// A job that did not fit the last batch: first in the next.
    carry: Option<Job>,
}

impl Worker {
    fn run(&mut self, rx: &Receiver<Msg>) {
        loop {
            let first = match self.carry.take() {
                Some(job) => job,
                None => match rx.recv() {
                    Ok(Msg::Job(job)) => job,
                    Ok(Msg::Swap(c)) => {
                        self.install(c);
                        continue;
                    }
                    Err(_) => return,
                },
            };
            let (jobs, swap) = self.collect(first, rx);
            self.answer(jobs);
            if let Some(c) = swap {
                self.install(c);
            }
        }
    }

    /// More jobs for the batch that `first` opens, and a swap that ended it.
    fn collect(&mut self, first: Job, rx: &Receiver<Msg>) -> (Vec<Job>, Option<Box<Served>>) {
        let deadline = Instant::now() + self.settings.window;
        let mut images = first.n;
        let mut jobs = vec![first];
        while images < self.settings.max_batch {
            let next = match rx.try_recv() {
                Ok(m) => m,
                Err(_) if self.shared.arriving.load(Ordering::Acquire) == 0 => break,
                Err(_) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(m) => m,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            match next {
                Msg::Swap(c) => return (jobs, Some(c)),
                Msg::Job(job) if images + job.n > self.settings.max_batch => {
                    self.carry = Some(job);
                    break;
                }
                Msg::Job(job) => {
                    images += job.n;
                    jobs.push(job);
                }
            }
        }
        (jobs, None)
    }

    fn install(&mut self, served: Box<Served>) {
        let card = &served.champion.card;
        let loaded = Loaded {
            version: card.version,
            geometry: Geometry {
                input: card.input_shape,
                classes: card.classes,
            },
            class_names: card.class_names.clone().into(),
            platform: served.platform(),
        };
        let what = match self.role {
            Role::Champion => "serving champion",
            Role::Kept => "serving kept version on request",
        };
        tracing::info!(
            version = card.version,
            trial = card.trial,
            study = %card.study,
            preset = %card.preset,
            engine = served.platform(),
            "{what}"
        );
        if self.role == Role::Champion {
            if self.champion.is_some() {
                self.metrics.swaps.inc();
            }
            self.metrics.model_version.set(loaded.version as i64);
        }
        self.champion = Some(served);
        if let Ok(mut g) = self.shared.loaded.write() {
            *g = Some(loaded);
        }
    }

    /// One forward pass over every job that fits the model, then the answers.
    fn answer(&mut self, jobs: Vec<Job>) {
        let Some(served) = self.champion.as_deref_mut() else {
            for job in jobs {
                let _ = job.reply.send(Err(JobError::NotReady));
            }
            return;
        };
        let [c, h, w] = served.champion.card.input_shape;
        let per_image = (c * h * w).max(0) as usize;
        let (fit, misfit): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| j.pixels.len() == j.n * per_image);
        for job in misfit {
            let _ = job.reply.send(Err(JobError::Reshaped(per_image)));
        }
        if fit.is_empty() {
            return;
        }
        let total: usize = fit.iter().map(|j| j.n).sum();
        self.metrics.batch_images.observe(total as f64);
        let logits = if fit.len() == 1 {
            served.logits01(&fit[0].pixels, total)
        } else {
            let mut all = Vec::with_capacity(total * per_image);
            for j in &fit {
                all.extend_from_slice(&j.pixels);
            }
            served.logits01(&all, total)
        };
        let classes = served.champion.card.classes.max(1) as usize;
        let version = served.champion.card.version;
        let Some(logits) = logits.filter(|l| l.len() == total * classes) else {
            for job in fit {
                let _ = job.reply.send(Err(JobError::Forward));
            }
            return;
        };
        let mut rows = logits.chunks(classes);
        for job in fit {
            let mine: Vec<f32> = rows.by_ref().take(job.n).flatten().copied().collect();
            let _ = job.reply.send(Ok(Answer {
                logits: mine,
                classes,
                version,
            }));
        }
    }
}
