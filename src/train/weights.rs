//! A model's variables from named weights: the warm start copies the
//! champion's into a new trial, and promotion rebuilds a trained model from
//! the very weights it is about to write (to measure it on the test split).

use tch::nn::{self, SequentialT};
use tch::{Device, Tensor};

use crate::model::{self, ArchSpec, InputShape};

/// Copies `weights` into `named` (a model's variables), matched by name;
/// every variable must be there with its shape (else the message says which).
pub fn copy_by_name(
    named: &[(String, Tensor)],
    weights: &[(String, Tensor)],
) -> Result<(), String> {
    tch::no_grad(|| {
        for (name, var) in named {
            let Some((_, w)) = weights.iter().find(|(n, _)| n == name) else {
                return Err(format!("the weights have no variable {name}"));
            };
            if w.size() != var.size() {
                return Err(format!(
                    "{name} is {:?} in the weights, {:?} in the model",
                    w.size(),
                    var.size()
                ));
            }
            let mut var = var.shallow_clone();
            var.f_copy_(&w.to_device(var.device()).to_kind(var.kind()))
                .map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    })
}

/// The model `arch` for `input` on `device`, holding `weights` (frozen: for
/// evaluation). The VarStore owns the variables and must outlive the net.
pub fn model_from_weights(
    arch: &ArchSpec,
    input: InputShape,
    weights: &[(String, Tensor)],
    device: Device,
) -> Result<(nn::VarStore, SequentialT), String> {
    let mut vs = nn::VarStore::new(device);
    let net = model::build(&vs.root(), arch, input);
    model::use_channels_last(&vs);
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    copy_by_name(&named, weights)?;
    vs.freeze();
    Ok((vs, net))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::ModuleT;

    #[test]
    fn a_model_rebuilt_from_its_weights_gives_the_same_logits() {
        let spec = crate::model::preset("fast").unwrap();
        let input = InputShape {
            channels: 1,
            height: 28,
            width: 28,
            classes: 10,
        };
        tch::manual_seed(7);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = model::build(&vs.root(), &spec.arch, input);
        let weights: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (n, t.detach().copy()))
            .collect();
        let x = Tensor::rand([4, 1, 28, 28], (tch::Kind::Float, Device::Cpu));
        let want = tch::no_grad(|| net.forward_t(&x, false));
        // Another seed: every weight must come from `weights`, none from the init.
        tch::manual_seed(8);
        let (_vs, again) = model_from_weights(&spec.arch, input, &weights, Device::Cpu).unwrap();
        let got = tch::no_grad(|| again.forward_t(&x, false));
        assert!(got.allclose(&want, 1e-6, 1e-6, false));

        let short = &weights[1..];
        let err = model_from_weights(&spec.arch, input, short, Device::Cpu).unwrap_err();
        assert!(err.contains(&weights[0].0), "{err}");
    }
}
