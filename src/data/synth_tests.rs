//! Tests of the synthetic data sets (`tests/common/synth.rs`): deterministic, balanced, learnable.

use super::synth::*;
use crate::data::{Dataset, LoadOptions};
use std::path::Path;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind};

#[test]
fn same_arguments_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    write_synthetic_mnist(a.path(), 50, 20, 1).unwrap();
    write_synthetic_mnist(b.path(), 50, 20, 1).unwrap();
    write_synthetic_mnist(c.path(), 50, 20, 2).unwrap();
    let read = |d: &Path| std::fs::read(d.join("train-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(read(a.path()), read(b.path()));
    assert_ne!(read(a.path()), read(c.path()));
}

#[test]
fn labels_are_balanced() {
    let (_, labels) = synthetic_samples(100, 5);
    for c in 0..CLASSES as u8 {
        assert_eq!(labels.iter().filter(|&&l| l == c).count(), 10);
    }
}

#[test]
fn a_linear_model_learns_it_far_above_chance() {
    let dir = tempfile::tempdir().unwrap();
    write_synthetic_mnist(dir.path(), 1100, 300, 9).unwrap();
    let data = Dataset::load(
        dir.path(),
        &LoadOptions {
            val_size: Some(100),
            seed: 3,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(data.num_classes, 10);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = nn::linear(vs.root(), (SIDE * SIDE) as i64, 10, Default::default());
    let mut opt = nn::Adam::default().build(&vs, 1e-2).unwrap();
    let x = data.train.images.flatten(1, -1);
    for _ in 0..60 {
        let loss = net.forward(&x).cross_entropy_for_logits(&data.train.labels);
        opt.backward_step(&loss);
    }
    let pred = net
        .forward(&data.test.images.flatten(1, -1))
        .argmax(1, false);
    let acc = pred
        .eq_tensor(&data.test.labels)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[]);
    assert!(acc > 0.9, "test accuracy {acc}");
}
