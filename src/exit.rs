//! Exit codes by name, the [`ExitStatus`] every error type implements, and
//! the [`Outcome`] a command ends with. Turning an error or an outcome into
//! the process's exit status happens in one place, the binary
//! (`src/main.rs`); nothing in the library ends the process.
//!
//! The numbers are a stable interface (README, Kubernetes podFailurePolicy,
//! Docker restart policies rely on them).

/// Finished: target reached, study done, or command succeeded.
pub const OK: u8 = 0;
/// An unexpected internal error: a bug, or an error raised inside libtorch
/// (a panic, reported in one line by the binary's panic hook). Checkpoints
/// already saved are intact; a restart resumes from the newest.
pub const INTERNAL: u8 = 1;
/// A `trainerd train` study that ended with its budget spent, below target.
pub const BELOW_TARGET: u8 = 2;
/// Command-line usage error.
pub const USAGE: u8 = 64;
/// Bad input data (malformed IDX, inconsistent files).
pub const DATA: u8 = 65;
/// Nothing to work on: `predict` finds no champion, or an input file cannot
/// be opened (sysexits' `EX_NOINPUT`).
pub const NO_INPUT: u8 = 66;
/// The state directory cannot be written (or is held by another trainerd).
pub const STATE_DIR: u8 = 73;
/// I/O error while saving (disk full, EIO).
pub const IO: u8 = 74;
/// No progress for the watchdog's timeout: restart me.
pub const STALLED: u8 = 75;
/// Invalid configuration value or file.
pub const CONFIG: u8 = 78;
/// Stopped by SIGTERM/SIGINT after writing a final checkpoint.
pub const STOPPED: u8 = 143;

/// How a command ended, before it becomes an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: target reached, trial finished, command succeeded.
    Done,
    /// A study spent its budget below target.
    BelowTarget,
    /// A negative answer: `health` found the daemon unhealthy, `rollback`
    /// found nothing to roll back to.
    Declined,
    /// Stopped on request (SIGTERM/SIGINT) after a final checkpoint.
    Stopped,
    /// The watchdog saw no training progress for its timeout.
    Stalled,
}

/// Errors that know their exit status.
pub trait ExitStatus {
    fn exit_code(&self) -> u8;
}
