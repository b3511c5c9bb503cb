//! `trainerd run`: the daemon loop. Run (or resume) the configured study,
//! promote and notify as it goes, then stay up idle until a new study is
//! requested through the hook channel (the workspace watcher sends on it) or
//! a stop is requested (exit 143).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::study::{run_study, Context};
use super::StudyEnd;
use crate::config::Config;

/// A request to start a new study: what wakes an idle daemon.
#[derive(Debug, Clone)]
pub struct StudyRequest {
    /// Why (logged): e.g. "data changed", "trainerd.toml changed".
    pub reason: String,
    /// A new, validated configuration; `None` keeps the current one.
    pub config: Option<Box<Config>>,
    /// Start a new study even if settings and data are unchanged (otherwise a
    /// request whose study already finished leaves the daemon idle).
    pub force: bool,
}

/// How often the idle loop looks at the stop flag.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Runs studies until stopped; returns how the last one ended (always
/// `Stopped` unless an error ends the daemon first).
pub fn run(
    mut cfg: Config,
    ctx: Context<'_>,
    requests: &Receiver<StudyRequest>,
) -> anyhow::Result<StudyEnd> {
    let mut force = ctx.force_new;
    loop {
        let study_ctx = Context {
            cfg: &cfg,
            force_new: force,
            notify: ctx.notify.clone(),
            ..ctx
        };
        let end = run_study(&study_ctx)?;
        if end == StudyEnd::Stopped {
            return Ok(end);
        }
        tracing::info!(outcome = ?end, "study over; idle until a new study is requested");
        let request = loop {
            if ctx.stop.is_raised() {
                tracing::info!("stopped while idle");
                return Ok(StudyEnd::Stopped);
            }
            match requests.recv_timeout(IDLE_POLL) {
                Ok(req) => break req,
                Err(RecvTimeoutError::Timeout) => {}
                // No watcher: nothing can wake us but a stop.
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(IDLE_POLL),
            }
        };
        tracing::info!(reason = %request.reason, force = request.force, "new study requested");
        if let Some(new) = request.config {
            cfg = *new;
        }
        force = request.force;
    }
}
