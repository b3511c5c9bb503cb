//! Tests of `dataset` on data it refuses: each error names the file, the
//! record or the option at fault, with its exit code.

use super::*;
use crate::exit::ExitStatus;

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
    write_labels(d.path(), "train-labels-idx1-ubyte", &[0; 9]);
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
    write_labels(d.path(), "t10k-labels-idx1-ubyte", &[0, 1, 2, 7, 1]);
    let e = load_err(d.path(), opts(1, 0)).to_string();
    assert!(
        e.contains("t10k-labels-idx1-ubyte: label 7 at record 3"),
        "{e}"
    );
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
