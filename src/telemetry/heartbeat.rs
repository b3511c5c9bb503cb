//! Heartbeat and watchdog: a thread that records liveness in the state dir
//! (read by `trainerd health`) and ends a process whose training stalled.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::train::{now_ms, Progress};

/// `heartbeat.json` in the state dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub pid: u32,
    pub step: u64,
    /// Unix ms when this file was written.
    pub updated_ms: u64,
    /// Unix ms of the last training step.
    pub last_step_ms: u64,
    /// Whether a trial is running (the watchdog only judges training).
    pub training: bool,
    pub samples_per_sec: u64,
    /// The trial training now (or last), its completed epochs and planned steps.
    #[serde(default)]
    pub trial: u64,
    #[serde(default)]
    pub epoch: u64,
    #[serde(default)]
    pub total_steps: u64,
    /// Unix ms of the last checkpoint this process wrote (0: none yet).
    #[serde(default)]
    pub last_checkpoint_ms: u64,
    /// The last epoch's training loss and validation accuracy.
    #[serde(default)]
    pub train_loss: Option<f64>,
    #[serde(default)]
    pub val_accuracy: Option<f64>,
}

impl Heartbeat {
    /// What `progress` says now.
    pub fn from_progress(progress: &Progress, training: bool) -> Heartbeat {
        let finite = |x: f64| x.is_finite().then_some(x);
        Heartbeat {
            pid: std::process::id(),
            step: progress.step.load(Ordering::Relaxed),
            updated_ms: now_ms(),
            last_step_ms: progress.last_step_ms.load(Ordering::Relaxed),
            training,
            samples_per_sec: progress.samples_per_sec.load(Ordering::Relaxed),
            trial: progress.trial.load(Ordering::Relaxed),
            epoch: progress.epoch.load(Ordering::Relaxed),
            total_steps: progress.total_steps.load(Ordering::Relaxed),
            last_checkpoint_ms: progress.last_checkpoint_ms.load(Ordering::Relaxed),
            train_loss: finite(progress.train_loss()),
            val_accuracy: finite(progress.val_accuracy()),
        }
    }
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("heartbeat.json")
}

/// Reads the heartbeat, if any.
pub fn read(state_dir: &Path) -> Option<Heartbeat> {
    serde_json::from_slice(&std::fs::read(path(state_dir)).ok()?).ok()
}

/// Shared switches for the heartbeat thread.
#[derive(Clone, Default)]
pub struct Liveness {
    /// Set while a trial is training; the watchdog ignores idle periods.
    pub training: Arc<AtomicBool>,
}

/// Starts the heartbeat thread: every `every`, writes `heartbeat.json`; when
/// `training` and no step for `watchdog`, logs why and exits 75.
pub fn spawn(
    state_dir: PathBuf,
    progress: Arc<Progress>,
    live: Liveness,
    every: Duration,
    watchdog: Duration,
) {
    let spawned = std::thread::Builder::new().name("heartbeat".into()).spawn(move || loop {
        let training = live.training.load(Ordering::Relaxed);
        let beat = Heartbeat::from_progress(&progress, training);
        let tmp = path(&state_dir).with_extension("tmp");
        if let Ok(bytes) = serde_json::to_vec(&beat) {
            if std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path(&state_dir))).is_err() {
                tracing::warn!(dir = %state_dir.display(), "cannot write the heartbeat");
            }
        }
        let idle = Duration::from_millis(progress.idle_ms());
        if training && idle >= watchdog {
            tracing::error!(
                step = beat.step, idle_secs = idle.as_secs(),
                "watchdog: no training progress for {:?}; exiting 75 so the restart policy restarts trainerd",
                watchdog
            );
            std::process::exit(i32::from(crate::exit::STALLED));
        }
        std::thread::sleep(every.min(watchdog / 4).max(Duration::from_millis(100)));
    });
    if let Err(e) = spawned {
        tracing::warn!("heartbeat thread not started: {e}");
    }
}

/// `trainerd health`: healthy when the heartbeat is fresh and, while training,
/// steps are advancing within `max_age`.
pub fn check(state_dir: &Path, max_age: Duration) -> Result<String, String> {
    let beat = read(state_dir).ok_or_else(|| format!("no heartbeat in {}", state_dir.display()))?;
    let now = now_ms();
    let age = Duration::from_millis(now.saturating_sub(beat.updated_ms));
    if age > max_age {
        return Err(format!(
            "heartbeat is {}s old (pid {})",
            age.as_secs(),
            beat.pid
        ));
    }
    let idle = Duration::from_millis(now.saturating_sub(beat.last_step_ms));
    if beat.training && idle > max_age {
        return Err(format!(
            "training but no step for {}s (step {})",
            idle.as_secs(),
            beat.step
        ));
    }
    Ok(format!(
        "ok: pid {} step {} training {}",
        beat.pid, beat.step, beat.training
    ))
}
