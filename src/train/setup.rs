//! What a trial needs from its caller ([`TrialSetup`]), and the input
//! geometry of a data set.

use tch::{Device, Tensor};

use super::outcome::EpochRecord;
use super::progress::{Progress, StopFlag};
use crate::config::CheckpointEvery;
use crate::data::Dataset;
use crate::model::InputShape;
use crate::model::TrialSpec;
use crate::store::CheckpointDir;

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
