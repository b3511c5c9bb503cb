//! What a trial gives back: its epochs' records, and how it ended (a report
//! of its validation and weights, a stop, or a divergence).

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::eval::EvalResult;

/// One line of a trial's history: an epoch's end. Numbers read as NaN where
/// an older build wrote `null` (see `crate::finite`); this build never
/// records a non-finite one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u32,
    pub step: u64,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub train_loss: f64,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub val_accuracy: f64,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub val_loss: f64,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub lr: f64,
    /// Training seconds since the trial started (resumes included, restarts excluded).
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub train_seconds: f64,
}

impl EpochRecord {
    /// Every number is finite (a record with NaN or infinity means the trial diverged).
    pub fn is_finite(&self) -> bool {
        [
            self.train_loss,
            self.val_accuracy,
            self.val_loss,
            self.lr,
            self.train_seconds,
        ]
        .iter()
        .all(|x| x.is_finite())
    }
}

/// The result of a trial that ran to its end (or was pruned). Only the
/// validation split is evaluated: the test split is for the model about to
/// be promoted, once (`pipeline::test_split`), never for choosing.
pub struct TrialReport {
    pub val: EvalResult,
    pub history: Vec<EpochRecord>,
    pub steps: u64,
    pub parameters: i64,
    pub train_seconds: f64,
    /// Trained weights and buffers, named as in the VarStore.
    pub weights: Vec<(String, Tensor)>,
    pub pruned: bool,
    /// The step this run resumed from (0 = fresh start).
    pub resumed_from: u64,
}

pub enum TrialOutcome {
    Finished(Box<TrialReport>),
    /// Stopped on request after checkpointing at `step`.
    Stopped {
        step: u64,
    },
    /// The loss or an evaluation became NaN or infinite: training cannot go
    /// on and the model must never be promoted. Nothing from the diverged
    /// stretch is saved.
    Diverged(Box<Divergence>),
}

/// Where and why a trial diverged.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The step at which it was detected.
    pub step: u64,
    /// The epoch it happened in (1-based).
    pub epoch: u32,
    /// What was not finite, e.g. `training loss NaN`.
    pub reason: String,
    /// The finished epochs before it (all finite).
    pub history: Vec<EpochRecord>,
    pub train_seconds: f64,
}
