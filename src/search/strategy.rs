//! The search policy, pure: which trial comes next, and whether a running
//! trial should stop early. No I/O; every decision is a function of the plan
//! and the finished-trial history, so a restarted study decides the same.
//!
//! Next trial, while the best validation accuracy does not certify the
//! target (its 95% Wilson lower bound on the split's `val_n` records is
//! below it, [`crate::confidence`]):
//! 1. **escalate**: while the best's lower bound is below `min_accuracy`
//!    (by default the target itself), climb the ladder: the next rung above the highest one
//!    tried (growing capacity, stronger recipes);
//! 2. **lengthen**: the best trial's spec with twice the epochs (a longer
//!    schedule), once per best;
//! 3. **perturb**: the best trial's spec with learning rate, augmentation,
//!    label smoothing and (for CNNs) width drawn from a stream keyed by
//!    (seed, trial), so a restart draws the same.
//!
//! Pruning is ASHA-like: at rungs (epochs 1, 2, 4, 8, ...) a trial is
//! compared with the earlier trials that trained on the same schedule length
//! (curves of different lengths are not comparable: a one-cycle schedule
//! twice as long is still warming up) and stops when it trails the top
//! `1/eta` of them by more than `margin`. Only validation accuracy is read.

use serde::{Deserialize, Serialize};

use crate::confidence::{certifies, Goal};
use crate::data::rng::mix;
#[cfg(test)]
use crate::model::parse_ladder;
use crate::model::{ArchSpec, TrialSpec};

/// Everything the policy needs from the configuration.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The first trial (the `--preset`, with `--epochs`/`--lr`/`--batch-size` applied).
    pub start: TrialSpec,
    /// Rungs to escalate through, smallest first.
    pub ladder: Vec<TrialSpec>,
    pub target: f64,
    /// The validation split's size: the target counts as reached when the
    /// best's 95% Wilson lower bound on it is at or above the target
    /// ([`crate::confidence::certifies`]); 0 judges the point value.
    pub val_n: usize,
    /// Below this the next trial changes the architecture (climbs the ladder);
    /// at or above it only the recipe of the best is tuned.
    pub min_accuracy: f64,
    pub max_trials: u32,
    pub seed: u64,
    /// `None` disables pruning.
    pub prune: Option<PrunePolicy>,
    /// The data's input geometry, once known: a perturbation that would make
    /// the model too large for it keeps the best trial's widths instead.
    pub input: Option<crate::model::InputShape>,
}

/// ASHA-style early stopping parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrunePolicy {
    /// Accuracy a trial may trail the threshold by before it is stopped.
    pub margin: f64,
    /// Keep the top `1/eta` of peers at each rung.
    pub eta: usize,
}

/// How a trial was chosen (journaled with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Move {
    Start,
    Escalate,
    Lengthen,
    Perturb,
}

/// The policy's view of a trial that ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub spec: TrialSpec,
    pub mv: Move,
    /// Ladder index, when the trial is a rung (or started on one).
    pub rung: Option<usize>,
    pub val_accuracy: f64,
    /// Validation accuracy at the end of each epoch.
    pub curve: Vec<f64>,
    pub pruned: bool,
    /// Its loss became NaN or infinite: never the best, never promoted.
    pub diverged: bool,
}

/// The next trial to run, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub spec: TrialSpec,
    pub mv: Move,
    pub rung: Option<usize>,
    pub reason: String,
}

/// The preset name a label starts with (`bn3:12` -> `bn3`).
fn base_name(label: &str) -> &str {
    label.split([':', '~', '*']).next().unwrap_or(label)
}

impl Plan {
    /// The ladder index the start spec sits on (matched by preset name).
    pub fn start_rung(&self) -> Option<usize> {
        let name = base_name(&self.start.preset);
        self.ladder
            .iter()
            .position(|r| base_name(&r.preset) == name)
    }

    /// The target, judged on the validation split's size.
    pub fn goal(&self) -> Goal {
        Goal {
            target: self.target,
            val_n: self.val_n,
        }
    }

    /// The next trial, or `None` when the study is over (target reached or
    /// the trial budget spent). `done` is in trial order.
    pub fn next(&self, done: &[Finished]) -> Option<Proposal> {
        let n = done.len() as u32;
        if n >= self.max_trials {
            return None;
        }
        let Some(best) = best_index(done) else {
            if let Some(last) = done.last() {
                return Some(self.after_divergence(done, last, n));
            }
            return Some(Proposal {
                spec: self.start.clone(),
                mv: Move::Start,
                rung: self.start_rung(),
                reason: "first trial".into(),
            });
        };
        let b = &done[best];
        if self.goal().reached(b.val_accuracy) {
            return None;
        }
        if !certifies(b.val_accuracy, self.val_n, self.min_accuracy) {
            let top = done.iter().filter_map(|f| f.rung).max();
            let next = top.map_or(0, |t| t + 1);
            if let Some(spec) = self.ladder.get(next) {
                return Some(Proposal {
                    spec: spec.clone(),
                    mv: Move::Escalate,
                    rung: Some(next),
                    reason: format!(
                        "best {:.4} < {:.4}: escalate to {}",
                        b.val_accuracy, self.min_accuracy, spec.preset
                    ),
                });
            }
        }
        let longer = lengthen(&b.spec);
        if b.mv != Move::Lengthen
            && longer.recipe.epochs > b.spec.recipe.epochs
            && self.fits(&longer)
            && !done.iter().any(|f| f.spec == longer)
        {
            return Some(Proposal {
                reason: format!(
                    "best {:.4} < target {:.4}: train {} for {} epochs",
                    b.val_accuracy, self.target, b.spec.preset, longer.recipe.epochs
                ),
                spec: longer,
                mv: Move::Lengthen,
                rung: None,
            });
        }
        let mut spec = perturb(&b.spec, self.seed, n, 0);
        for attempt in 1..8 {
            if !done.iter().any(|f| f.spec == spec) {
                break;
            }
            spec = perturb(&b.spec, self.seed, n, attempt);
        }
        // Every proposal must validate: undo the changes that break it, widths
        // first (the best trial's own spec fits, it trained).
        if !self.fits(&spec) {
            spec.arch = b.spec.arch.clone();
        }
        if !self.fits(&spec) {
            spec.recipe.augment_shift = b.spec.recipe.augment_shift;
            spec.recipe.label_smoothing = b.spec.recipe.label_smoothing;
        }
        Some(Proposal {
            reason: format!(
                "best {:.4} < target {:.4}: perturb {}",
                b.val_accuracy, self.target, b.spec.preset
            ),
            spec,
            mv: Move::Perturb,
            rung: None,
        })
    }

    /// Whether `spec` passes every check (against the input, once known).
    fn fits(&self, spec: &TrialSpec) -> bool {
        match self.input {
            Some(input) => spec.validate_for(input).is_ok(),
            None => spec.validate().is_ok(),
        }
    }

    /// The next trial when every trial so far diverged: the next rung of
    /// the ladder, else the last trial again with a tenth of its learning rate.
    fn after_divergence(&self, done: &[Finished], last: &Finished, n: u32) -> Proposal {
        let next = done
            .iter()
            .filter_map(|f| f.rung)
            .max()
            .map_or(0, |t| t + 1);
        if let Some(spec) = self.ladder.get(next) {
            return Proposal {
                spec: spec.clone(),
                mv: Move::Escalate,
                rung: Some(next),
                reason: format!("every trial so far diverged: escalate to {}", spec.preset),
            };
        }
        let mut spec = last.spec.clone();
        let lr = (last.spec.recipe.optimizer.lr() / 10.0).max(f64::MIN_POSITIVE);
        spec.recipe.optimizer = spec.recipe.optimizer.with_lr(lr);
        spec.preset = format!("{}~t{n}", base_name(&last.spec.preset));
        Proposal {
            reason: format!(
                "every trial so far diverged: retry {} with learning rate {lr}",
                last.spec.preset
            ),
            spec,
            mv: Move::Perturb,
            rung: None,
        }
    }

    /// Should a running trial with spec `spec` and validation `curve` stop now?
    pub fn should_prune(&self, spec: &TrialSpec, curve: &[f64], done: &[Finished]) -> bool {
        let (Some(policy), Some(&acc)) = (self.prune, curve.last()) else {
            return false;
        };
        let epoch = curve.len();
        if !epoch.is_power_of_two() {
            return false;
        }
        let mut peers: Vec<f64> = done
            .iter()
            .filter(|f| f.spec.recipe.epochs == spec.recipe.epochs)
            .filter_map(|f| f.curve.get(epoch - 1).copied())
            .collect();
        if peers.is_empty() {
            return false;
        }
        peers.sort_by(|a, b| b.total_cmp(a));
        let keep = peers.len().div_ceil(policy.eta.max(1));
        acc < peers[keep - 1] - policy.margin
    }
}

/// Index of the best trial by validation accuracy (the earliest on ties);
/// diverged trials are never the best.
pub fn best_index(done: &[Finished]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, f) in done.iter().enumerate().filter(|(_, f)| !f.diverged) {
        if best.is_none_or(|b| f.val_accuracy > done[b].val_accuracy) {
            best = Some(i);
        }
    }
    best
}

/// The same trial on a schedule twice as long (at most `limits::MAX_EPOCHS`).
pub fn lengthen(spec: &TrialSpec) -> TrialSpec {
    let mut s = spec.clone();
    s.recipe.epochs = spec
        .recipe
        .epochs
        .saturating_mul(2)
        .min(crate::model::limits::MAX_EPOCHS);
    s.preset = format!("{}*{}", base_name(&spec.preset), s.recipe.epochs);
    s
}

/// A deterministic uniform draw in [0, 1) from (key, i).
fn unit(key: u64, i: u64) -> f64 {
    (mix(key, i) >> 11) as f64 / (1u64 << 53) as f64
}

/// A neighbour of `spec`, drawn from the stream keyed by (seed, trial, attempt).
pub fn perturb(spec: &TrialSpec, seed: u64, trial: u32, attempt: u32) -> TrialSpec {
    let key = mix(
        mix(mix(seed, 0x7065_7274_7572_6221), u64::from(trial)),
        u64::from(attempt),
    );
    let mut s = spec.clone();
    let lr = spec.recipe.optimizer.lr() * 2f64.powf(2.0 * unit(key, 0) - 1.0);
    // Rounded for readable journals, unless that would round a tiny rate to 0.
    let rounded = (lr * 1e6).round() / 1e6;
    let lr = if rounded > 0.0 { rounded } else { lr };
    s.recipe.optimizer = spec.recipe.optimizer.with_lr(lr);
    s.recipe.augment_shift = [spec.recipe.augment_shift, 1, 2][(unit(key, 1) * 3.0) as usize];
    s.recipe.label_smoothing =
        [spec.recipe.label_smoothing, 0.0, 0.05, 0.1][(unit(key, 2) * 4.0) as usize];
    if let ArchSpec::Cnn { blocks, .. } = &mut s.arch {
        if unit(key, 3) < 1.0 / 3.0 {
            // Multiples of 16: oneDNN's fast CPU kernels want them (12/24/48
            // channels trained 2.5x slower than 16/32/64 in bench runs).
            for b in blocks.iter_mut() {
                b.channels = (b.channels * 3 / 2 + 15) / 16 * 16;
            }
        }
    }
    s.preset = format!("{}~t{trial}", base_name(&spec.preset));
    s
}

#[cfg(test)]
mod tests;
