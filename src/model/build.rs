//! ArchSpec -> tch module: the one function that builds a network.

use tch::nn;

use super::spec::ArchSpec;

/// Input geometry the network is built for.
#[derive(Debug, Clone, Copy)]
pub struct InputShape {
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub classes: i64,
}

/// Builds `spec` under `vs`. Variable names are stable (they key checkpoints).
pub fn build(vs: &nn::Path, spec: &ArchSpec, input: InputShape) -> nn::SequentialT {
    let mut seq = nn::seq_t();
    match spec {
        ArchSpec::Mlp { hidden, dropout } => {
            let width = input.channels * input.height * input.width;
            let seq = seq.add_fn(|x| x.flatten(1, -1));
            add_dense(seq, vs, width, hidden, *dropout, input.classes)
        }
        ArchSpec::Cnn {
            blocks,
            head,
            head_dropout,
        } => {
            let (mut c, mut h, mut w) = (input.channels, input.height, input.width);
            for (b, block) in blocks.iter().enumerate() {
                for k in 0..block.convs {
                    let pad = block.pad();
                    let init = fan_in_uniform(c * block.kernel * block.kernel);
                    let cfg = nn::ConvConfig {
                        padding: pad,
                        bias: !block.batch_norm,
                        ws_init: init,
                        bs_init: init,
                        ..Default::default()
                    };
                    let name = format!("b{b}c{k}");
                    seq = seq.add(nn::conv2d(vs / &name, c, block.channels, block.kernel, cfg));
                    c = block.channels;
                    (h, w) = (block.conv_out(h), block.conv_out(w));
                    let pool_here = block.pool && k + 1 == block.convs;
                    if pool_here && block.pool_first {
                        seq = seq.add_fn(|x| x.max_pool2d_default(2));
                    }
                    if block.batch_norm {
                        seq = seq.add(nn::batch_norm2d(
                            vs / format!("{name}bn"),
                            block.channels,
                            batch_norm_cfg(),
                        ));
                    }
                    seq = seq.add_fn(|x| x.relu());
                    if pool_here && !block.pool_first {
                        seq = seq.add_fn(|x| x.max_pool2d_default(2));
                    }
                }
                if block.pool {
                    h /= 2;
                    w /= 2;
                }
                seq = add_dropout(seq, block.dropout);
            }
            seq = seq.add_fn(|x| x.flatten(1, -1));
            add_dense(seq, vs, c * h * w, head, *head_dropout, input.classes)
        }
    }
}

/// The dense layers `fc0, fc1, ...` of `hidden` widths (ReLU, then dropout)
/// from `width` inputs, and the `out` layer of `classes` logits.
fn add_dense(
    mut seq: nn::SequentialT,
    vs: &nn::Path,
    mut width: i64,
    hidden: &[i64],
    dropout: f64,
    classes: i64,
) -> nn::SequentialT {
    for (i, &h) in hidden.iter().enumerate() {
        seq = seq.add(nn::linear(
            vs / format!("fc{i}"),
            width,
            h,
            linear_cfg(width),
        ));
        seq = seq.add_fn(|x| x.relu());
        seq = add_dropout(seq, dropout);
        width = h;
    }
    seq.add(nn::linear(vs / "out", width, classes, linear_cfg(width)))
}

/// PyTorch's default initialisation for linear and convolution layers:
/// weights and biases uniform in ±1/sqrt(fan_in). (tch's default, He uniform,
/// is √6 times wider; behind batch norm that only shrinks the effective
/// learning rate, and one-epoch recipes then fall short of their accuracy.)
fn fan_in_uniform(fan_in: i64) -> nn::Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    nn::Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// PyTorch's batch norm: scale 1 and shift 0 at the start, momentum 0.1,
/// epsilon 1e-5. (tch's default draws the scale uniform in [0, 1): a mean of
/// 0.5 halves every block's output at the start, and the one-epoch `fast`
/// recipe ended 0.1-0.2 points below the PyTorch reference over seeds.)
fn batch_norm_cfg() -> nn::BatchNormConfig {
    nn::BatchNormConfig {
        ws_init: nn::Init::Const(1.0),
        bs_init: nn::Init::Const(0.0),
        momentum: 0.1,
        eps: 1e-5,
        ..Default::default()
    }
}

fn linear_cfg(fan_in: i64) -> nn::LinearConfig {
    let init = fan_in_uniform(fan_in);
    nn::LinearConfig {
        ws_init: init,
        bs_init: Some(init),
        bias: true,
    }
}

fn add_dropout(seq: nn::SequentialT, p: f64) -> nn::SequentialT {
    if p > 0.0 {
        seq.add_fn_t(move |x, train| x.dropout(p, train))
    } else {
        seq
    }
}

/// Checks that the spec fits the input: every range, and the layer walk
/// (see `validate`), so that nothing libtorch would refuse is built.
pub fn validate(spec: &ArchSpec, input: InputShape) -> Result<(), String> {
    spec.footprint(input).map(|_| ()).map_err(|e| e.to_string())
}

/// Parameter count, for reports.
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

impl super::spec::ConvBlock {
    /// Padding; unset keeps the spatial size ("same" for odd kernels).
    fn pad(&self) -> i64 {
        self.padding.unwrap_or(self.kernel / 2)
    }
    /// Size of one spatial side after one of this block's convolutions.
    fn conv_out(&self, size: i64) -> i64 {
        size + 2 * self.pad() - self.kernel + 1
    }
}
