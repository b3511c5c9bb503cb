//! Image-folder data sets end to end: `trainerd train` on generated
//! `train/<class>/*.png|jpg` folders (gray and RGB, two sizes, with and
//! without `test/`), and every kind of bad input an exit 65 naming the file.

mod common;

use std::fs;
use std::path::Path;

use common::synth_folders::{write_synthetic_folders, FolderSpec};
use common::{run, stderr};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn spec(rgb: bool, side: u32, ext: &str, n_test: usize) -> FolderSpec<'_> {
    FolderSpec {
        n_train: 600,
        n_test,
        seed: 3,
        rgb,
        side,
        ext,
    }
}

fn card(state: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(state.join("best/model.json")).unwrap()).unwrap()
}

/// Default ladder validated for the input (every rung must build for it), one short trial.
fn train(data: &Path, state: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--data-dir",
        s(data),
        "--state-dir",
        s(state),
        "--preset",
        "linear",
        "--epochs",
        "3",
        "--max-trials",
        "1",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn gray_png_and_rgb_jpeg_folders_train_to_a_modest_target() {
    let cases = [
        (false, 28, "png", 100, [1, 28, 28], &[][..]),
        (true, 32, "jpg", 0, [3, 32, 32], &[][..]),
        (
            true,
            32,
            "png",
            100,
            [3, 20, 20],
            &["--image-size", "20x20"][..],
        ),
    ];
    for (rgb, side, ext, n_test, shape, extra) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        write_synthetic_folders(&data, &spec(rgb, side, ext, n_test)).unwrap();
        let state = tmp.path().join("state");
        let out = train(&data, &state, extra);
        let what = format!("{rgb} {side} {ext} {extra:?}");
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        let c = card(&state);
        assert_eq!(c["input_shape"], serde_json::json!(shape), "{what}");
        assert_eq!(c["classes"], 10, "{what}");
        let mut names = common::synth_folders::CLASS_NAMES.to_vec();
        names.sort();
        assert_eq!(c["class_names"], serde_json::json!(names), "{what}");
        let report = fs::read_to_string(state.join("best/report.html")).unwrap();
        for name in names {
            assert!(
                report.contains(&format!(">{name}<")),
                "{what}: {name} not in the report"
            );
        }
        let acc = c["test_accuracy"].as_f64().unwrap();
        assert!(acc >= 0.8, "{what}: test accuracy {acc}");
        assert!(
            !data.join("train-images-idx3-ubyte.gz").exists(),
            "no MNIST download into an image-folder dir"
        );
    }
}

#[test]
fn forcing_idx_on_folders_names_the_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_synthetic_folders(&data, &spec(false, 28, "png", 0)).unwrap();
    let out = train(&data, &tmp.path().join("state"), &["--data-format", "idx"]);
    // The (refused) MNIST download is what IDX does for a dir without IDX files.
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("MNIST layout"), "{}", stderr(&out));
    let out = train(&data, &tmp.path().join("state"), &["--data-format", "csv"]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("data_format"), "{}", stderr(&out));
}

/// Writes a good set, breaks it with `breaks`, and expects exit 65 naming `named`.
fn expect_data_error(breaks: impl Fn(&Path), named: &str, extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut small = spec(false, 28, "png", 0);
    small.n_train = 100;
    write_synthetic_folders(&data, &small).unwrap();
    breaks(&data);
    let out = train(&data, &tmp.path().join("state"), extra);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(65), "{named}: {err}");
    let line = err.lines().rfind(|l| l.contains("error")).unwrap_or("");
    assert!(line.contains(named), "{named} not named in: {line}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_image_folders_exit_65_naming_the_file() {
    let first = |d: &Path| d.join("train/apple/00001.png");
    expect_data_error(
        |d| {
            let p = d
                .join("train/apple")
                .read_dir()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            let bytes = fs::read(&p).unwrap();
            fs::write(first(d), &bytes[..bytes.len() / 2]).unwrap();
        },
        "train/apple/00001.png",
        &[],
    );
    expect_data_error(
        |d| fs::write(d.join("train/moon/junk.jpg"), b"not a jpeg").unwrap(),
        "train/moon/junk.jpg",
        &[],
    );
    expect_data_error(
        |d| {
            image::GrayImage::new(30, 30)
                .save(d.join("train/kite/big.png"))
                .unwrap()
        },
        "train/kite/big.png",
        &[],
    );
    expect_data_error(
        |d| fs::create_dir(d.join("train/empty")).unwrap(),
        "train/empty",
        &[],
    );
    expect_data_error(
        |d| {
            fs::create_dir_all(d.join("test/ghost")).unwrap();
            image::GrayImage::new(28, 28)
                .save(d.join("test/ghost/1.png"))
                .unwrap();
        },
        "test/ghost",
        &[],
    );
    expect_data_error(
        |d| {
            fs::create_dir_all(d.join("train/fern/deeper")).unwrap();
            image::GrayImage::new(28, 28)
                .save(d.join("train/fern/deeper/1.png"))
                .unwrap();
        },
        "train/fern/deeper",
        &[],
    );
    expect_data_error(|_| {}, "memory budget", &["--memory-budget", "64K"]);
}

#[test]
fn the_default_cnn_preset_trains_on_rgb_32x32() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut small = spec(true, 32, "png", 50);
    small.n_train = 200;
    write_synthetic_folders(&data, &small).unwrap();
    let state = tmp.path().join("state");
    let out = run(&[
        "train",
        "--data-dir",
        s(&data),
        "--state-dir",
        s(&state),
        "--epochs",
        "1",
        "--max-trials",
        "1",
    ]);
    // 0: target reached, 2: below it; either way a CNN trained on 3x32x32.
    assert!(matches!(out.status.code(), Some(0 | 2)), "{}", stderr(&out));
    let c = card(&state);
    assert_eq!(c["preset"], "fast");
    assert_eq!(c["input_shape"], serde_json::json!([3, 32, 32]));
}
