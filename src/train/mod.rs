//! Training: the step loop, evaluation, progress counters.

pub mod cpu_share;
mod eval;
pub mod malloc;
mod progress;
mod resume;
mod trainer;
mod trial;

pub use eval::{evaluate, evaluate_network, use_engine, EvalResult, Network};
pub use progress::{now_ms, Progress, StopFlag};
pub use resume::CHECKPOINT_FORMAT;
pub use trial::{
    input_shape, run_trial, Divergence, EpochRecord, EpochSink, PruneFn, TrialOutcome, TrialReport,
    TrialSetup,
};

/// Errors while training a trial.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("trial {trial}: invalid architecture: {what}")]
    Spec { trial: u32, what: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl crate::exit::ExitStatus for TrainError {
    fn exit_code(&self) -> u8 {
        match self {
            TrainError::Spec { .. } => crate::exit::CONFIG,
            TrainError::Store(e) => e.exit_code(),
        }
    }
}
