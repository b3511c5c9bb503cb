//! Store: crash-safe checkpoint files, retention, quarantine, the state-dir lock.
//!
//! - [`checkpoint_file`]: one checkpoint file's format (versioned,
//!   checksummed), encoded, verified and decoded.
//! - [`checkpoint`]: [`CheckpointDir`], the writer that commits atomically
//!   (temp file, fsync, rename, directory fsync), applies retention and
//!   quarantines corrupt files.
//! - [`atomic`]: whole-file-or-nothing writes for the files beside checkpoints.
//! - [`policy`]: the pure retention policy (newest K plus the best).
//! - [`lock`]: one writer per state dir, and the writability check at start.
//! - [`fault`]: fault-injection points for crash tests.
//! - [`jsonl`]: append-only JSON-lines logs (events, webhook deliveries, the study journal).
//! - [`tree`]: durable copies of a model directory (versions, `rollback --to`).
//!
//! Failure behaviour: a failed save returns [`StoreError::Save`] (exit 74)
//! and leaves the committed checkpoints untouched, with no temp file behind;
//! whether to retry is the caller's choice. A checkpoint that fails
//! verification on load is moved to `quarantine/` (never deleted) and the one
//! before it is used.

pub mod atomic;
pub mod checkpoint;
pub mod checkpoint_file;
pub mod fault;
pub mod jsonl;
pub mod lock;
pub mod policy;
#[cfg(test)]
pub(crate) mod testutil;
pub mod tree;

use std::path::PathBuf;

pub use atomic::{write_atomic, write_bytes_atomic, AtomicWriteError};
pub use checkpoint::CheckpointDir;
pub use checkpoint_file::{saved_like, Checkpoint, FORMAT_VERSION};
pub use lock::{check_writable, is_held, pid_alive, StateLock};
pub use tree::{copy_tree, CopyError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A plain I/O failure described by the caller (used by promotion).
    #[error("{path}: {what}")]
    Io { path: PathBuf, what: String },
    /// Writing, syncing or renaming a checkpoint failed (disk full, EIO).
    #[error("cannot save the checkpoint of step {step} to {path}")]
    Save {
        path: PathBuf,
        step: u64,
        #[source]
        source: std::io::Error,
    },
    /// A tensor cannot be put into a checkpoint (unsupported kind, duplicate
    /// name): a bug in the caller, not an I/O problem.
    #[error("cannot encode the checkpoint of step {step}: {what}")]
    Encode { step: u64, what: String },
    /// Listing or reading the checkpoint directory failed.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint file failed verification (only from direct reads; the
    /// directory's loader quarantines such files instead).
    #[error("corrupt checkpoint {path}: {why}")]
    Corrupt { path: PathBuf, why: String },
    /// A corrupt checkpoint could not be moved aside.
    #[error("cannot move corrupt checkpoint {path} into quarantine")]
    Quarantine {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state dir cannot be created or written; `fix` says what to do.
    #[error("state dir {path} is not writable ({reason}); {fix}")]
    NotWritable {
        path: PathBuf,
        reason: String,
        fix: String,
    },
    /// Another trainerd holds the state dir's lock.
    #[error(
        "state dir {path} is in use by another trainerd ({}); stop it or use another state dir",
        holder.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"))
    )]
    Locked { path: PathBuf, holder: Option<u32> },
    /// A command that needs the state dir to itself found a trainerd running there.
    #[error(
        "cannot {action}: trainerd {} is running on {path} and could promote a model at the \
         same moment; stop it first (e.g. docker stop), then retry",
        holder.map_or_else(|| "(pid unknown)".to_string(), |p| format!("pid {p}"))
    )]
    Busy {
        path: PathBuf,
        holder: Option<u32>,
        action: &'static str,
    },
}

impl crate::exit::ExitStatus for StoreError {
    fn exit_code(&self) -> u8 {
        match self {
            StoreError::NotWritable { .. }
            | StoreError::Locked { .. }
            | StoreError::Busy { .. } => crate::exit::STATE_DIR,
            StoreError::Encode { .. } => 1,
            StoreError::Io { .. }
            | StoreError::Save { .. }
            | StoreError::Read { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Quarantine { .. } => crate::exit::IO,
        }
    }
}
