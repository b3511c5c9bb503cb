//! The stop flag: raised once (a signal, a supersession, the watchdog) to
//! ask whatever is running (a training loop, a download) to save and return.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Raised once to ask the training loop to checkpoint and return.
#[derive(Clone, Default)]
pub struct StopFlag(pub Arc<AtomicBool>);

impl StopFlag {
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Lowers the flag again: only the control task does, once the study a
    /// supersession stopped has returned and the next one starts.
    pub fn lower(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
