//! Every value of an architecture and a recipe checked before libtorch sees
//! it: ranges first (no input needed), then a walk over the layers that
//! tracks the feature map, so a kernel larger than its input, a pool on a
//! 1x1 map, or a model too large to train is refused with the key that is
//! wrong (`arch.blocks[2].kernel`) and what is allowed. libtorch answers such
//! values with a C++ exception (a panic in tch) or, for some, heap
//! corruption; nothing out of range may reach it.

use super::build::InputShape;
use super::limits::*;
use super::spec::{ArchSpec, ConvBlock, OptimSpec, Recipe, ScheduleSpec, TrialSpec};

/// A value out of range: where it is and what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {what}")]
pub struct SpecError {
    /// Path of the value in the spec, e.g. `arch.blocks[2].kernel`.
    pub key: String,
    pub what: String,
}

fn err(key: impl Into<String>, what: impl Into<String>) -> SpecError {
    SpecError {
        key: key.into(),
        what: what.into(),
    }
}

/// What a model costs, from its spec and input geometry alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Trainable parameters.
    pub parameters: u64,
    /// Activation values one sample keeps for the backward pass (an estimate:
    /// every layer's output).
    pub activations_per_sample: u64,
}

/// Saturating product: a hostile spec may describe more than fits in 64 bits.
fn mul(factors: &[i64]) -> i64 {
    factors.iter().fold(1i64, |acc, &f| acc.saturating_mul(f))
}

fn int_in(key: &str, v: i64, lo: i64, hi: i64) -> Result<(), SpecError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(err(key, format!("{v} is outside {lo}..={hi}")))
    }
}

/// `lo <= v < hi` (NaN fails).
fn float_in(key: &str, v: f64, lo: f64, hi: f64) -> Result<(), SpecError> {
    if v >= lo && v < hi {
        Ok(())
    } else {
        Err(err(key, format!("{v} is outside [{lo}, {hi})")))
    }
}

/// `lo < v <= hi` (NaN fails).
fn float_above(key: &str, v: f64, lo: f64, hi: f64) -> Result<(), SpecError> {
    if v > lo && v <= hi {
        Ok(())
    } else {
        Err(err(key, format!("{v} is outside ({lo}, {hi}]")))
    }
}

fn positive_finite(key: &str, v: f64) -> Result<(), SpecError> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        Err(err(key, format!("{v} must be a positive, finite number")))
    }
}

fn widths(key: &str, list: &[i64]) -> Result<(), SpecError> {
    if list.len() > MAX_LAYERS {
        return Err(err(
            key,
            format!("{} layers; at most {MAX_LAYERS}", list.len()),
        ));
    }
    for (i, &w) in list.iter().enumerate() {
        int_in(&format!("{key}[{i}]"), w, 1, MAX_WIDTH)?;
    }
    Ok(())
}

fn block_ranges(b: usize, block: &ConvBlock) -> Result<(), SpecError> {
    let key = |field: &str| format!("arch.blocks[{b}].{field}");
    int_in(&key("channels"), block.channels, 1, MAX_WIDTH)?;
    int_in(&key("kernel"), block.kernel, 1, MAX_KERNEL)?;
    int_in(&key("convs"), i64::from(block.convs), 1, MAX_CONVS)?;
    if let Some(p) = block.padding {
        int_in(&key("padding"), p, 0, block.kernel - 1)
            .map_err(|e| err(e.key, format!("{} (at most the kernel size - 1)", e.what)))?;
    }
    float_in(&key("dropout"), block.dropout, 0.0, 1.0)
}

impl ArchSpec {
    /// Checks the ranges of every value (no input geometry needed).
    pub fn check_ranges(&self) -> Result<(), SpecError> {
        match self {
            ArchSpec::Mlp { hidden, dropout } => {
                widths("arch.hidden", hidden)?;
                float_in("arch.dropout", *dropout, 0.0, 1.0)
            }
            ArchSpec::Cnn {
                blocks,
                head,
                head_dropout,
            } => {
                if blocks.len() > MAX_BLOCKS {
                    return Err(err(
                        "arch.blocks",
                        format!("{} blocks; at most {MAX_BLOCKS}", blocks.len()),
                    ));
                }
                for (b, block) in blocks.iter().enumerate() {
                    block_ranges(b, block)?;
                }
                widths("arch.head", head)?;
                float_in("arch.head_dropout", *head_dropout, 0.0, 1.0)
            }
        }
    }

    /// Checks the ranges, then walks the layers over `input`: every kernel
    /// fits its feature map, every pool has a 2x2 map to pool, and the model
    /// stays under [`MAX_PARAMETERS`]; returns what it costs.
    pub fn footprint(&self, input: InputShape) -> Result<Footprint, SpecError> {
        self.check_ranges()?;
        // From the data, or from a card in the state dir (which may be edited).
        int_in("input.channels", input.channels, 1, MAX_WIDTH)?;
        int_in("input.height", input.height, 1, MAX_WIDTH)?;
        int_in("input.width", input.width, 1, MAX_WIDTH)?;
        int_in("input.classes", input.classes, 1, MAX_WIDTH)?;
        let mut walk = Walk::default();
        let (c, h, w) = (input.channels, input.height, input.width);
        walk.act(mul(&[c, h, w]));
        let features = match self {
            ArchSpec::Mlp { .. } => mul(&[c, h, w]),
            ArchSpec::Cnn { blocks, .. } => {
                let (mut c, mut h, mut w) = (c, h, w);
                for (b, block) in blocks.iter().enumerate() {
                    (c, h, w) = walk.block(b, block, (c, h, w))?;
                }
                mul(&[c, h, w])
            }
        };
        let dense = match self {
            ArchSpec::Mlp { hidden, .. } => ("arch.hidden", hidden),
            ArchSpec::Cnn { head, .. } => ("arch.head", head),
        };
        let mut width = features;
        for (i, &out) in dense.1.iter().enumerate() {
            walk.params(
                &format!("{}[{i}]", dense.0),
                mul(&[width, out]).saturating_add(out),
            )?;
            walk.act(mul(&[2, out]));
            width = out;
        }
        walk.params(
            "arch",
            mul(&[width, input.classes]).saturating_add(input.classes),
        )?;
        walk.act(input.classes);
        Ok(Footprint {
            parameters: walk.parameters,
            activations_per_sample: walk.activations,
        })
    }
}

/// The running totals of a walk over the layers (saturating: a hostile spec
/// may describe more than fits in 64 bits).
#[derive(Default)]
struct Walk {
    parameters: u64,
    activations: u64,
}

impl Walk {
    fn act(&mut self, n: i64) {
        self.activations = self.activations.saturating_add(n.max(0) as u64);
    }

    fn params(&mut self, key: &str, n: i64) -> Result<(), SpecError> {
        self.parameters = self.parameters.saturating_add(n.max(0) as u64);
        if self.parameters > MAX_PARAMETERS {
            return Err(err(
                key,
                format!(
                    "the model reaches {} parameters here; at most {MAX_PARAMETERS} (use fewer \
                     channels or units)",
                    self.parameters
                ),
            ));
        }
        Ok(())
    }

    /// One block over a `(channels, height, width)` map, in the order the
    /// builder adds its layers; returns the map after it.
    fn block(
        &mut self,
        b: usize,
        block: &ConvBlock,
        (mut c, mut h, mut w): (i64, i64, i64),
    ) -> Result<(i64, i64, i64), SpecError> {
        let key = |field: &str| format!("arch.blocks[{b}].{field}");
        let k = block.kernel;
        let pad = block.padding.unwrap_or(k / 2);
        for conv in 0..block.convs {
            if k > h || k > w {
                return Err(err(
                    key("kernel"),
                    format!(
                        "{k} is larger than the {h}x{w} feature map convolution {conv} of this \
                         block sees; at most {}",
                        h.min(w)
                    ),
                ));
            }
            let bias = if block.batch_norm { 2 } else { 1 };
            self.params(
                &key("channels"),
                mul(&[c, k, k, block.channels]).saturating_add(bias * block.channels),
            )?;
            c = block.channels;
            (h, w) = (h + 2 * pad - k + 1, w + 2 * pad - k + 1);
            self.act(mul(&[c, h, w, 2]));
            let pool_here = block.pool && conv + 1 == block.convs;
            if pool_here && block.pool_first {
                (h, w) = self.pool(&key("pool"), c, h, w)?;
            }
            if block.batch_norm {
                self.act(mul(&[c, h, w]));
            }
            if pool_here && !block.pool_first {
                (h, w) = self.pool(&key("pool"), c, h, w)?;
            }
        }
        Ok((c, h, w))
    }

    /// A 2x2 max-pool over a `c x h x w` map; returns the pooled size.
    fn pool(&mut self, key: &str, c: i64, h: i64, w: i64) -> Result<(i64, i64), SpecError> {
        if h < 2 || w < 2 {
            return Err(err(
                key,
                format!("the feature map is {h}x{w} here, too small to pool 2x2"),
            ));
        }
        self.act(mul(&[c, h / 2, w / 2]));
        Ok((h / 2, w / 2))
    }
}

impl Recipe {
    /// Checks the ranges of every value.
    pub fn validate(&self) -> Result<(), SpecError> {
        int_in(
            "recipe.epochs",
            i64::from(self.epochs),
            1,
            i64::from(MAX_EPOCHS),
        )?;
        int_in("recipe.batch_size", self.batch_size, 1, MAX_BATCH)?;
        float_in("recipe.label_smoothing", self.label_smoothing, 0.0, 1.0)?;
        int_in("recipe.augment_shift", self.augment_shift, 0, MAX_SHIFT)?;
        self.optimizer.validate()?;
        match self.schedule {
            ScheduleSpec::Constant => Ok(()),
            ScheduleSpec::Step {
                every_epochs,
                gamma,
            } => {
                int_in(
                    "recipe.schedule.every_epochs",
                    i64::from(every_epochs),
                    1,
                    i64::from(MAX_EPOCHS),
                )?;
                float_above("recipe.schedule.gamma", gamma, 0.0, 1.0)
            }
            ScheduleSpec::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                float_in("recipe.schedule.pct_start", pct_start, 0.0, 1.0)?;
                float_above("recipe.schedule.div_factor", div_factor, 0.0, 1e6)?;
                float_above(
                    "recipe.schedule.final_div_factor",
                    final_div_factor,
                    0.0,
                    1e9,
                )
            }
        }
    }
}

impl OptimSpec {
    /// Checks the ranges of the optimizer's hyper-parameters.
    pub fn validate(&self) -> Result<(), SpecError> {
        let key = |f: &str| format!("recipe.optimizer.{f}");
        positive_finite(&key("lr"), self.lr())?;
        match *self {
            OptimSpec::Sgd {
                momentum,
                weight_decay,
                ..
            } => {
                float_in(&key("momentum"), momentum, 0.0, 1.0)?;
                float_in(&key("weight_decay"), weight_decay, 0.0, 1.0)
            }
            OptimSpec::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                float_in(&key("beta1"), beta1, 0.0, 1.0)?;
                float_in(&key("beta2"), beta2, 0.0, 1.0)?;
                float_above(&key("eps"), eps, 0.0, 1.0)?;
                float_in(&key("weight_decay"), weight_decay, 0.0, 1.0)
            }
            OptimSpec::Adadelta {
                rho,
                eps,
                weight_decay,
                ..
            } => {
                float_in(&key("rho"), rho, 0.0, 1.0)?;
                float_above(&key("eps"), eps, 0.0, 1.0)?;
                float_in(&key("weight_decay"), weight_decay, 0.0, 1.0)
            }
        }
    }
}

impl TrialSpec {
    /// Checks every range of the architecture and the recipe.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.arch.check_ranges()?;
        self.recipe.validate()
    }

    /// [`validate`](Self::validate), then the checks that need the input:
    /// the layer walk, the shift against the image size, and one training
    /// batch's activations under [`MAX_BATCH_ACTIVATIONS`].
    pub fn validate_for(&self, input: InputShape) -> Result<Footprint, SpecError> {
        self.recipe.validate()?;
        let fp = self.arch.footprint(input)?;
        let side = input.height.min(input.width);
        if 2 * self.recipe.augment_shift >= side {
            return Err(err(
                "recipe.augment_shift",
                format!(
                    "{} moves a {}x{} image by half its size or more; at most {}",
                    self.recipe.augment_shift,
                    input.height,
                    input.width,
                    (side - 1) / 2
                ),
            ));
        }
        let batch = self.recipe.batch_size.max(1) as u64;
        let per_batch = fp.activations_per_sample.saturating_mul(batch);
        if per_batch > MAX_BATCH_ACTIVATIONS {
            return Err(err(
                "recipe.batch_size",
                format!(
                    "a batch of {batch} keeps about {per_batch} activation values \
                     ({} per image); at most {MAX_BATCH_ACTIVATIONS} (use a smaller batch or \
                     model)",
                    fp.activations_per_sample
                ),
            ));
        }
        Ok(fp)
    }
}

#[cfg(test)]
mod tests;
