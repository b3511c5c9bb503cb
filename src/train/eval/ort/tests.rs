//! Tests of `eval::ort`: onnxruntime's passes agree with libtorch's.

use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::*;
use crate::model::{self, ArchSpec, ConvBlock, InputShape};
use crate::train::eval::evaluate;

#[test]
fn a_batch_counts_the_first_maximum_and_sums_cross_entropy() {
    let mut confusion = vec![0i64; 4];
    // Row 0: a tie between both classes goes to class 0; row 1: class 1.
    let logits = [1.0f32, 1.0, 0.0, 2.0];
    let loss = tally_batch(&logits, &[1, 1], 2, &mut confusion).unwrap();
    assert_eq!(confusion, vec![0, 0, 1, 1]);
    let want = (2f64.ln()) + ((1.0 + (-2f64).exp()).ln());
    assert!((loss - want).abs() < 1e-9, "{loss} vs {want}");
}

#[test]
fn a_label_out_of_range_or_a_short_output_is_an_error_not_a_panic() {
    let mut confusion = vec![0i64; 4];
    let e = tally_batch(&[0.0, 1.0], &[2], 2, &mut confusion).unwrap_err();
    assert!(e.contains("label 2"), "{e}");
    let e = tally_batch(&[0.0], &[0], 2, &mut confusion).unwrap_err();
    assert!(e.contains("1 logits for 1 images"), "{e}");
    assert_eq!(confusion, vec![0; 4]);
}

/// The input of the test network: 1x12x12, three classes.
const INPUT: InputShape = InputShape {
    channels: 1,
    height: 12,
    width: 12,
    classes: 3,
};

/// A small CNN with batch norm (running statistics moved off their
/// initial values) and pooling, as training leaves it: 4-D weights channels-last.
fn trained_cnn(input: InputShape) -> (nn::VarStore, nn::SequentialT, ArchSpec) {
    let arch = ArchSpec::Cnn {
        blocks: vec![ConvBlock {
            channels: 4,
            kernel: 3,
            padding: None,
            convs: 2,
            batch_norm: true,
            pool: true,
            pool_first: false,
            dropout: 0.1,
        }],
        head: vec![16],
        head_dropout: 0.2,
    };
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = model::build(&vs.root(), &arch, input);
    model::use_channels_last(&vs);
    for _ in 0..3 {
        let x = Tensor::randn(
            [32, 1, input.height, input.width],
            (Kind::Float, Device::Cpu),
        );
        let _ = tch::no_grad(|| net.forward_t(&x, true));
    }
    (vs, net, arch)
}

#[test]
fn onnxruntime_and_libtorch_give_the_same_evaluation() {
    let input = INPUT;
    let (vs, net, arch) = trained_cnn(input);
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    // 700 records: one full batch and a partial one.
    let split = Split {
        images: Tensor::randn([700, 1, 12, 12], (Kind::Float, Device::Cpu)),
        labels: Tensor::randint(3, [700], (Kind::Int64, Device::Cpu)),
    };
    let network = Network {
        module: &net,
        arch: &arch,
        input,
        named: &named,
    };
    let (flat, loss_sum) = pass(&network, &split, 3).expect("onnxruntime runs the graph");
    let ours = super::super::tally(&flat, loss_sum, 700, 3);
    let theirs = evaluate(&net, &split, 3, Device::Cpu);
    assert_eq!(ours.count, 700);
    assert_eq!(flat.iter().sum::<i64>(), 700);
    // Float rounding may flip a near-tie: at most one record (two counts).
    let moved: i64 = ours
        .confusion
        .iter()
        .flatten()
        .zip(theirs.confusion.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(
        moved <= 2,
        "confusions differ by {moved}: {ours:?} vs {theirs:?}"
    );
    assert!((ours.accuracy - theirs.accuracy).abs() <= 1.0 / 700.0);
    assert!(
        (ours.loss - theirs.loss).abs() <= 1e-5 * theirs.loss.abs().max(1.0),
        "loss {} vs {}",
        ours.loss,
        theirs.loss
    );
}

#[test]
fn a_weight_missing_from_the_network_is_reported() {
    let input = INPUT;
    let (vs, net, arch) = trained_cnn(input);
    let named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(n, _)| n != "out.bias")
        .collect();
    let split = Split {
        images: Tensor::zeros([4, 1, 12, 12], (Kind::Float, Device::Cpu)),
        labels: Tensor::zeros([4], (Kind::Int64, Device::Cpu)),
    };
    let network = Network {
        module: &net,
        arch: &arch,
        input,
        named: &named,
    };
    let e = pass(&network, &split, 3).unwrap_err();
    assert!(e.contains("out.bias"), "{e}");
}
