//! Training: the step loop on its own thread, evaluation, deterministic randomness.

/// Errors while training a trial.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Other(String),
}

impl crate::exit::ExitStatus for TrainError {
    fn exit_code(&self) -> u8 {
        1
    }
}
