//! Shared progress counters and the stop flag: how the training thread talks
//! to signal handlers, the watchdog and the heartbeat without locks.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Raised once to ask the training loop to checkpoint and return.
#[derive(Clone, Default)]
pub struct StopFlag(pub Arc<AtomicBool>);

impl StopFlag {
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Step counter with the wall-clock time of its last change.
pub struct Progress {
    pub step: AtomicU64,
    /// Unix milliseconds of the last step.
    pub last_step_ms: AtomicU64,
    pub samples_per_sec: AtomicU64,
}

impl Default for Progress {
    /// Starts "just progressed", so the watchdog measures from process start.
    fn default() -> Self {
        Progress {
            step: AtomicU64::new(0),
            last_step_ms: AtomicU64::new(now_ms()),
            samples_per_sec: AtomicU64::new(0),
        }
    }
}

impl Progress {
    pub fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
        self.last_step_ms.store(now_ms(), Ordering::Relaxed);
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
