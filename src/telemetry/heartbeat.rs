//! Heartbeat and watchdog: a task that records liveness in the state dir
//! (read by `trainerd health`) and reports a stalled training to the
//! control plane, which ends the process (exit 75).

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
    crate::state_dir::heartbeat(state_dir)
}

/// Reads the heartbeat, if any.
pub fn read(state_dir: &Path) -> Option<Heartbeat> {
    serde_json::from_slice(&std::fs::read(path(state_dir)).ok()?).ok()
}

/// Shared switches for the heartbeat task.
#[derive(Clone, Default)]
pub struct Liveness {
    /// Set while a trial is training; the watchdog ignores idle periods.
    pub training: Arc<AtomicBool>,
}

impl Liveness {
    /// Training (re)starts: the watchdog judges from now on, and the idle
    /// time before counts as no stall.
    pub fn begin(&self, progress: &Progress) {
        progress.mark_progress();
        self.training.store(true, Ordering::Relaxed);
    }
    /// Training paused or over: the watchdog stops judging.
    pub fn end(&self) {
        self.training.store(false, Ordering::Relaxed);
    }
}

/// What the watchdog saw: no training step for `idle` (at least the
/// watchdog's timeout) while a trial trained.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    pub step: u64,
    pub idle: Duration,
}

/// Starts the heartbeat task on the current runtime: every `every`, writes
/// `heartbeat.json`; the first time a trial trains without a step for
/// `watchdog`, reports a [`Stall`] on `stalls` (the control plane decides
/// how the process ends). The task is the file's only writer, its last
/// beat included ([`Beats::write_last`]).
pub fn spawn(
    state_dir: PathBuf,
    progress: Arc<Progress>,
    live: Liveness,
    every: Duration,
    watchdog: Duration,
    stalls: tokio::sync::mpsc::UnboundedSender<Stall>,
) -> Beats {
    let period = every.min(watchdog / 4).max(Duration::from_millis(100));
    let (last_tx, mut last_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported = false;
        loop {
            let last = tokio::select! {
                _ = tick.tick() => false,
                asked = &mut last_rx => match asked {
                    Ok(()) => true,
                    // Dropped unasked (a stalled trainer abandoned): the
                    // beat before the stall stays the last word.
                    Err(_) => return,
                },
            };
            let training = !last && live.training.load(Ordering::Relaxed);
            // Idle now, or a longer gap the trainer already came back from
            // (read after the idle time: a step in between shows in one of them).
            let idle = Duration::from_millis(progress.idle_ms().max(progress.take_gap_ms()));
            if training && idle >= watchdog && !reported {
                reported = true;
                let step = progress.step.load(Ordering::Relaxed);
                let _ = stalls.send(Stall { step, idle });
            }
            let beat = Heartbeat::from_progress(&progress, training);
            let dir = state_dir.clone();
            // A write is small but may block on a slow disk: off the async workers.
            let _ = tokio::task::spawn_blocking(move || write(&dir, &beat)).await;
            if last {
                return;
            }
        }
    });
    Beats { last_tx, task }
}

/// The running heartbeat task.
pub struct Beats {
    last_tx: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Beats {
    /// Ends the beats with a last one, as the progress stands and not
    /// training: a process that ends thus leaves where its last trial ended
    /// for `trainerd status`, not where a beat caught it up to a period
    /// earlier. Dropping `Beats` instead ends them with no last beat.
    pub async fn write_last(self) {
        let _ = self.last_tx.send(());
        let _ = self.task.await;
    }
}

/// Writes `heartbeat.json` atomically (temp file, rename).
fn write(state_dir: &Path, beat: &Heartbeat) {
    let tmp = path(state_dir).with_extension("tmp");
    if let Ok(bytes) = serde_json::to_vec(beat) {
        if std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, path(state_dir)))
            .is_err()
        {
            tracing::warn!(dir = %state_dir.display(), "cannot write the heartbeat");
        }
    }
}

/// Whether process `pid` is alive (not gone, not a zombie). A heartbeat
/// written by a dead process is no sign of life, however fresh.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let exists = unsafe { libc::kill(raw, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    // A zombie (dead, not yet reaped) still answers kill(0): ask /proc.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}

/// `trainerd health`: healthy when the heartbeat is fresh and, while training,
/// steps are advancing within `max_age`.
pub fn check(state_dir: &Path, max_age: Duration) -> Result<String, String> {
    let beat = read(state_dir).ok_or_else(|| format!("no heartbeat in {}", state_dir.display()))?;
    let now = now_ms();
    let age = Duration::from_millis(now.saturating_sub(beat.updated_ms));
    if !pid_alive(beat.pid) {
        return Err(format!(
            "trainerd (pid {}) is not running; its last heartbeat is {}s old",
            beat.pid,
            age.as_secs()
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn beat_of(pid: u32) -> Heartbeat {
        Heartbeat {
            pid,
            ..Heartbeat::from_progress(&Progress::default(), false)
        }
    }

    #[test]
    fn a_fresh_heartbeat_of_a_dead_process_is_unhealthy() {
        let dir = tempfile::tempdir().unwrap();
        let write_beat = |b: &Heartbeat| {
            std::fs::write(path(dir.path()), serde_json::to_vec(b).unwrap()).unwrap()
        };
        write_beat(&beat_of(std::process::id()));
        let ok = check(dir.path(), Duration::from_secs(120));
        assert!(ok.is_ok(), "{ok:?}");

        // A child that has exited and been reaped: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        write_beat(&beat_of(pid));
        let err = check(dir.path(), Duration::from_secs(120)).unwrap_err();
        assert!(err.contains("not running"), "{err}");
    }

    #[test]
    fn a_zombie_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        // Exited but not reaped: kill(pid, 0) still succeeds.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!pid_alive(pid));
        child.wait().unwrap();
        assert!(pid_alive(std::process::id()));
    }
}
