//! The sending thread: takes the queue's front operation, carries it out,
//! records it settled; on a failure worth retrying it logs the retry and
//! waits (backoff doubling up to a cap), keeping the operation at the front,
//! so order holds and nothing is lost. Closing: what is queued is tried
//! once more without waiting; what is left stays on disk for the next start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::apply::Applier;
use super::client::CallError;
use super::queue::DiskQueue;

/// What the forwarder and the worker share.
pub struct Shared {
    pub queue: Mutex<DiskQueue>,
    pub wake: Condvar,
    pub closing: AtomicBool,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, DiskQueue> {
        // A panic elsewhere while holding it leaves the queue usable: its state is on disk.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }
}

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// Runs until closing finds the queue empty or the server failing.
pub fn run(shared: &Shared, mut applier: Applier, backoff: Backoff) {
    let mut delay = backoff.first;
    let mut failures = 0u32;
    loop {
        let next = {
            let mut q = shared.lock();
            while q.is_empty() && !shared.closing() {
                q = shared
                    .wake
                    .wait_timeout(q, Duration::from_secs(1))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            match q.front() {
                Some(op) => op.clone(),
                None => return,
            }
        };
        match applier.apply(&next.op) {
            Ok(note) => {
                if failures > 0 {
                    tracing::info!(url = %applier.client.shown(), failures, "MLflow reachable again");
                }
                failures = 0;
                delay = backoff.first;
                tracing::debug!(key = %next.key, "MLflow: {note}");
                shared.lock().settle(&next.key, "sent", Some(note));
            }
            Err(e @ CallError::Refused(..)) => {
                tracing::warn!(url = %applier.client.shown(), key = %next.key, "MLflow refused an operation, not retrying it: {e}");
                shared
                    .lock()
                    .settle(&next.key, "refused", Some(e.to_string()));
            }
            Err(CallError::Retry(why)) => {
                failures += 1;
                let pending = shared.lock().len();
                if shared.closing() {
                    tracing::warn!(url = %applier.client.shown(), pending, "MLflow call failed ({why}); the queue is kept and sent at the next start");
                    return;
                }
                tracing::warn!(url = %applier.client.shown(), key = %next.key, attempt = failures, pending,
                    "MLflow call failed ({why}); retrying in {delay:?} (training goes on, the queue is kept on disk)");
                let q = shared.lock();
                let _ = shared
                    .wake
                    .wait_timeout_while(q, delay, |_| !shared.closing())
                    .unwrap_or_else(|p| p.into_inner());
                delay = (delay * 2).min(backoff.max);
            }
        }
    }
}
