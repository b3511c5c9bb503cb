//! Store: crash-safe checkpoint files, retention, quarantine, the state-dir lock.
//!
//! STUB: the store helper replaces this (adds checkpoint.rs, policy.rs,
//! lock.rs, fault.rs). The public surface below is what the trainer relies on.

use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {what}")]
    Io { path: PathBuf, what: String },
}

impl crate::exit::ExitStatus for StoreError {
    fn exit_code(&self) -> u8 {
        74
    }
}

/// A verified checkpoint read back from disk.
pub struct Checkpoint {
    pub path: PathBuf,
    pub step: u64,
    /// Caller-defined JSON (trial, epoch, position, spec, fingerprint, ...).
    pub meta: serde_json::Value,
    pub tensors: Vec<(String, Tensor)>,
}

/// One directory of checkpoints for one trial, with a retention policy.
pub struct CheckpointDir {
    pub dir: PathBuf,
    pub keep_last: usize,
}

impl CheckpointDir {
    /// Creates the directory if needed and removes leftover temp files.
    pub fn open(dir: &Path, keep_last: usize) -> Result<Self, StoreError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            keep_last,
        })
    }
    /// Atomically writes a checkpoint for `step`, then applies retention.
    /// `score` (validation accuracy, when known) lets retention keep the best.
    pub fn save(
        &mut self,
        _step: u64,
        _score: Option<f64>,
        _meta: &serde_json::Value,
        _tensors: &[(String, Tensor)],
    ) -> Result<PathBuf, StoreError> {
        Ok(self.dir.clone())
    }
    /// Newest checkpoint that verifies; corrupt ones are quarantined with a warning.
    pub fn load_newest_valid(&self) -> Result<Option<Checkpoint>, StoreError> {
        Ok(None)
    }
}

/// STUB (store helper replaces): fault-injection points.
pub mod fault {
    pub fn point(_name: &str) {}
}

/// STUB (store helper replaces).
pub fn check_writable(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Io {
        path: dir.into(),
        what: e.to_string(),
    })
}

/// STUB (store helper replaces).
pub struct StateLock;
impl StateLock {
    pub fn acquire(_dir: &Path) -> Result<StateLock, StoreError> {
        Ok(StateLock)
    }
}
