//! Optimizers and learning-rate schedules whose whole state is named tensors,
//! so a checkpoint saves and restores it exactly (tch's own optimizer cannot).

mod schedule;

pub use schedule::learning_rate;

use std::collections::HashMap;

use tch::Tensor;

use crate::model::OptimSpec;
use crate::store::saved_like;

/// One optimizer over a fixed, name-sorted list of parameters.
pub struct Optimizer {
    spec: OptimSpec,
    params: Vec<(String, Tensor)>,
    /// Slots per parameter, e.g. `momentum` (SGD), `exp_avg`/`exp_avg_sq` (AdamW).
    slots: Vec<Vec<Tensor>>,
    /// Steps taken (AdamW's bias correction needs it).
    steps: i64,
}

fn slot_names(spec: &OptimSpec) -> &'static [&'static str] {
    match spec {
        OptimSpec::Sgd { momentum, .. } if *momentum > 0.0 => &["momentum"],
        OptimSpec::Sgd { .. } => &[],
        OptimSpec::AdamW { .. } => &["exp_avg", "exp_avg_sq"],
        OptimSpec::Adadelta { .. } => &["square_avg", "acc_delta"],
    }
}

impl Optimizer {
    /// `params`: trainable variables; sorted by name so the state layout is stable.
    pub fn new(spec: OptimSpec, mut params: Vec<(String, Tensor)>) -> Optimizer {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let n = slot_names(&spec).len();
        let slots = params
            .iter()
            .map(|(_, p)| (0..n).map(|_| p.zeros_like()).collect())
            .collect();
        Optimizer {
            spec,
            params,
            slots,
            steps: 0,
        }
    }

    /// Back-propagates `loss` and applies one update with learning rate `lr`
    /// (the schedule's value for this step). The gradients come straight out
    /// of autograd, as `torch.autograd.grad` returns them, instead of being
    /// accumulated into each parameter's `.grad`: no pass to zero them and no
    /// pass to add into them, every step.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) {
        let grads = self.gradients(loss);
        self.apply(&grads, lr);
    }

    /// d`loss`/d(parameter) for every parameter, in order (undefined where
    /// the loss does not depend on it). Frees the graph.
    pub fn gradients(&self, loss: &Tensor) -> Vec<Tensor> {
        let params: Vec<&Tensor> = self.params.iter().map(|(_, p)| p).collect();
        Tensor::run_backward(&[loss], &params, false, false)
    }

    /// One update from `grads`, as [`gradients`](Self::gradients) returns them.
    pub fn apply(&mut self, grads: &[Tensor], lr: f64) {
        self.steps += 1;
        let t = self.steps as f64;
        tch::no_grad(|| {
            for (((_, p), slots), g) in self.params.iter_mut().zip(self.slots.iter_mut()).zip(grads)
            {
                let g = g.shallow_clone();
                if !g.defined() {
                    continue;
                }
                match self.spec {
                    OptimSpec::Sgd {
                        momentum,
                        nesterov,
                        weight_decay,
                        ..
                    } => {
                        let mut d = if weight_decay != 0.0 {
                            &g + &*p * weight_decay
                        } else {
                            g
                        };
                        if momentum > 0.0 {
                            let buf = &mut slots[0];
                            let _ = buf.g_mul_scalar_(momentum).g_add_(&d);
                            d = if nesterov {
                                d + &*buf * momentum
                            } else {
                                buf.shallow_clone()
                            };
                        }
                        let _ = p.g_add_(&(d * -lr));
                    }
                    OptimSpec::AdamW {
                        beta1,
                        beta2,
                        eps,
                        weight_decay,
                        ..
                    } => {
                        if weight_decay != 0.0 {
                            let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
                        }
                        let (m, rest) = slots.split_at_mut(1);
                        let (m, v) = (&mut m[0], &mut rest[0]);
                        let _ = m.g_mul_scalar_(beta1).g_add_(&(&g * (1.0 - beta1)));
                        let _ = v.g_mul_scalar_(beta2).g_add_(&(&g * &g * (1.0 - beta2)));
                        let bc1 = 1.0 - beta1.powf(t);
                        let bc2 = 1.0 - beta2.powf(t);
                        let denom = (&*v / bc2).sqrt() + eps;
                        let _ = p.g_add_(&(&*m / denom * (-lr / bc1)));
                    }
                    OptimSpec::Adadelta {
                        rho,
                        eps,
                        weight_decay,
                        ..
                    } => {
                        let g = if weight_decay != 0.0 {
                            &g + &*p * weight_decay
                        } else {
                            g
                        };
                        let (sq, rest) = slots.split_at_mut(1);
                        let (sq, acc) = (&mut sq[0], &mut rest[0]);
                        // In place where possible: the reference model's fc
                        // layer has 1.2M weights, so every temporary is a
                        // 4.7 MB pass over memory.
                        let _ = sq.lerp_(&(&g * &g), 1.0 - rho);
                        let std = (&*sq + eps).sqrt_();
                        let mut delta = (&*acc + eps).sqrt_();
                        let _ = delta.g_div_(&std).g_mul_(&g);
                        let _ = acc.lerp_(&(&delta * &delta), 1.0 - rho);
                        let _ = delta.g_mul_scalar_(-lr);
                        let _ = p.g_add_(&delta);
                    }
                }
            }
        });
    }

    /// The state as `optim/<param>/<slot>` tensors plus `optim/steps`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let names = slot_names(&self.spec);
        let mut out = vec![("optim/steps".to_string(), Tensor::from_slice(&[self.steps]))];
        for ((pname, _), slots) in self.params.iter().zip(&self.slots) {
            for (slot, t) in names.iter().zip(slots) {
                out.push((format!("optim/{pname}/{slot}"), t.shallow_clone()));
            }
        }
        out
    }

    /// Checks that `saved` holds every slot with the right shape, without changing anything.
    pub fn check_state(&self, saved: &HashMap<String, Tensor>) -> Result<(), String> {
        let steps = Tensor::from_slice(&[self.steps]);
        saved_like(
            saved,
            "optim/steps",
            &steps,
            "optimizer step count optim/steps",
        )?;
        let names = slot_names(&self.spec);
        for ((pname, _), slots) in self.params.iter().zip(&self.slots) {
            for (slot, t) in names.iter().zip(slots) {
                let key = format!("optim/{pname}/{slot}");
                saved_like(saved, &key, t, &format!("optimizer state {key}"))?;
            }
        }
        Ok(())
    }

    /// Restores what [`state_tensors`](Self::state_tensors) produced; every
    /// slot must be present (checked before anything is copied).
    pub fn load_state(&mut self, saved: &HashMap<String, Tensor>) -> Result<(), String> {
        self.check_state(saved)?;
        let like = Tensor::from_slice(&[self.steps]);
        let steps = saved_like(
            saved,
            "optim/steps",
            &like,
            "optimizer step count optim/steps",
        )?;
        // check_state made it one Int64 value, so this read cannot fail.
        self.steps = steps
            .f_int64_value(&[0])
            .map_err(|_| "optimizer step count optim/steps is unreadable")?;
        let names = slot_names(&self.spec);
        for ((pname, _), slots) in self.params.iter().zip(self.slots.iter_mut()) {
            for (slot, t) in names.iter().zip(slots.iter_mut()) {
                let key = format!("optim/{pname}/{slot}");
                let src = saved_like(saved, &key, t, &format!("optimizer state {key}"))?;
                tch::no_grad(|| t.copy_(src));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// Runs `steps` updates of a one-element parameter whose loss is `c * p`
    /// (gradient `c`, varying per step) and returns the parameter after each.
    fn run(spec: OptimSpec, lr: f64, grads: &[f64]) -> Vec<f64> {
        let p = Tensor::from_slice(&[1.5f32]).set_requires_grad(true);
        let mut opt = Optimizer::new(spec, vec![("p".into(), p.shallow_clone())]);
        let mut out = Vec::new();
        for &c in grads {
            opt.backward_step(&(&p * c).sum(Kind::Float), lr);
            out.push(p.double_value(&[0]));
        }
        out
    }

    fn close(a: &[f64], b: &[f64]) {
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    const GRADS: [f64; 4] = [0.5, -1.0, 2.0, 0.25];

    #[test]
    fn sgd_nesterov_with_weight_decay_matches_the_pytorch_formula() {
        let (lr, m, wd) = (0.1, 0.9, 0.01);
        let spec = OptimSpec::Sgd {
            lr,
            momentum: m,
            nesterov: true,
            weight_decay: wd,
        };
        let (mut p, mut buf) = (1.5f64, 0.0f64);
        let want: Vec<f64> = GRADS
            .iter()
            .map(|&g| {
                let d = g + wd * p;
                buf = m * buf + d;
                p -= lr * (d + m * buf);
                p
            })
            .collect();
        close(&run(spec, lr, &GRADS), &want);
    }

    #[test]
    fn adamw_matches_the_pytorch_formula() {
        let (lr, b1, b2, eps, wd) = (0.01, 0.9, 0.999, 1e-8, 0.1);
        let spec = OptimSpec::AdamW {
            lr,
            beta1: b1,
            beta2: b2,
            eps,
            weight_decay: wd,
        };
        let (mut p, mut m, mut v) = (1.5f64, 0.0f64, 0.0f64);
        let want: Vec<f64> = GRADS
            .iter()
            .enumerate()
            .map(|(i, &g)| {
                let t = (i + 1) as i32;
                p *= 1.0 - lr * wd;
                m = b1 * m + (1.0 - b1) * g;
                v = b2 * v + (1.0 - b2) * g * g;
                let denom = (v / (1.0 - b2.powi(t))).sqrt() + eps;
                p -= lr / (1.0 - b1.powi(t)) * m / denom;
                p
            })
            .collect();
        close(&run(spec, lr, &GRADS), &want);
    }

    #[test]
    fn adadelta_matches_the_pytorch_formula() {
        let (lr, rho, eps) = (1.0, 0.9, 1e-6);
        let spec = OptimSpec::Adadelta {
            lr,
            rho,
            eps,
            weight_decay: 0.0,
        };
        let (mut p, mut sq, mut acc) = (1.5f64, 0.0f64, 0.0f64);
        let want: Vec<f64> = GRADS
            .iter()
            .map(|&g| {
                sq = rho * sq + (1.0 - rho) * g * g;
                let delta = (acc + eps).sqrt() / (sq + eps).sqrt() * g;
                acc = rho * acc + (1.0 - rho) * delta * delta;
                p -= lr * delta;
                p
            })
            .collect();
        close(&run(spec, lr, &GRADS), &want);
    }

    #[test]
    fn state_round_trips_through_named_tensors() {
        let spec = OptimSpec::AdamW {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let p = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut a = Optimizer::new(spec.clone(), vec![("w".into(), p.shallow_clone())]);
        a.backward_step(&p.sum(Kind::Float), 0.01);
        let saved: HashMap<String, Tensor> = a.state_tensors().into_iter().collect();
        let q = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut b = Optimizer::new(spec, vec![("w".into(), q)]);
        b.check_state(&saved).unwrap();
        b.load_state(&saved).unwrap();
        assert_eq!(b.steps, 1);
        assert!(b.slots[0][0].equal(&a.slots[0][0]));
        assert!(b.slots[0][1].equal(&a.slots[0][1]));
    }

    #[test]
    fn a_step_count_of_the_wrong_shape_is_an_error_not_a_panic() {
        let spec = OptimSpec::Sgd {
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        };
        let p = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut opt = Optimizer::new(spec, vec![("w".into(), p)]);
        let good: HashMap<String, Tensor> = opt.state_tensors().into_iter().collect();
        for bad in [
            Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
            Tensor::zeros([], (Kind::Int64, Device::Cpu)),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        ] {
            let mut saved: HashMap<String, Tensor> = good
                .iter()
                .map(|(k, t)| (k.clone(), t.shallow_clone()))
                .collect();
            saved.insert("optim/steps".into(), bad);
            let err = opt.load_state(&saved).unwrap_err();
            assert!(err.contains("optim/steps"), "{err}");
        }
        opt.load_state(&good).unwrap();
    }
}
