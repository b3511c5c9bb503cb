//! Tests of `validate`.

use super::*;
use crate::model::{preset, PRESET_NAMES};

const MNIST: InputShape = InputShape {
    channels: 1,
    height: 28,
    width: 28,
    classes: 10,
};

fn fast() -> TrialSpec {
    preset("fast").unwrap()
}

fn blocks(spec: &mut TrialSpec) -> &mut Vec<ConvBlock> {
    match &mut spec.arch {
        ArchSpec::Cnn { blocks, .. } => blocks,
        ArchSpec::Mlp { .. } => panic!("not a CNN"),
    }
}

#[test]
fn every_preset_is_valid_for_mnist() {
    for (name, _) in PRESET_NAMES {
        let spec = preset(name).unwrap();
        let fp = spec
            .validate_for(MNIST)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(fp.parameters > 0, "{name}");
    }
}

#[test]
fn parameter_count_matches_the_built_model() {
    for (name, _) in PRESET_NAMES {
        let spec = preset(name).unwrap();
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _net = crate::model::build(&vs.root(), &spec.arch, MNIST);
        let built = crate::model::parameter_count(&vs) as u64;
        assert_eq!(
            spec.arch.footprint(MNIST).unwrap().parameters,
            built,
            "{name}"
        );
    }
}

#[test]
fn out_of_range_values_name_their_key() {
    type Mutation = Box<dyn Fn(&mut TrialSpec)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|s| blocks(s)[2].kernel = 99),
            "arch.blocks[2].kernel",
        ),
        (
            Box::new(|s| blocks(s)[1].kernel = 0),
            "arch.blocks[1].kernel",
        ),
        (
            Box::new(|s| blocks(s)[0].padding = Some(-1)),
            "arch.blocks[0].padding",
        ),
        (
            Box::new(|s| blocks(s)[0].padding = Some(1 << 40)),
            "arch.blocks[0].padding",
        ),
        (
            Box::new(|s| blocks(s)[0].dropout = 2.0),
            "arch.blocks[0].dropout",
        ),
        (
            Box::new(|s| blocks(s)[0].dropout = f64::NAN),
            "arch.blocks[0].dropout",
        ),
        (
            Box::new(|s| blocks(s)[0].channels = 1_000_000),
            "arch.blocks[0].channels",
        ),
        (Box::new(|s| blocks(s)[0].convs = 0), "arch.blocks[0].convs"),
        (
            Box::new(|s| s.recipe.label_smoothing = 3.0),
            "recipe.label_smoothing",
        ),
        (Box::new(|s| s.recipe.batch_size = 0), "recipe.batch_size"),
        (Box::new(|s| s.recipe.epochs = 0), "recipe.epochs"),
        (
            Box::new(|s| s.recipe.augment_shift = -1),
            "recipe.augment_shift",
        ),
        (
            Box::new(|s| s.recipe.optimizer = s.recipe.optimizer.with_lr(-1.0)),
            "recipe.optimizer.lr",
        ),
        (
            Box::new(|s| s.recipe.optimizer = s.recipe.optimizer.with_lr(f64::INFINITY)),
            "recipe.optimizer.lr",
        ),
        (
            Box::new(|s| {
                s.recipe.schedule = ScheduleSpec::Step {
                    every_epochs: 0,
                    gamma: 0.5,
                }
            }),
            "recipe.schedule.every_epochs",
        ),
        (
            Box::new(|s| {
                s.arch = ArchSpec::Mlp {
                    hidden: vec![100_000_000],
                    dropout: 0.0,
                }
            }),
            "arch.hidden[0]",
        ),
        (
            Box::new(|s| {
                s.arch = ArchSpec::Mlp {
                    hidden: vec![64],
                    dropout: 1.0,
                }
            }),
            "arch.dropout",
        ),
    ];
    for (mutate, key) in cases {
        let mut spec = fast();
        mutate(&mut spec);
        let e = spec.validate_for(MNIST).unwrap_err();
        assert_eq!(e.key, key, "{e}");
    }
}

#[test]
fn the_walk_tracks_the_feature_map() {
    // 28 -> pool 14 -> pool 7 -> pool 3: a 5x5 kernel in block 3 fits 7x7, not 3x3.
    let mut spec = fast();
    let first = blocks(&mut spec)[0].clone();
    blocks(&mut spec).push(ConvBlock { kernel: 5, ..first });
    let e = spec.validate_for(MNIST).unwrap_err();
    assert_eq!(e.key, "arch.blocks[3].kernel", "{e}");
    assert!(e.what.contains("3x3"), "{e}");
    // Within range statically, but the map is 1x1 by the fifth pool.
    let mut spec = fast();
    for _ in 0..2 {
        let first = blocks(&mut spec)[0].clone();
        blocks(&mut spec).push(ConvBlock { kernel: 1, ..first });
    }
    let e = spec.validate_for(MNIST).unwrap_err();
    assert_eq!(e.key, "arch.blocks[4].pool", "{e}");
}

#[test]
fn models_too_large_to_train_are_refused() {
    let mut spec = fast();
    spec.arch = ArchSpec::Mlp {
        hidden: vec![65_536, 65_536],
        dropout: 0.0,
    };
    let e = spec.validate_for(MNIST).unwrap_err();
    assert_eq!(e.key, "arch.hidden[1]", "{e}");
    assert!(e.what.contains("parameters"), "{e}");
    let mut spec = fast();
    for b in blocks(&mut spec) {
        b.channels = 4096;
        b.pool = false;
    }
    spec.recipe.batch_size = 65_536;
    let e = spec.validate_for(MNIST).unwrap_err();
    assert!(
        e.key.starts_with("arch.blocks") || e.key == "recipe.batch_size",
        "{e}"
    );
}

#[test]
fn an_impossible_input_is_refused() {
    for (c, h, w, k) in [
        (0, 28, 28, 10),
        (1, -3, 28, 10),
        (1, 28, 28, 0),
        (1, 1 << 40, 1, 10),
    ] {
        let input = InputShape {
            channels: c,
            height: h,
            width: w,
            classes: k,
        };
        let e = fast().validate_for(input).unwrap_err();
        assert!(e.key.starts_with("input."), "{e}");
    }
}

#[test]
fn a_shift_of_half_the_image_is_refused() {
    let mut spec = fast();
    spec.recipe.augment_shift = 14;
    assert_eq!(
        spec.validate_for(MNIST).unwrap_err().key,
        "recipe.augment_shift"
    );
    spec.recipe.augment_shift = 13;
    spec.validate_for(MNIST).unwrap();
}
