//! Shared progress counters (and the stop flag, re-exported): how the training thread talks
//! to signal handlers, the watchdog and the heartbeat without locks.

use std::sync::atomic::{AtomicU64, Ordering};

use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::stop_flag::StopFlag;

/// Step counter with the wall-clock time of its last change, and what the
/// heartbeat, `/metrics` and the progress bar show about the current trial.
pub struct Progress {
    pub step: AtomicU64,
    /// Unix milliseconds of the last step.
    pub last_step_ms: AtomicU64,
    /// The longest time between two steps since the watchdog last looked
    /// ([`Progress::take_gap_ms`]): a stall the trainer has already come
    /// back from (the whole process stopped, then continued) still counts.
    pub gap_ms: AtomicU64,
    pub samples_per_sec: AtomicU64,
    /// The trial training now (or last).
    pub trial: AtomicU64,
    /// Epochs that trial has completed.
    pub epoch: AtomicU64,
    /// Steps that trial will take in all (the progress bar's length).
    pub total_steps: AtomicU64,
    /// Unix milliseconds of the last checkpoint written (0: none yet).
    pub last_checkpoint_ms: AtomicU64,
    /// The last epoch's mean training loss, as `f64` bits (NaN: none yet).
    pub train_loss: AtomicU64,
    /// The last epoch's validation accuracy, as `f64` bits (NaN: none yet).
    pub val_accuracy: AtomicU64,
}

impl Default for Progress {
    /// Starts "just progressed", so the watchdog measures from process start.
    fn default() -> Self {
        Progress {
            step: AtomicU64::new(0),
            last_step_ms: AtomicU64::new(now_ms()),
            gap_ms: AtomicU64::new(0),
            samples_per_sec: AtomicU64::new(0),
            trial: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            total_steps: AtomicU64::new(0),
            last_checkpoint_ms: AtomicU64::new(0),
            train_loss: AtomicU64::new(f64::NAN.to_bits()),
            val_accuracy: AtomicU64::new(f64::NAN.to_bits()),
        }
    }
}

impl Progress {
    pub fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
        let now = now_ms();
        let before = self.last_step_ms.swap(now, Ordering::Relaxed);
        self.gap_ms
            .fetch_max(now.saturating_sub(before), Ordering::Relaxed);
    }
    /// Counts as progress now, without a gap since the last step: training
    /// (re)starts after an idle time, which is no stall.
    pub fn mark_progress(&self) {
        self.last_step_ms.store(now_ms(), Ordering::Relaxed);
    }
    /// The longest time between two steps since the last call, in ms (0 once taken).
    pub fn take_gap_ms(&self) -> u64 {
        self.gap_ms.swap(0, Ordering::Relaxed)
    }
    /// A trial starts (or resumes at `epoch`): resets the per-epoch values.
    pub fn start_trial(&self, trial: u32, total_steps: u64, epoch: u64) {
        self.mark_progress();
        self.trial.store(u64::from(trial), Ordering::Relaxed);
        self.total_steps.store(total_steps, Ordering::Relaxed);
        self.epoch.store(epoch, Ordering::Relaxed);
        self.train_loss.store(f64::NAN.to_bits(), Ordering::Relaxed);
        self.val_accuracy
            .store(f64::NAN.to_bits(), Ordering::Relaxed);
    }
    /// An epoch ended with these results.
    pub fn end_epoch(&self, epoch: u32, train_loss: f64, val_accuracy: f64) {
        self.epoch.store(u64::from(epoch), Ordering::Relaxed);
        self.train_loss
            .store(train_loss.to_bits(), Ordering::Relaxed);
        self.val_accuracy
            .store(val_accuracy.to_bits(), Ordering::Relaxed);
    }
    pub fn checkpoint_saved(&self) {
        self.last_checkpoint_ms.store(now_ms(), Ordering::Relaxed);
    }
    /// The last epoch's training loss (NaN before the first).
    pub fn train_loss(&self) -> f64 {
        f64::from_bits(self.train_loss.load(Ordering::Relaxed))
    }
    /// The last epoch's validation accuracy (NaN before the first).
    pub fn val_accuracy(&self) -> f64 {
        f64::from_bits(self.val_accuracy.load(Ordering::Relaxed))
    }
    /// Milliseconds since the last step.
    pub fn idle_ms(&self) -> u64 {
        now_ms().saturating_sub(self.last_step_ms.load(Ordering::Relaxed))
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
