//! Training: the step loop, evaluation, progress counters.

pub mod cpu_share;
mod eval;
pub mod malloc;
mod outcome;
mod progress;
mod resume;
mod setup;
mod trainer;
mod trial;
mod weights;

pub use eval::{evaluate, evaluate_network, use_engine, EvalResult, Network};
pub use outcome::{Divergence, EpochRecord, TrialOutcome, TrialReport};
pub use progress::{now_ms, Progress, StopFlag};
pub use resume::CHECKPOINT_FORMAT;
pub use setup::{input_shape, EpochSink, PruneFn, TrialSetup};
pub use trial::run_trial;
pub use weights::model_from_weights;

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
