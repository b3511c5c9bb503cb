//! One trial: build the model, resume from its newest good checkpoint
//! (`resume.rs`), run the step loop (checkpointing on schedule, stopping on
//! request), evaluate. The trial's types live here; its state and the parts
//! of the loop are the `Trainer` (`trainer.rs`).
//!
//! Exact resume: every input of a step is a function of saved state. The
//! weights, batch-norm buffers and optimizer slots are in the checkpoint; the
//! batch order, dropout and augmentation draw from streams keyed by
//! (seed, trial, epoch/step), and the learning rate is a function of the step.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::eval::EvalResult;
use super::progress::{Progress, StopFlag};
use super::trainer::{Flow, Start, Trainer};
use super::TrainError;
use crate::config::CheckpointEvery;
use crate::data::Dataset;
use crate::model::{InputShape, TrialSpec};
use crate::store::CheckpointDir;

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

/// Decides at an epoch end, from the history so far, whether to stop early (pruning).
pub type PruneFn<'a> = &'a dyn Fn(&[EpochRecord]) -> bool;
/// Receives each epoch's record (metrics sinks).
pub type EpochSink<'a> = &'a dyn Fn(u32, &EpochRecord);

/// Everything a trial needs from its caller.
pub struct TrialSetup<'a> {
    pub trial: u32,
    pub spec: &'a TrialSpec,
    pub seed: u64,
    pub data: &'a Dataset,
    pub device: Device,
    pub checkpoints: &'a mut CheckpointDir,
    pub every: CheckpointEvery,
    pub stop: &'a StopFlag,
    pub progress: &'a Progress,
    /// Called at each epoch end with the history so far; `true` stops the trial early (pruning).
    pub prune: Option<PruneFn<'a>>,
    /// Called at each epoch end (metrics sink).
    pub on_epoch: Option<EpochSink<'a>>,
    /// Weights to start from instead of the seeded initialisation, when the
    /// trial has no checkpoint yet (a warm start from the champion); named
    /// as in the VarStore, every variable of the model present.
    pub warm_start: Option<&'a [(String, Tensor)]>,
    /// Where the trial's TensorBoard event files go (`None`: not written).
    pub tensorboard: Option<&'a std::path::Path>,
}

/// The result of a trial that ran to its end (or was pruned).
pub struct TrialReport {
    pub val: EvalResult,
    pub test: EvalResult,
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

/// Runs (or resumes) one trial to its end or until the stop flag is raised.
pub fn run_trial(setup: TrialSetup<'_>) -> Result<TrialOutcome, TrainError> {
    let mut t = match Trainer::start(setup)? {
        Start::Ready(t) => t,
        Start::Done(outcome) => return Ok(outcome),
    };
    let mut cpu = super::cpu_share::CpuShare::for_this_thread();
    while t.step < t.total() {
        if t.stop_requested() {
            return t.stop_on_request();
        }
        let lr = t.train_step();
        cpu.tick();
        let flow = if t.at_epoch_end() {
            t.end_epoch(lr)?
        } else {
            t.checkpoint_if_due()?
        };
        match flow {
            Flow::Go => t.log_rate(),
            Flow::Pruned => break,
            Flow::Diverged(outcome) => return Ok(outcome),
        }
    }
    t.finish()
}

/// The input geometry of a data set.
pub fn input_shape(data: &Dataset) -> InputShape {
    let s = data.train.images.size();
    InputShape {
        channels: s[1],
        height: s[2],
        width: s[3],
        classes: data.num_classes,
    }
}
