//! The control plane: one tokio task owns the daemon's state and waits,
//! with `tokio::select!`, on everything that can change it: stop requests
//! (signals), the watchdog's stall reports, study requests (the workspace
//! watcher's), and the training thread's results. Training runs on its own
//! OS thread ([`trainer`]), since libtorch blocks.
//!
//! Ends: a study's outcome (`train`, `trial`), or a stop (`run`). A stall
//! raises the stop flag so the trainer finishes its step, checkpoints and
//! returns (exit 75); a trainer that does not come back within
//! [`STALL_GRACE`], or a second stop request, ends the process without
//! waiting for it ([`Ending::abandon`]).

mod setup;
pub mod stops;
pub mod trainer;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::time::Instant;

use crate::config::{Config, Options};
use crate::exit::Outcome;
use crate::pipeline::daemon::StudyRequest;
use crate::pipeline::study::{self, Context};
use crate::telemetry::heartbeat::Stall;
use crate::watch::Watcher;
use setup::prepare_daemon;
use stops::StopRequest;
use trainer::{Job, Pending, Shared, Trainer};

/// How long a stalled trainer gets to come back (finish its step,
/// checkpoint) before the process ends without it.
pub const STALL_GRACE: Duration = Duration::from_secs(10);

/// What the control plane runs.
pub enum Mode {
    /// One study, then end with its outcome (`train`).
    Train,
    /// Studies until stopped; workspace changes request new ones (`run`).
    /// The flags are kept to re-read a changed config file.
    Daemon(Box<Options>),
    /// One job, then end with its outcome (`trial`).
    Single(Job),
}

/// How the control plane ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    pub outcome: Outcome,
    /// The training thread may still be inside libtorch: the process must
    /// end without running destructors (flush the logs, then `_exit`).
    pub abandon: bool,
}

impl Ending {
    /// An ending with every thread back (destructors may run).
    pub fn clean(outcome: Outcome) -> Ending {
        Ending {
            outcome,
            abandon: false,
        }
    }
}

/// What the control task listens to besides its own channels.
pub struct Inputs {
    pub stops: UnboundedReceiver<StopRequest>,
    pub stalls: UnboundedReceiver<Stall>,
}

/// Why the process is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Requested,
    Stalled,
}

/// What the control task waits on while the trainer (or setup) works.
enum Report {
    /// The daemon's setup: data downloaded, the watcher started (if it could be).
    Prepared(anyhow::Result<Option<Watcher>>),
    /// A training job ended.
    Ended(anyhow::Result<Outcome>),
}

type Busy = Pin<Box<dyn Future<Output = Report> + Send>>;

enum Flow {
    Go,
    End(Ending),
}

/// The daemon's state, owned by the control task alone.
struct Control {
    cfg: Config,
    daemon: bool,
    shared: Shared,
    trainer: Trainer,
    /// Setup or a training job in progress.
    busy: Option<Busy>,
    /// Whether `busy` is a training job (the watchdog judges only those).
    training: bool,
    /// A study request that came while busy.
    pending: Option<StudyRequest>,
    /// The running study was asked to give way to `pending`.
    superseding: bool,
    why: Option<Why>,
    /// When a stalled trainer is given up on.
    deadline: Option<Instant>,
    watcher: Option<Watcher>,
}

/// Runs the control task until the process should end.
pub async fn run(
    mode: Mode,
    cfg: Config,
    shared: Shared,
    inputs: &mut Inputs,
) -> anyhow::Result<Ending> {
    crate::train::use_engine(cfg.engine);
    let trainer = Trainer::spawn(shared.clone(), cfg.threads as i32, !cfg.fixed_threads)?;
    let (request_tx, mut requests) = mpsc::unbounded_channel::<StudyRequest>();
    let mut c = Control {
        daemon: matches!(mode, Mode::Daemon(_)),
        cfg,
        shared,
        trainer,
        busy: None,
        training: false,
        pending: None,
        superseding: false,
        why: None,
        deadline: None,
        watcher: None,
    };
    match mode {
        Mode::Train => c.start_study(false),
        Mode::Daemon(args) => {
            let stop = c.shared.stop.clone();
            c.busy = Some(prepare_daemon(&c.cfg, stop, *args, request_tx))
        }
        Mode::Single(job) => c.start(job),
    }
    let ending = loop {
        let flow = tokio::select! {
            Some(req) = inputs.stops.recv() => c.on_stop(req),
            Some(stall) = inputs.stalls.recv() => c.on_stall(stall),
            Some(req) = requests.recv() => c.on_request(req),
            report = wait(&mut c.busy) => c.on_report(report),
            () = until(c.deadline) => c.give_up(),
        };
        match flow {
            Ok(Flow::Go) => {}
            Ok(Flow::End(e)) => break Ok(e),
            Err(e) => break Err(e),
        }
    };
    if let Some(w) = c.watcher.take() {
        w.close();
    }
    ending
}

/// The busy future's result; pending forever when idle.
async fn wait(busy: &mut Option<Busy>) -> Report {
    match busy {
        Some(f) => {
            let report = f.await;
            *busy = None;
            report
        }
        None => std::future::pending().await,
    }
}

/// Fires at `deadline`; never without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Control {
    fn start(&mut self, job: Job) {
        let pending: Pending = self.trainer.submit(job);
        self.busy = Some(Box::pin(async move { Report::Ended(pending.await) }));
        self.training = true;
    }

    fn start_study(&mut self, force_new: bool) {
        let cfg = self.cfg.clone();
        self.start(Box::new(move |s: &Shared| {
            let ctx = Context {
                cfg: &cfg,
                stop: &s.stop,
                progress: &s.progress,
                live: &s.live,
                notify: s.notify.clone(),
                force_new,
                supersede: &s.supersede,
            };
            study::run_study(&ctx).map(Outcome::from)
        }));
    }

    fn start_request(&mut self, req: StudyRequest) {
        tracing::info!(reason = %req.reason, force = req.force, "new study requested");
        if let Some(new) = req.config {
            self.cfg = *new;
        }
        self.start_study(req.force);
    }

    fn on_stop(&mut self, req: StopRequest) -> anyhow::Result<Flow> {
        if req == StopRequest::Now {
            tracing::warn!("second stop request: exiting now, without waiting for the trainer");
            return Ok(Flow::End(Ending {
                outcome: Outcome::Stopped,
                abandon: true,
            }));
        }
        self.shared.stop.raise();
        self.why.get_or_insert(Why::Requested);
        if self.busy.is_some() {
            return Ok(Flow::Go);
        }
        tracing::info!("stopped while idle");
        Ok(Flow::End(Ending::clean(Outcome::Stopped)))
    }

    fn on_stall(&mut self, stall: Stall) -> anyhow::Result<Flow> {
        if !self.training || self.why == Some(Why::Stalled) {
            tracing::debug!(?stall, "stall report with no trial training: ignored");
            return Ok(Flow::Go);
        }
        tracing::error!(
            step = stall.step,
            idle_secs = stall.idle.as_secs(),
            "watchdog: no training progress for {:?}; exiting 75 so the restart policy restarts trainerd",
            self.cfg.watchdog
        );
        self.why = Some(Why::Stalled);
        self.shared.stop.raise();
        self.deadline = Some(Instant::now() + STALL_GRACE);
        Ok(Flow::Go)
    }

    /// The stalled trainer did not come back in time.
    fn give_up(&mut self) -> anyhow::Result<Flow> {
        tracing::error!(
            "the trainer did not come back within {STALL_GRACE:?} of the stop; exiting 75 without it"
        );
        Ok(Flow::End(Ending {
            outcome: Outcome::Stalled,
            abandon: true,
        }))
    }

    fn on_request(&mut self, req: StudyRequest) -> anyhow::Result<Flow> {
        if !self.daemon || self.why.is_some() {
            tracing::debug!(reason = %req.reason, "study request while stopping: ignored");
            return Ok(Flow::Go);
        }
        let req = match self.pending.take() {
            Some(earlier) => earlier.merge(req),
            None => req,
        };
        if self.busy.is_some() {
            if self.training && req.force {
                self.supersede(&req);
            }
            self.pending = Some(req);
        } else {
            self.start_request(req);
        }
        Ok(Flow::Go)
    }

    /// New inputs while a study trains: it stops at its next step
    /// (checkpointed, journaled as superseded) and the pending request starts
    /// as soon as the trainer is back ([`Control::on_report`]).
    fn supersede(&mut self, req: &StudyRequest) {
        let why = crate::pipeline::study::Supersession {
            reason: req.reason.clone(),
            commit: req.commit.clone(),
        };
        tracing::info!(reason = %why.reason, commit = ?why.commit, "new inputs: superseding the running study");
        if let Ok(mut slot) = self.shared.supersede.lock() {
            *slot = Some(why);
        }
        self.superseding = true;
        self.shared.stop.raise();
    }

    fn on_report(&mut self, report: Report) -> anyhow::Result<Flow> {
        self.training = false;
        let outcome = match report {
            Report::Prepared(watcher) => {
                self.watcher = watcher?;
                self.start_study(false);
                return Ok(Flow::Go);
            }
            Report::Ended(outcome) => outcome?,
        };
        if self.why == Some(Why::Stalled) {
            return Ok(Flow::End(Ending::clean(Outcome::Stalled)));
        }
        if std::mem::take(&mut self.superseding) && self.why.is_none() {
            if let Ok(mut slot) = self.shared.supersede.lock() {
                *slot = None;
            }
            self.shared.stop.lower();
            if let Some(req) = self.pending.take() {
                self.start_request(req);
                return Ok(Flow::Go);
            }
        }
        if !self.daemon || outcome == Outcome::Stopped {
            return Ok(Flow::End(Ending::clean(outcome)));
        }
        if self.why.is_some() {
            tracing::info!("stopped while idle");
            return Ok(Flow::End(Ending::clean(Outcome::Stopped)));
        }
        tracing::info!(?outcome, "study over; idle until a new study is requested");
        if let Some(req) = self.pending.take() {
            self.start_request(req);
        }
        Ok(Flow::Go)
    }
}

#[cfg(test)]
mod tests;
