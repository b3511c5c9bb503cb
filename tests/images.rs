//! Image-folder data sets end to end: `trainerd train` on generated
//! `train/<class>/*.png|jpg` folders (gray and RGB, two sizes, with and
//! without `test/`), and every kind of bad input an exit 65 naming the file.

mod common;

use std::fs;
use std::path::Path;

use common::synth_folders::{write_synthetic_folders, FolderSpec};
use common::{run, s, stderr, venv_python};

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
        // Modest: certifiable by its 95% lower bound on the default split.
        "--target-accuracy",
        "0.8",
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

/// The mean of each channel's `pixel/255` over every image under `dir/train`.
fn folder_channel_means(dir: &Path) -> [f64; 3] {
    let (mut sum, mut n) = ([0f64; 3], 0f64);
    for class in fs::read_dir(dir.join("train")).unwrap() {
        for file in fs::read_dir(class.unwrap().path()).unwrap() {
            let img = image::open(file.unwrap().path()).unwrap().to_rgb8();
            for p in img.pixels() {
                for c in 0..3 {
                    sum[c] += f64::from(p[c]) / 255.0;
                }
                n += 1.0;
            }
        }
    }
    sum.map(|s| s / n)
}

/// `files` as trainerd decodes them for an RGB model: channels-first bytes, one after another.
fn raw_chw(files: &[std::path::PathBuf]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in files {
        let img = image::open(f).unwrap().to_rgb8();
        for c in 0..3 {
            out.extend(img.pixels().map(|p| p[c]));
        }
    }
    out
}

fn predict(state: &Path, files: &[std::path::PathBuf], extra: &[&str]) -> std::process::Output {
    let mut args = vec!["predict", "--state-dir", s(state)];
    args.extend_from_slice(extra);
    args.extend(files.iter().map(|f| s(f)));
    run(&args)
}

#[test]
fn an_rgb_model_keeps_its_normalisation_and_class_names_in_predict_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_synthetic_folders(&data, &spec(true, 20, "png", 100)).unwrap();
    let state = tmp.path().join("state");
    let out = train(&data, &state, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // model.json: one mean and std per channel, from the training images.
    let c = card(&state);
    let norm = &c["normalisation"];
    let (mean, std) = (
        norm["mean"].as_array().unwrap(),
        norm["std"].as_array().unwrap(),
    );
    assert_eq!((mean.len(), std.len()), (3, 3), "{norm}");
    let all_train = folder_channel_means(&data);
    for ch in 0..3 {
        let m = mean[ch].as_f64().unwrap();
        assert!(
            (m - 0.1307).abs() > 0.005,
            "channel {ch}: {m} is MNIST's mean"
        );
        assert!((std[ch].as_f64().unwrap() - 0.3081).abs() > 0.001, "{norm}");
        // Validation is a tenth of train/ and left out, so close, not equal.
        assert!(
            (m - all_train[ch]).abs() < 0.02,
            "channel {ch}: {m} vs {all_train:?}"
        );
    }
    assert_ne!(mean[0], mean[1], "the channels have their own statistics");

    // predict: PNGs of the model's size, each with its class name.
    let names: Vec<String> = serde_json::from_value(c["class_names"].clone()).unwrap();
    let mut files = Vec::new();
    for name in &names {
        let dir = data.join("test").join(name);
        let mut in_class: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        in_class.sort();
        files.extend(in_class.into_iter().take(3));
    }
    let json_out = predict(&state, &files, &["--json", "--logits"]);
    assert_eq!(json_out.status.code(), Some(0), "{}", stderr(&json_out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json_out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), files.len());
    let mut right = 0;
    for (p, file) in lines.iter().zip(&files) {
        let label = p["label"].as_u64().unwrap() as usize;
        assert_eq!(p["class"], names[label].as_str(), "{p}");
        let folder = file
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        right += usize::from(p["class"] == folder);
    }
    assert!(
        right * 10 >= files.len() * 7,
        "{right} of {} right",
        files.len()
    );
    let table = predict(&state, &files[..1], &[]);
    let first = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        first
            .trim_end()
            .ends_with(lines[0]["class"].as_str().unwrap()),
        "{first}"
    );

    // A gray image of the right size is copied into the three channels; a wrong size is refused.
    let gray = tmp.path().join("gray.png");
    image::GrayImage::new(20, 20).save(&gray).unwrap();
    assert_eq!(predict(&state, &[gray], &[]).status.code(), Some(0));
    let big = tmp.path().join("big.jpg");
    image::RgbImage::new(24, 20).save(&big).unwrap();
    let out = predict(&state, &[big], &[]);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("big.jpg") && err.contains("20x20"), "{err}");

    // The exports: onnxruntime and TorchScript agree with predict on these
    // images, and carry the per-channel normalisation and the class names.
    let raw = tmp.path().join("images.u8");
    fs::write(&raw, raw_chw(&files)).unwrap();
    let preds = tmp.path().join("predictions.jsonl");
    fs::write(&preds, &json_out.stdout).unwrap();
    let python = venv_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_onnx.py");
    let best = state.join("best");
    let check = std::process::Command::new(&python)
        .arg(&script)
        .args([s(&best), s(&raw), "-", s(&preds)])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup-interop.sh)", python.display()));
    assert!(
        check.status.success(),
        "interop check failed:\n{}",
        stderr(&check)
    );
    eprintln!("rgb: {}", String::from_utf8_lossy(&check.stdout).trim());

    // Served: the class names in the metadata, predict's labels for the same bytes.
    let srv = common::serve::Serve::ready(&state, &tmp.path().join("serve.log"), &[]);
    let (status, body) = common::serve::call(srv.addr, "GET", "/v2/models/trainerd", b"");
    assert_eq!(status, 200, "{body}");
    let meta = common::serve::json(&body);
    assert_eq!(
        meta["inputs"][0]["shape"],
        serde_json::json!([-1, 3, 20, 20])
    );
    assert_eq!(
        meta["parameters"]["class_names"],
        serde_json::to_string(&names).unwrap()
    );
    let pixels: Vec<u64> = raw_chw(&files).into_iter().map(u64::from).collect();
    let req = serde_json::json!({"inputs": [{"name": "pixels", "datatype": "UINT8",
        "shape": [files.len(), 3 * 20 * 20], "data": pixels}]});
    let (status, body) = common::serve::call(
        srv.addr,
        "POST",
        "/v2/models/trainerd/infer",
        &serde_json::to_vec(&req).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let want: Vec<i64> = lines.iter().map(|p| p["label"].as_i64().unwrap()).collect();
    assert_eq!(common::serve::labels_of(&body).0, want);
}

/// `presets --data-dir` reads the set as `train` does and shows what every
/// preset builds for it: its input, its class names, and more parameters
/// than for MNIST's 1×28×28 (the first layer sees 3 channels of 32×32).
#[test]
fn presets_show_what_each_builds_for_an_rgb_folder_set() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut small = spec(true, 32, "png", 20);
    small.n_train = 60;
    write_synthetic_folders(&data, &small).unwrap();
    let json = |extra: &[&str]| {
        let mut args = vec!["presets", "--json"];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let rgb = json(&["--data-dir", s(&data)]);
    assert_eq!(rgb["input"]["shape"], serde_json::json!([3, 32, 32]));
    let names = rgb["input"]["class_names"].as_array().unwrap();
    assert!(names.len() >= 2 && names.iter().all(|n| n.is_string()));
    let mnist = json(&[]);
    let presets = rgb["presets"].as_array().unwrap();
    assert_eq!(presets.len(), mnist.as_array().unwrap().len());
    for (built, spec) in presets.iter().zip(mnist.as_array().unwrap()) {
        assert_eq!(&built["spec"], spec);
        let p = built["parameters"].as_u64().unwrap();
        let linear_mnist = 28 * 28 * 10 + 10;
        assert!(p > linear_mnist, "{}: {p}", spec["preset"]);
    }
    let text = run(&["presets", "--data-dir", s(&data)]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("3×32×32"), "{text}");
    assert!(text.contains(names[0].as_str().unwrap()), "{text}");
    // A bad set is the loader's exit 65, naming the file.
    fs::write(
        data.join("train")
            .join(names[0].as_str().unwrap())
            .join("bad.png"),
        b"nope",
    )
    .unwrap();
    let out = run(&["presets", "--data-dir", s(&data)]);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad.png"), "{}", stderr(&out));
}
