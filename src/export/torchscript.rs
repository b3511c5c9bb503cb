//! `model.pt`: the network traced by libtorch (`CModule::create_by_tracing`)
//! in eval mode with gradients off, the input normalisation traced in front,
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
    let [mean, std] = card.normalisation;
    let sample = Tensor::f_zeros([2, c, h, w], (Kind::Float, Device::Cpu))?;
    tch::no_grad(|| {
        CModule::create_by_tracing("trainerd", "forward", &[sample], &mut |xs| {
            vec![net.forward_t(&((&xs[0] - mean) / std), false)]
        })
    })
}
