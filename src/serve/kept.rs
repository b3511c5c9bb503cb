//! Kept versions served on request: a request naming a version other than
//! the champion's (`/v2/models/trainerd/versions/N/...`, gRPC's
//! `model_version`) loads `versions/N/` (through [`crate::versions`], every
//! file verified, then the weights as the champion's are) into a cache of
//! [`CAPACITY`] versions, each with its own inference thread; the least
//! recently used one beyond that is dropped (its thread ends once its
//! last request is answered). Versions load one at a time, off the async
//! threads. The champion stays the default and is never loaded here.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::batcher::{self, BatchSettings, Batcher, Loaded, Role, Shared};
use super::engine::{EngineSetup, Served};
use super::failure::Failure;
use super::metrics::ServeMetrics;
use crate::versions::VersionError;

/// Kept versions loaded at once, besides the champion.
pub const CAPACITY: usize = 2;

/// A loaded kept version: what it is, and the thread that runs it.
#[derive(Clone)]
pub struct Slot {
    pub loaded: Loaded,
    pub batcher: Batcher,
}

pub struct Kept {
    state_dir: PathBuf,
    setup: EngineSetup,
    batch: BatchSettings,
    metrics: Arc<ServeMetrics>,
    /// Most recently used first.
    cache: Mutex<VecDeque<(u64, Slot)>>,
    loading: tokio::sync::Mutex<()>,
}

impl Kept {
    pub fn new(
        state_dir: PathBuf,
        setup: EngineSetup,
        batch: BatchSettings,
        metrics: Arc<ServeMetrics>,
    ) -> Kept {
        Kept {
            state_dir,
            setup,
            batch,
            metrics,
            cache: Mutex::new(VecDeque::new()),
            loading: tokio::sync::Mutex::new(()),
        }
    }

    /// Version `n`, loaded if it is not yet.
    pub async fn get(self: &Arc<Self>, n: u64) -> Result<Slot, Failure> {
        if let Some(slot) = self.cached(n) {
            return Ok(slot);
        }
        let _one_at_a_time = self.loading.lock().await;
        if let Some(slot) = self.cached(n) {
            return Ok(slot);
        }
        let me = self.clone();
        let slot = tokio::task::spawn_blocking(move || me.load(n))
            .await
            .map_err(|e| Failure::Internal(format!("loading version {n} failed: {e}")))??;
        if let Ok(mut cache) = self.cache.lock() {
            cache.push_front((n, slot.clone()));
            cache.truncate(CAPACITY);
        }
        Ok(slot)
    }

    fn cached(&self, n: u64) -> Option<Slot> {
        let mut cache = self.cache.lock().ok()?;
        let at = cache.iter().position(|(v, _)| *v == n)?;
        let entry = cache.remove(at)?;
        let slot = entry.1.clone();
        cache.push_front(entry);
        Some(slot)
    }

    /// Opens, verifies and loads `versions/N/`, and starts its thread.
    fn load(&self, n: u64) -> Result<Slot, Failure> {
        let (dir, card) = crate::versions::open_version(&self.state_dir, n).map_err(failure)?;
        let champion = crate::predict::load_from(&dir, card, self.setup.memory_budget)
            .map_err(|e| Failure::Unavailable(format!("version {n} cannot be loaded: {e}")))?;
        let served = Served::new(champion, &dir, self.setup);
        let shared = Arc::new(Shared::default());
        let batcher =
            batcher::spawn_for(self.batch, shared.clone(), self.metrics.clone(), Role::Kept)
                .map_err(|e| Failure::Internal(format!("starting version {n}'s thread: {e}")))?;
        batcher.swap(served);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(loaded) = shared.loaded() {
                return Ok(Slot { loaded, batcher });
            }
            if Instant::now() > deadline {
                return Err(Failure::Internal(format!("version {n} was not installed")));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A version that cannot be served as the front ends say it.
fn failure(e: VersionError) -> Failure {
    match e {
        VersionError::NeverExisted { .. } | VersionError::Gone { .. } => {
            Failure::NotFound(e.to_string())
        }
        _ => Failure::Unavailable(e.to_string()),
    }
}
