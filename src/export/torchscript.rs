//! `model.pt`: the network traced by libtorch (`CModule::create_by_tracing`)
//! in eval mode with gradients off, the input normalisation (per channel)
//! traced in front,
//! so `torch.jit.load("model.pt")(pixels)` gives the logits of pixels in [0, 1].

use std::io;
use std::path::Path;

use tch::nn::{ModuleT, SequentialT};
use tch::{CModule, Device, Kind, Tensor};

use super::ExportError;
use crate::model::card::ModelCard;

/// Traces `net` (frozen weights, on the CPU) and writes it to `path` atomically.
pub fn write(path: &Path, card: &ModelCard, net: &SequentialT) -> Result<(), ExportError> {
    let module = trace(card, net).map_err(|e| ExportError::Torch {
        path: path.to_path_buf(),
        what: e.to_string(),
    })?;
    crate::store::write_atomic(path, |tmp| module.save(tmp).map_err(io::Error::other))
        .map_err(|e| super::io_err(&e.path, e.source))
}

/// The traced module. Two images, not one, so nothing specialises on a
/// batch of one; the batch size stays free (flatten keeps dimension 0).
pub fn trace(card: &ModelCard, net: &SequentialT) -> Result<CModule, tch::TchError> {
    let [c, h, w] = card.input_shape;
    let norm = card.normalisation;
    // Per-channel values as `[1, C, 1, 1]` constants; scalars when all channels share them.
    let (mean, std) = norm.expanded(if norm.is_uniform() { 1 } else { c });
    let as_tensor = |v: &[f64]| -> Result<Tensor, tch::TchError> {
        let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        Tensor::f_from_slice(&v)?.f_view([1, -1, 1, 1])
    };
    let (mean_t, std_t) = (as_tensor(&mean)?, as_tensor(&std)?);
    let sample = Tensor::f_zeros([2, c, h, w], (Kind::Float, Device::Cpu))?;
    tch::no_grad(|| {
        CModule::create_by_tracing("trainerd", "forward", &[sample], &mut |xs| {
            let x = if norm.is_uniform() {
                (&xs[0] - mean[0]) / std[0]
            } else {
                (&xs[0] - &mean_t) / &std_t
            };
            vec![net.forward_t(&x, false)]
        })
    })
}
