//! The training thread: libtorch work blocks, so studies and trials run on
//! one OS thread of their own, one job at a time, each job's result sent
//! back on a oneshot channel the control task awaits.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use crate::exit::Outcome;
use crate::pipeline::events::Event;
use crate::telemetry::heartbeat::Liveness;
use crate::train::{Progress, StopFlag};

/// What every job shares with the rest of the process.
#[derive(Clone)]
pub struct Shared {
    pub stop: StopFlag,
    pub progress: Arc<Progress>,
    pub live: Liveness,
    /// Where new events go besides the log (the webhook sink).
    pub notify: Option<UnboundedSender<Event>>,
    /// Why the running study is being superseded (set before `stop` is raised).
    pub supersede: crate::pipeline::study::SupersedeSlot,
}

/// One piece of training work: a study, or a single trial.
pub type Job = Box<dyn FnOnce(&Shared) -> anyhow::Result<Outcome> + Send>;

/// A job's result, as the control task awaits it.
pub type Pending = Pin<Box<dyn Future<Output = anyhow::Result<Outcome>> + Send>>;

type Envelope = (Job, oneshot::Sender<anyhow::Result<Outcome>>);

/// Handle on the training thread; dropping it lets the thread end once its
/// job (if any) is done.
pub struct Trainer {
    jobs: mpsc::Sender<Envelope>,
}

impl Trainer {
    /// Starts the thread; libtorch's intra-op pool gets `threads` threads,
    /// fewer while the CPU is contended when `adaptive` (`train::cpu_share`).
    pub fn spawn(shared: Shared, threads: i32, adaptive: bool) -> std::io::Result<Trainer> {
        let (jobs, queue) = mpsc::channel::<Envelope>();
        std::thread::Builder::new()
            .name("trainer".into())
            // Blocks in recv between jobs: woken by the next job, no polling.
            .spawn(move || {
                // On the thread that runs the kernels (OpenMP's setting is per thread).
                crate::train::cpu_share::configure(threads, adaptive);
                tracing::info!(threads, adaptive, "intra-op threads for training");
                for (job, reply) in queue {
                    let _ = reply.send(job(&shared));
                }
            })?;
        Ok(Trainer { jobs })
    }

    /// Hands `job` to the thread; the future resolves with its result.
    pub fn submit(&self, job: Job) -> Pending {
        let (reply, result) = oneshot::channel();
        let sent = self.jobs.send((job, reply));
        Box::pin(async move {
            if sent.is_err() {
                anyhow::bail!("the training thread is gone");
            }
            result
                .await
                .map_err(|_| anyhow::anyhow!("the training thread ended without a result"))?
        })
    }
}
