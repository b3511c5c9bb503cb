//! Evaluation without autograd: accuracy, loss, per-class accuracy,
//! confusion matrix. On the CPU the passes run on onnxruntime (`ort`), on the
//! network's current weights, unless `--engine libtorch`; libtorch runs them
//! on a GPU, and whenever onnxruntime cannot (with one warning).

use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};
use tch::nn::ModuleT;
use tch::{Device, Kind, Reduction, Tensor};

use crate::config::EngineChoice;
use crate::data::Split;
use crate::model::{ArchSpec, InputShape};

mod ort;

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
    tally(&flat, loss_sum.double_value(&[]), n, k)
}

/// The result of a pass from its flat `k x k` confusion counts
/// (`[true * k + predicted]`) and summed loss over `n` records.
fn tally(flat: &[i64], loss_sum: f64, n: i64, k: i64) -> EvalResult {
    let confusion: Vec<Vec<i64>> = flat.chunks(k.max(1) as usize).map(|r| r.to_vec()).collect();
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
        loss: loss_sum / count as f64,
        count: n,
        per_class_accuracy,
        confusion,
    }
}

/// A network to evaluate: its module, and what its ONNX graph is built
/// from (architecture, input shape, every variable named as in the VarStore).
pub struct Network<'a> {
    pub module: &'a dyn ModuleT,
    pub arch: &'a ArchSpec,
    pub input: InputShape,
    pub named: &'a [(String, Tensor)],
}

/// The engine of this process's evaluation passes (`EngineChoice` as a byte).
static ENGINE: AtomicU8 = AtomicU8::new(0);

/// Sets the engine of every later evaluation pass (`--engine`; default auto).
pub fn use_engine(choice: EngineChoice) {
    let code = match choice {
        EngineChoice::Auto => 0,
        EngineChoice::Onnxruntime => 1,
        EngineChoice::Libtorch => 2,
    };
    ENGINE.store(code, Ordering::Relaxed);
}

fn libtorch_only() -> bool {
    ENGINE.load(Ordering::Relaxed) == 2
}

/// Evaluates `net` on `split`: on onnxruntime when on the CPU and the
/// engine is not libtorch, else (or when onnxruntime cannot run it) on
/// libtorch in batches sized for `device`. Both give the same accuracy up
/// to float rounding (the exported graph matches the module to 1e-4).
pub fn evaluate_network(net: &Network, split: &Split, classes: i64, device: Device) -> EvalResult {
    if device == Device::Cpu && !libtorch_only() {
        match ort::pass(net, split, classes) {
            Ok((flat, loss_sum)) => return tally(&flat, loss_sum, split.len() as i64, classes),
            Err(e) => ort::warn_once(&e),
        }
    }
    evaluate(net.module, split, classes, device)
}
