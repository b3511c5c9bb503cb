//! Exit codes: the one place an error becomes a process exit status.
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

impl Outcome {
    /// The exit status for this outcome.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done => OK,
            Outcome::BelowTarget => BELOW_TARGET,
            Outcome::Declined => INTERNAL,
            Outcome::Stopped => STOPPED,
            Outcome::Stalled => STALLED,
        }
    }
}

/// Errors that know their exit status.
pub trait ExitStatus {
    fn exit_code(&self) -> u8;
}

/// Walks an error chain and returns the first known exit status (else [`INTERNAL`]).
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<crate::config::ConfigError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::data::DataError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::store::StoreError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::train::TrainError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::telemetry::http::HttpError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::search::journal::JournalError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::pipeline::events::EventError>() {
            return e.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<crate::predict::PredictError>() {
            return e.exit_code();
        }
    }
    INTERNAL
}
