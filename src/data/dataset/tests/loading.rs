//! Tests of `dataset` on data it accepts: split sizes and seeds,
//! normalisation, the fingerprint, batches, and the real MNIST copy.

use super::*;
use crate::data::in_memory::batch;
use crate::data::layout::Part;
use crate::data::synth::write_synthetic_mnist;
use std::collections::HashSet;

#[test]
fn split_sizes_disjoint_and_complete() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 100, 30, 10);
    let ds = Dataset::load(d.path(), &opts(25, 1)).unwrap();
    assert_eq!((ds.train.len(), ds.val.len(), ds.test.len()), (75, 25, 30));
    assert_eq!(ds.train.images.size(), [75, 1, 2, 2]);
    assert_eq!(ds.train.images.kind(), Kind::Float);
    assert_eq!(ds.train.labels.kind(), Kind::Int64);
    assert_eq!(ds.image_shape(), [1, 2, 2]);
    assert_eq!(ds.num_classes, 10);
    let tr = record_ids(&ds.train, ds.normalisation);
    let va = record_ids(&ds.val, ds.normalisation);
    let all: HashSet<i64> = tr.iter().chain(&va).copied().collect();
    assert_eq!(all, (0..100).collect::<HashSet<_>>());
    // Labels travel with their images.
    let labels = Vec::<i64>::try_from(&ds.val.labels).unwrap();
    for (id, l) in va.iter().zip(labels) {
        assert_eq!(id % 10, l);
    }
    assert_eq!(
        record_ids(&ds.test, ds.normalisation),
        (0..30).collect::<Vec<_>>()
    );
}

#[test]
fn split_is_determined_by_seed() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 100, 10, 10);
    let ids = |seed| {
        let ds = Dataset::load(d.path(), &opts(20, seed)).unwrap();
        record_ids(&ds.val, ds.normalisation)
    };
    assert_eq!(ids(7), ids(7));
    assert_ne!(ids(7), ids(8));
}

#[test]
fn normalisation_is_over_the_training_split() {
    let d = tempfile::tempdir().unwrap();
    write_synthetic_mnist(d.path(), 300, 50, 4).unwrap();
    let ds = Dataset::load(d.path(), &opts(50, 2)).unwrap();
    let mean = ds.train.images.mean(Kind::Double).double_value(&[]);
    let std = ds.train.images.std(false).double_value(&[]);
    assert!(mean.abs() < 1e-4, "mean {mean}");
    assert!((std - 1.0).abs() < 1e-4, "std {std}");
    // ... and the validation split is not what was normalised.
    let vmean = ds.val.images.mean(Kind::Double).double_value(&[]);
    assert!(vmean.abs() > 1e-6);
}

#[test]
fn constant_images_do_not_divide_by_zero() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    write_idx(
        &p.join("train-images-idx3-ubyte"),
        &[4, 1, 1],
        &[0; 4],
        false,
    )
    .unwrap();
    write_idx(
        &p.join("train-labels-idx1-ubyte"),
        &[4],
        &[0, 1, 0, 1],
        false,
    )
    .unwrap();
    write_idx(&p.join("t10k-images-idx3-ubyte"), &[1, 1, 1], &[0], false).unwrap();
    write_idx(&p.join("t10k-labels-idx1-ubyte"), &[1], &[1], false).unwrap();
    let ds = Dataset::load(p, &opts(1, 0)).unwrap();
    assert_eq!(ds.normalisation, Normalisation::uniform(0.0, 1.0));
    assert_eq!(ds.num_classes, 2);
}

#[test]
fn fingerprint_is_stable_and_ignores_compression() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_synthetic_mnist(a.path(), 40, 10, 1).unwrap();
    // The same content, decompressed and with the dot spelling.
    for part in Part::ALL {
        let src = a.path().join(format!("{}.gz", part.file_name()));
        let bytes = idx::read(&src, idx::MAX_FILE_BYTES)
            .unwrap()
            .bytes()
            .to_vec();
        let name = part.file_name().replacen("-idx", ".idx", 1);
        std::fs::write(b.path().join(name), bytes).unwrap();
    }
    let fa = Dataset::load(a.path(), &opts(5, 1)).unwrap().fingerprint;
    let fa2 = Dataset::load(a.path(), &opts(9, 2)).unwrap().fingerprint;
    let fb = Dataset::load(b.path(), &opts(5, 1)).unwrap().fingerprint;
    assert_eq!(fa.len(), 64);
    assert_eq!(fa, fa2);
    assert_eq!(fa, fb);
    let c = tempfile::tempdir().unwrap();
    write_synthetic_mnist(c.path(), 40, 10, 2).unwrap();
    assert_ne!(
        fa,
        Dataset::load(c.path(), &opts(5, 1)).unwrap().fingerprint
    );
}

#[test]
fn idx_of_any_size_loads_with_numbered_class_names() {
    let d = tempfile::tempdir().unwrap();
    let (n, m) = (12, 6);
    let labels = |n: usize| (0..n).map(|i| (i % 3) as u8).collect::<Vec<_>>();
    let files: [(&str, Vec<usize>, Vec<u8>); 4] = [
        ("train-images-idx3-ubyte", vec![n, 3, 5], vec![9; n * 15]),
        ("train-labels-idx1-ubyte", vec![n], labels(n)),
        ("t10k-images-idx3-ubyte", vec![m, 3, 5], vec![9; m * 15]),
        ("t10k-labels-idx1-ubyte", vec![m], labels(m)),
    ];
    for (name, dims, data) in files {
        write_idx(&d.path().join(name), &dims, &data, false).unwrap();
    }
    let ds = Dataset::load(d.path(), &opts(3, 0)).unwrap();
    assert_eq!(ds.image_shape(), [1, 3, 5]);
    assert_eq!(ds.class_names, ["0", "1", "2"]);
}

#[test]
fn batch_selects_matching_records() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 20, 5, 10);
    let ds = Dataset::load(d.path(), &opts(2, 0)).unwrap();
    let idx = Tensor::from_slice(&[4i64, 0, 4]);
    let (x, y) = batch(&ds.test, &idx);
    assert_eq!(x.size(), [3, 1, 2, 2]);
    assert_eq!(Vec::<i64>::try_from(&y).unwrap(), [4, 0, 4]);
    let s = Split {
        images: x,
        labels: y,
    };
    assert_eq!(record_ids(&s, ds.normalisation), [4, 0, 4]);
}

/// The shared real MNIST copy: counts from its README. Skipped (loudly)
/// where that copy is absent.
#[test]
fn real_mnist_matches_its_readme() {
    let Some(dir) = crate::data::testutil::shared_mnist() else {
        eprintln!("SKIPPED: no shared MNIST copy (set TRAINERD_TEST_MNIST_DIR)");
        return;
    };
    let t = std::time::Instant::now();
    let ds = Dataset::load(&dir, &LoadOptions::default()).unwrap();
    eprintln!("loaded MNIST in {:?} (unoptimised test build)", t.elapsed());
    assert_eq!(ds.num_classes, 10);
    // The validation split's default follows from the default target
    // (split::auto_size), here more than the old flat 5,000.
    let val = crate::data::split::auto_size(60_000, 10, LoadOptions::default().target);
    assert!(val > 5000, "{val}");
    assert_eq!(
        (ds.train.len(), ds.val.len(), ds.test.len()),
        (60_000 - val, val, 10_000)
    );
    assert_eq!(ds.image_shape(), [1, 28, 28]);
    let counts = |t: &Tensor| Vec::<i64>::try_from(t.bincount::<Tensor>(None, 10)).unwrap();
    let (tr, va) = (counts(&ds.train.labels), counts(&ds.val.labels));
    let train: Vec<i64> = tr.iter().zip(&va).map(|(a, b)| a + b).collect();
    assert_eq!(
        train,
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    assert_eq!(
        counts(&ds.test.labels),
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // README: mean pixel 33.318 over all 60,000 training images; the
    // split's mean differs from that only slightly.
    assert!(
        (ds.normalisation[0] * 255.0 - 33.318).abs() < 0.3,
        "{:?}",
        ds.normalisation
    );
    assert!(
        (ds.normalisation[1] - 0.3081).abs() < 0.003,
        "{:?}",
        ds.normalisation
    );
}
