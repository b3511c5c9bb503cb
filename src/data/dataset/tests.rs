//! Tests of `dataset`.

use super::*;
use crate::data::in_memory::{batch, Split};
use crate::data::layout::Part;
use crate::data::synth::{write_idx, write_synthetic_mnist};
use crate::exit::ExitStatus;
use std::collections::HashSet;

fn opts(val_size: usize, seed: u64) -> LoadOptions {
    LoadOptions {
        val_size: Some(val_size),
        seed,
        ..Default::default()
    }
}

/// Writes a tiny raw data set: images whose every pixel equals the record
/// index (so a record's identity survives normalisation), labels `i % k`.
fn tiny(dir: &Path, n_train: usize, n_test: usize, k: u8) {
    let px = |n: usize| -> Vec<u8> { (0..n).flat_map(|i| [i as u8; 4]).collect() };
    let lb = |n: usize| -> Vec<u8> { (0..n).map(|i| i as u8 % k).collect() };
    write_idx(
        &dir.join("train-images-idx3-ubyte"),
        &[n_train, 2, 2],
        &px(n_train),
        false,
    )
    .unwrap();
    write_idx(
        &dir.join("train-labels-idx1-ubyte"),
        &[n_train],
        &lb(n_train),
        false,
    )
    .unwrap();
    write_idx(
        &dir.join("t10k-images-idx3-ubyte"),
        &[n_test, 2, 2],
        &px(n_test),
        false,
    )
    .unwrap();
    write_idx(
        &dir.join("t10k-labels-idx1-ubyte"),
        &[n_test],
        &lb(n_test),
        false,
    )
    .unwrap();
}

/// The record index behind each image of a split (undoing normalisation).
fn record_ids(s: &Split, norm: Normalisation) -> Vec<i64> {
    let first = s.images.select(1, 0).select(1, 0).select(1, 0);
    let raw = (first * norm[1] + norm[0]) * 255.0;
    Vec::<f32>::try_from(raw)
        .unwrap()
        .iter()
        .map(|v| v.round() as i64)
        .collect()
}

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

fn load_err(dir: &Path, o: LoadOptions) -> DataError {
    match Dataset::load(dir, &o) {
        Ok(_) => panic!("loaded"),
        Err(e) => e,
    }
}

#[test]
fn val_size_must_fit() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 10, 5, 3);
    // 10 records of 3 classes: at most 7 held out, one of each class stays.
    for v in [0, 8, 10, 11] {
        let e = load_err(d.path(), opts(v, 0));
        assert!(e.to_string().starts_with("val_size: "), "{e}");
        assert!(e.to_string().contains("between 1 and 7"), "{e}");
        assert_eq!(e.exit_code(), crate::exit::CONFIG);
    }
    assert!(Dataset::load(d.path(), &opts(7, 0)).is_ok());
    let auto = Dataset::load(d.path(), &LoadOptions::default()).unwrap();
    assert_eq!(
        auto.val.len(),
        5,
        "the default: five per class, at most half"
    );
}

#[test]
fn missing_files_are_named() {
    let d = tempfile::tempdir().unwrap();
    let e = load_err(d.path(), opts(1, 0));
    assert!(e.to_string().contains("holds no data set"), "{e}");
    assert_eq!(e.exit_code(), crate::exit::DATA);
    tiny(d.path(), 10, 5, 3);
    std::fs::remove_file(d.path().join("t10k-labels-idx1-ubyte")).unwrap();
    let e = load_err(d.path(), opts(1, 0)).to_string();
    assert!(
        e.contains("incomplete: missing t10k-labels-idx1-ubyte[.gz]"),
        "{e}"
    );
    let e = load_err(&d.path().join("nope"), opts(1, 0)).to_string();
    assert!(e.contains("does not exist"), "{e}");
}

#[test]
fn image_and_label_counts_must_agree() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 10, 5, 3);
    write_idx(
        &d.path().join("train-labels-idx1-ubyte"),
        &[9],
        &[0; 9],
        false,
    )
    .unwrap();
    let e = load_err(d.path(), opts(1, 0)).to_string();
    assert!(
        e.contains("train-labels-idx1-ubyte: holds 9 labels but"),
        "{e}"
    );
    assert!(e.contains("holds 10 images"), "{e}");
}

#[test]
fn test_labels_must_be_training_classes() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 10, 5, 3);
    write_idx(
        &d.path().join("t10k-labels-idx1-ubyte"),
        &[5],
        &[0, 1, 2, 7, 1],
        false,
    )
    .unwrap();
    let e = load_err(d.path(), opts(1, 0)).to_string();
    assert!(
        e.contains("t10k-labels-idx1-ubyte: label 7 at record 3"),
        "{e}"
    );
}

fn write_labels(dir: &Path, name: &str, labels: &[u8]) {
    write_idx(&dir.join(name), &[labels.len()], labels, false).unwrap();
}

#[test]
fn a_stray_label_is_named_not_turned_into_classes() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 20, 5, 10);
    let mut labels: Vec<u8> = (0..20).map(|i| i % 10).collect();
    labels[13] = 255;
    write_labels(d.path(), "train-labels-idx1-ubyte", &labels);
    let e = load_err(d.path(), opts(2, 0));
    assert_eq!(e.exit_code(), crate::exit::DATA);
    let msg = e.to_string();
    assert!(
        msg.contains("train-labels-idx1-ubyte: label 255 at record 13"),
        "{msg}"
    );
    assert!(msg.contains("classes 10..=254 are empty"), "{msg}");
    assert!(msg.contains("--classes K"), "{msg}");
    // One missing class in the middle.
    let labels: Vec<u8> = (0..20).map(|i| [0, 1, 3][i % 3]).collect();
    write_labels(d.path(), "train-labels-idx1-ubyte", &labels);
    let msg = load_err(d.path(), opts(2, 0)).to_string();
    assert!(msg.contains("label 3 at record 2"), "{msg}");
    assert!(msg.contains("class 2 is empty"), "{msg}");
    // A single class.
    write_labels(d.path(), "train-labels-idx1-ubyte", &[0; 20]);
    let msg = load_err(d.path(), opts(2, 0)).to_string();
    assert!(msg.contains("holds only label 0"), "{msg}");
}

#[test]
fn classes_declared_allow_absent_classes_and_bound_every_label() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 20, 5, 3);
    let with = |k| LoadOptions {
        classes: Some(k),
        ..opts(2, 0)
    };
    let ds = Dataset::load(d.path(), &with(10)).unwrap();
    assert_eq!(ds.num_classes, 10);
    let msg = load_err(d.path(), with(2)).to_string();
    assert!(
            msg.contains("train-labels-idx1-ubyte: label 2 at record 2 is outside the classes 0..=1 that --classes 2 declares"),
            "{msg}"
        );
    write_labels(d.path(), "t10k-labels-idx1-ubyte", &[0, 1, 2, 9, 0]);
    let msg = load_err(d.path(), with(5)).to_string();
    assert!(
        msg.contains("t10k-labels-idx1-ubyte: label 9 at record 3"),
        "{msg}"
    );
    assert!(check_classes_option(1).is_err() && check_classes_option(257).is_err());
    assert_eq!(check_classes_option(256), Ok(256));
}

#[test]
fn data_over_the_memory_budget_is_refused_before_it_is_read() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 100, 30, 10);
    // Its header says 10^6 images; the data is not there, and is never looked for.
    let p = d.path().join("train-images-idx3-ubyte");
    write_idx(&p, &[1_000_000, 2, 2], &[0; 8], false).unwrap();
    write_labels(d.path(), "train-labels-idx1-ubyte", &vec![0; 1_000_000]);
    let e = load_err(
        d.path(),
        LoadOptions {
            memory_budget: 8 << 20,
            ..opts(2, 0)
        },
    );
    assert_eq!(e.exit_code(), crate::exit::DATA);
    let msg = e.to_string();
    assert!(msg.starts_with(&p.display().to_string()), "{msg}");
    assert!(msg.contains("1000000×2×2 images"), "{msg}");
    assert!(msg.contains("memory budget of 8.0 MiB"), "{msg}");
    // Within the budget, the same file is read and found truncated.
    let msg = load_err(d.path(), opts(2, 0)).to_string();
    assert!(msg.contains("is truncated"), "{msg}");
}

#[test]
fn memory_cost_counts_the_tensors() {
    let h = |dims: &[usize]| Header {
        dims: dims.to_vec(),
        bytes: Vec::new(),
        body_len: dims.iter().product::<usize>() as u64,
    };
    let cost = memory_cost(&h(&[600, 28, 28]), &h(&[100, 28, 28]));
    let pixels = 700 * 784;
    assert_eq!(cost, pixels * 6 + 600 * 32 * 32 * 4 + 700 * 17);
}

#[test]
fn a_directory_or_a_loop_in_place_of_a_file_is_named() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 10, 5, 3);
    let p = d.path().join("train-images-idx3-ubyte");
    std::fs::remove_file(&p).unwrap();
    std::fs::create_dir(&p).unwrap();
    let msg = load_err(d.path(), opts(1, 0)).to_string();
    assert!(
        msg.starts_with(&format!("{}: is a directory", p.display())),
        "{msg}"
    );
    std::fs::remove_dir(&p).unwrap();
    std::os::unix::fs::symlink("loop", &p).unwrap();
    std::os::unix::fs::symlink("train-images-idx3-ubyte", d.path().join("loop")).unwrap();
    let msg = load_err(d.path(), opts(1, 0)).to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot read", p.display())),
        "{msg}"
    );
    assert_eq!(msg.matches("os error").count(), 1, "{msg}");
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
fn geometry_must_agree() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 10, 5, 3);
    write_idx(
        &d.path().join("t10k-images-idx3-ubyte"),
        &[5, 4, 1],
        &[0; 20],
        false,
    )
    .unwrap();
    let e = load_err(d.path(), opts(1, 0)).to_string();
    assert!(
        e.contains("holds 4×1 images but the training images"),
        "{e}"
    );
}

#[test]
fn a_bad_file_in_the_set_names_that_file() {
    let d = tempfile::tempdir().unwrap();
    tiny(d.path(), 10, 5, 3);
    let p = d.path().join("train-images-idx3-ubyte");
    let mut b = std::fs::read(&p).unwrap();
    b.truncate(b.len() - 3);
    std::fs::write(&p, b).unwrap();
    let e = load_err(d.path(), opts(1, 0));
    assert!(e.to_string().starts_with(&p.display().to_string()), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
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
