//! Optimizers and learning-rate schedules whose whole state is named tensors,
//! so a checkpoint saves and restores it exactly (tch's own optimizer cannot).

mod schedule;

pub use schedule::learning_rate;

use std::collections::HashMap;

use tch::Tensor;

use crate::model::OptimSpec;

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

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    /// One update with learning rate `lr` (the schedule's value for this step).
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as f64;
        tch::no_grad(|| {
            for ((_, p), slots) in self.params.iter_mut().zip(self.slots.iter_mut()) {
                let g = p.grad();
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
                        let _ = sq.g_mul_scalar_(rho).g_add_(&(&g * &g * (1.0 - rho)));
                        let delta = (&*acc + eps).sqrt() / (&*sq + eps).sqrt() * &g;
                        let _ = acc
                            .g_mul_scalar_(rho)
                            .g_add_(&(&delta * &delta * (1.0 - rho)));
                        let _ = p.g_add_(&(delta * -lr));
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
        saved
            .get("optim/steps")
            .ok_or("optimizer step count missing")?;
        let names = slot_names(&self.spec);
        for ((pname, _), slots) in self.params.iter().zip(&self.slots) {
            for (slot, t) in names.iter().zip(slots) {
                let key = format!("optim/{pname}/{slot}");
                let src = saved
                    .get(&key)
                    .ok_or_else(|| format!("optimizer state {key} missing"))?;
                if src.size() != t.size() || src.kind() != t.kind() {
                    return Err(format!(
                        "optimizer state {key} has shape {:?}, expected {:?}",
                        src.size(),
                        t.size()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Restores what [`state_tensors`](Self::state_tensors) produced; every slot must be present.
    pub fn load_state(&mut self, saved: &HashMap<String, Tensor>) -> Result<(), String> {
        let steps = saved
            .get("optim/steps")
            .ok_or("optimizer step count missing")?;
        self.steps = steps.int64_value(&[0]);
        let names = slot_names(&self.spec);
        for ((pname, _), slots) in self.params.iter().zip(self.slots.iter_mut()) {
            for (slot, t) in names.iter().zip(slots.iter_mut()) {
                let key = format!("optim/{pname}/{slot}");
                let src = saved
                    .get(&key)
                    .ok_or_else(|| format!("optimizer state {key} missing"))?;
                if src.size() != t.size() {
                    return Err(format!(
                        "optimizer state {key} has shape {:?}, expected {:?}",
                        src.size(),
                        t.size()
                    ));
                }
                tch::no_grad(|| t.copy_(src));
            }
        }
        Ok(())
    }
}
