//! Evaluation without autograd: accuracy, loss, per-class accuracy, confusion matrix.

use serde::{Deserialize, Serialize};
use tch::nn::ModuleT;
use tch::{Device, Kind, Reduction, Tensor};

use crate::data::Split;

/// What one evaluation pass measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    pub accuracy: f64,
    pub loss: f64,
    pub count: i64,
    pub per_class_accuracy: Vec<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<i64>>,
}

/// Evaluation batch: on the CPU small enough for the activations to stay in
/// cache (2,000 took 2.5x as long as 512 for the `fast` model); on a GPU large.
fn batch_for(device: Device) -> i64 {
    if device.is_cuda() {
        10_000
    } else {
        512
    }
}

/// Evaluates `model` on `split` without autograd, in batches sized for `device`.
pub fn evaluate(model: &dyn ModuleT, split: &Split, classes: i64, device: Device) -> EvalResult {
    let batch = batch_for(device);
    let n = split.labels.size()[0];
    let k = classes;
    let (confusion, loss_sum) = tch::no_grad(|| {
        let mut confusion = Tensor::zeros([k * k], (Kind::Int64, device));
        let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
        let mut start = 0;
        while start < n {
            let len = batch.min(n - start);
            let x =
                crate::model::channels_last(&split.images.narrow(0, start, len).to_device(device));
            let y = split.labels.narrow(0, start, len).to_device(device);
            let logits = model.forward_t(&x, false);
            let loss = logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0);
            loss_sum += loss;
            let pred = logits.argmax(1, false);
            confusion += (y * k + pred).bincount::<Tensor>(None, k * k);
            start += len;
        }
        (confusion, loss_sum)
    });
    let flat: Vec<i64> = Vec::try_from(confusion.to_device(Device::Cpu)).unwrap_or_default();
    let confusion: Vec<Vec<i64>> = flat.chunks(k as usize).map(|r| r.to_vec()).collect();
    let correct: i64 = (0..k as usize)
        .map(|i| confusion.get(i).map_or(0, |r| r[i]))
        .sum();
    let per_class_accuracy = confusion
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let total: i64 = row.iter().sum();
            if total == 0 {
                0.0
            } else {
                row[i] as f64 / total as f64
            }
        })
        .collect();
    let count = n.max(1);
    EvalResult {
        accuracy: correct as f64 / count as f64,
        loss: loss_sum.double_value(&[]) / count as f64,
        count: n,
        per_class_accuracy,
        confusion,
    }
}
