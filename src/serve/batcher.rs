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
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::engine::Served;
use super::metrics::ServeMetrics;
use super::protocol::Geometry;
use crate::lock::lock;

/// How long an idle inference thread polls the queue (yielding its core
/// to whatever else is runnable) before it sleeps: under load the next job
/// usually comes within this, and a sleeping thread must be woken through
/// the kernel (costly on a virtual machine). Measured on `fast` served at
/// batch 64 (2-core AMD EPYC VM): about 2% more images/s.
const SPIN: Duration = Duration::from_micros(100);

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

/// How the threads batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub window: Duration,
    pub max_batch: usize,
    pub queue: usize,
    /// Inference threads taking batches from the one queue (each runs its
    /// own engine instance, see [`super::engine::EngineSetup::instances`]).
    pub threads: usize,
}

impl Batcher {
    /// Queues a request; false when the queue is full (or the threads are gone).
    pub fn submit(&self, job: Job) -> bool {
        self.tx.try_send(Msg::Job(job)).is_ok()
    }

    /// Hands a new champion to the threads (waits for room in the queue).
    pub fn swap(&self, served: Served) -> bool {
        self.tx.send(Msg::Swap(Box::new(served))).is_ok()
    }
}

/// Starts the champion's inference threads.
pub fn spawn(
    settings: BatchSettings,
    shared: Arc<Shared>,
    metrics: Arc<ServeMetrics>,
) -> std::io::Result<Batcher> {
    spawn_for(settings, shared, metrics, Role::Champion)
}

/// Whose threads they are: the champion's set the served-version gauge and
/// count swaps; a kept version's ([`super::kept`]) only answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Champion,
    Kept,
}

/// Starts the inference threads for `role`; they end when every [`Batcher`] is dropped.
pub fn spawn_for(
    settings: BatchSettings,
    shared: Arc<Shared>,
    metrics: Arc<ServeMetrics>,
    role: Role,
) -> std::io::Result<Batcher> {
    let (tx, rx) = mpsc::sync_channel(settings.queue.max(1));
    let queue = Arc::new(Mutex::new(Queue {
        rx,
        carry: None,
        champion: None,
    }));
    let ctx = Arc::new(Context {
        settings,
        shared,
        metrics,
        role,
    });
    for lane in 0..settings.threads.max(1) {
        let (queue, ctx) = (queue.clone(), ctx.clone());
        std::thread::Builder::new()
            .name(format!("trainerd-infer-{lane}"))
            .spawn(move || run(lane, &queue, &ctx))?;
    }
    Ok(Batcher { tx })
}

/// What the threads share and take turns at: the one thread holding it
/// collects the next batch, then lets go and runs it while another collects.
struct Queue {
    rx: Receiver<Msg>,
    /// A job that did not fit the last batch: first in the next.
    carry: Option<Job>,
    champion: Option<Arc<Served>>,
}

struct Context {
    settings: BatchSettings,
    shared: Arc<Shared>,
    metrics: Arc<ServeMetrics>,
    role: Role,
}

/// One inference thread: a batch, collected under the queue's lock, then
/// run on the champion that was current when its last job was taken.
fn run(lane: usize, queue: &Mutex<Queue>, ctx: &Context) {
    loop {
        let batch = {
            let mut q = lock(queue);
            q.next_batch(ctx)
        };
        match batch {
            None => return,
            Some((jobs, champion)) => answer(lane, jobs, champion.as_deref(), ctx),
        }
    }
}

impl Queue {
    /// The next batch and the model to run it on; `None` once every
    /// [`Batcher`] is gone. A swap is installed as it comes: the jobs
    /// taken before it run on the model they were queued for.
    fn next_batch(&mut self, ctx: &Context) -> Option<(Vec<Job>, Option<Arc<Served>>)> {
        let first = loop {
            if let Some(job) = self.carry.take() {
                break job;
            }
            match self.recv_soon()? {
                Msg::Job(job) => break job,
                Msg::Swap(c) => self.install(c, ctx),
            }
        };
        let deadline = Instant::now() + ctx.settings.window;
        let mut images = first.n;
        let mut jobs = vec![first];
        while images < ctx.settings.max_batch {
            let next = match self.rx.try_recv() {
                Ok(m) => m,
                Err(_) if ctx.shared.arriving.load(Ordering::Acquire) == 0 => break,
                Err(_) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match self.rx.recv_timeout(left) {
                        Ok(m) => m,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            match next {
                Msg::Swap(c) => {
                    let before = self.champion.clone();
                    self.install(c, ctx);
                    return Some((jobs, before));
                }
                Msg::Job(job) if images + job.n > ctx.settings.max_batch => {
                    self.carry = Some(job);
                    break;
                }
                Msg::Job(job) => {
                    images += job.n;
                    jobs.push(job);
                }
            }
        }
        Some((jobs, self.champion.clone()))
    }

    /// The next message: yields the core for a moment while none is queued
    /// (a job usually follows within microseconds under load, and a thread
    /// that sleeps must be woken), then blocks.
    fn recv_soon(&mut self) -> Option<Msg> {
        let until = Instant::now() + SPIN;
        loop {
            match self.rx.try_recv() {
                Ok(m) => return Some(m),
                Err(mpsc::TryRecvError::Disconnected) => return None,
                Err(mpsc::TryRecvError::Empty) if Instant::now() < until => {
                    std::thread::yield_now()
                }
                Err(mpsc::TryRecvError::Empty) => return self.rx.recv().ok(),
            }
        }
    }

    fn install(&mut self, served: Box<Served>, ctx: &Context) {
        let card = &served.card;
        let loaded = Loaded {
            version: card.version,
            geometry: Geometry {
                input: card.input_shape,
                classes: card.classes,
            },
            class_names: card.class_names.clone().into(),
            platform: served.platform(),
        };
        let what = match ctx.role {
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
        if ctx.role == Role::Champion {
            if self.champion.is_some() {
                ctx.metrics.swaps.inc();
            }
            ctx.metrics.model_version.set(loaded.version as i64);
        }
        self.champion = Some(Arc::from(served));
        if let Ok(mut g) = ctx.shared.loaded.write() {
            *g = Some(loaded);
        }
    }
}

/// One forward pass over every job that fits the model, then the answers.
fn answer(lane: usize, jobs: Vec<Job>, served: Option<&Served>, ctx: &Context) {
    let Some(served) = served else {
        for job in jobs {
            let _ = job.reply.send(Err(JobError::NotReady));
        }
        return;
    };
    let [c, h, w] = served.card.input_shape;
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
    ctx.metrics.batch_images.observe(total as f64);
    let logits = if fit.len() == 1 {
        served.logits01(lane, &fit[0].pixels, total)
    } else {
        let mut all = Vec::with_capacity(total * per_image);
        for j in &fit {
            all.extend_from_slice(&j.pixels);
        }
        served.logits01(lane, &all, total)
    };
    let classes = served.card.classes.max(1) as usize;
    let version = served.card.version;
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
