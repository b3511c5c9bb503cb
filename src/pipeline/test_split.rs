//! The test split, measured once per promoted model: only after the verdict
//! says a trial replaces the champion, on the very weights about to be
//! written, then recorded on its card (accuracy, loss, per-class accuracy,
//! confusion matrix, Wilson interval) and as the trial's TensorBoard test
//! scalars. A trial that keeps the champion is never evaluated on it, and
//! nothing chooses by it: the choice is made before it is measured.

use std::path::Path;

use tch::Device;

use crate::data::Dataset;
use crate::model::card::{Intervals, ModelCard};
use crate::model::ArchSpec;
use crate::tensorboard::Scalars;
use crate::train::{self, EvalResult};

/// What the test split said of a model about to be promoted.
pub(super) struct TestResult {
    pub eval: EvalResult,
    /// Records of the split.
    pub size: usize,
}

impl TestResult {
    /// Every number finite: a model that is not must not be promoted.
    pub fn is_finite(&self) -> bool {
        self.eval.accuracy.is_finite() && self.eval.loss.is_finite()
    }
}

/// Rebuilds `arch` from `weights` on `device` and evaluates it on the test
/// split (logged, so that every measurement shows in the log).
pub(super) fn measure(
    trial: u32,
    arch: &ArchSpec,
    weights: &[(String, tch::Tensor)],
    data: &Dataset,
    device: Device,
) -> anyhow::Result<TestResult> {
    let input = train::input_shape(data);
    let (_vs, net) = train::model_from_weights(arch, input, weights, device).map_err(|e| {
        anyhow::anyhow!("trial {trial}: rebuilding the model to measure it on the test split: {e}")
    })?;
    let network = train::Network {
        module: &net,
        arch,
        input,
        named: weights,
    };
    let eval = train::evaluate_network(&network, &data.test, data.num_classes, device);
    let size = data.test.len();
    tracing::info!(
        trial,
        test_accuracy = format!("{:.4}", eval.accuracy),
        records = size,
        "test split evaluated, once, for the model about to be promoted"
    );
    Ok(TestResult { eval, size })
}

/// Writes the measurement into the card of the model about to be promoted.
pub(super) fn record(card: &mut ModelCard, test: &TestResult) {
    let eval = &test.eval;
    card.test_accuracy = eval.accuracy;
    card.test_loss = eval.loss;
    card.per_class_test_accuracy = eval.per_class_accuracy.clone();
    card.test_confusion = eval.confusion.clone();
    card.intervals = Intervals::of(card.val_accuracy, card.val_size, eval.accuracy, test.size);
}

/// `test/accuracy` and `test/loss` at the trial's last `step`, in its
/// TensorBoard files under `dir` (best effort, as all TensorBoard writing).
/// A repeat after a crash is skipped by the writer (that step is on file).
pub(super) fn to_tensorboard(dir: &Path, trial: u32, step: u64, test: &TestResult) {
    let mut tb = Scalars::open(dir, trial, step);
    tb.scalar("test/accuracy", step, test.eval.accuracy);
    tb.scalar("test/loss", step, test.eval.loss);
    tb.sync();
}
