//! Architectures and recipes as plain serde data.

use serde::{Deserialize, Serialize};

/// A network architecture. One function ([`super::build`]) turns it into a module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArchSpec {
    /// Fully connected layers; no hidden widths = a linear (softmax) model.
    Mlp {
        hidden: Vec<i64>,
        #[serde(default)]
        dropout: f64,
    },
    /// Convolution blocks followed by a fully connected head.
    Cnn {
        blocks: Vec<ConvBlock>,
        #[serde(default)]
        head: Vec<i64>,
        #[serde(default)]
        head_dropout: f64,
    },
}

/// `convs` convolutions (same width), each followed by batch norm (optional)
/// and ReLU, then an optional 2x2 max-pool and dropout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvBlock {
    pub channels: i64,
    #[serde(default = "default_kernel")]
    pub kernel: i64,
    /// Padding; `None` keeps the spatial size ("same" for odd kernels).
    #[serde(default)]
    pub padding: Option<i64>,
    #[serde(default = "one")]
    pub convs: u32,
    #[serde(default)]
    pub batch_norm: bool,
    #[serde(default)]
    pub pool: bool,
    /// Pool straight after the block's last convolution, before its batch norm
    /// and ReLU: the normalisation then runs on a quarter of the pixels.
    #[serde(default)]
    pub pool_first: bool,
    #[serde(default)]
    pub dropout: f64,
}

fn default_kernel() -> i64 {
    3
}
fn one() -> u32 {
    1
}

/// Optimizer and its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimSpec {
    Sgd {
        lr: f64,
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
    },
    AdamW {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
    },
    Adadelta {
        lr: f64,
        rho: f64,
        eps: f64,
        weight_decay: f64,
    },
}

impl OptimSpec {
    pub fn lr(&self) -> f64 {
        match self {
            OptimSpec::Sgd { lr, .. }
            | OptimSpec::AdamW { lr, .. }
            | OptimSpec::Adadelta { lr, .. } => *lr,
        }
    }
    pub fn with_lr(&self, new: f64) -> OptimSpec {
        let mut s = self.clone();
        match &mut s {
            OptimSpec::Sgd { lr, .. }
            | OptimSpec::AdamW { lr, .. }
            | OptimSpec::Adadelta { lr, .. } => *lr = new,
        }
        s
    }
}

/// Learning-rate schedule, a pure function of the step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleSpec {
    Constant,
    /// Multiply by `gamma` every `every_epochs` epochs (PyTorch StepLR).
    Step {
        every_epochs: u32,
        gamma: f64,
    },
    /// Warm up to the optimizer's lr for `pct_start` of training, then anneal (cosine).
    OneCycle {
        pct_start: f64,
        div_factor: f64,
        final_div_factor: f64,
    },
}

/// How a trial trains: everything besides the architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub optimizer: OptimSpec,
    pub schedule: ScheduleSpec,
    pub epochs: u32,
    pub batch_size: i64,
    #[serde(default)]
    pub label_smoothing: f64,
    /// Random shift augmentation, in pixels (0 = off).
    #[serde(default)]
    pub augment_shift: i64,
}

/// A complete trial definition: what to build and how to train it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialSpec {
    pub preset: String,
    pub arch: ArchSpec,
    pub recipe: Recipe,
}
