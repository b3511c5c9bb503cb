//! The champion outside trainerd: every preset and searched architecture,
//! trained on tiny generated data, exported and checked by the real `onnx`,
//! `onnxruntime` and `torch` packages (tests/interop/check_onnx.py, in the
//! project venv: scripts/setup-interop.sh installs them); checksums that
//! catch a damaged file before `predict` uses it; `trainerd export` itself.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use trainerd::model::{ArchSpec, ConvBlock, TrialSpec};
use trainerd::pipeline::promote::ModelCard;

/// Test images: the 1,000.
const TEST_IMAGES: usize = 1000;

type Setup = Workspace;

fn setup(n_train: usize) -> Setup {
    workspace(n_train, TEST_IMAGES)
}

/// One epoch of `preset` (a name or a spec file) into `<root>/<label>/state`.
fn train(st: &Setup, label: &str, preset: &str, extra: &[&str]) -> PathBuf {
    let state = st.root.join(label).join("state");
    let mut args = one_quick_trial("train", s(&st.data), s(&state), preset);
    args.extend_from_slice(extra);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{label}: {}", stderr(&out));
    state
}

fn read_card(dir: &Path) -> ModelCard {
    serde_json::from_slice(&fs::read(dir.join("model.json")).unwrap()).unwrap()
}

fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// Runs the interop checks on the champion's files as its promotion wrote
/// them into `best/`, against trainerd's own classification of the test
/// set; `trainerd export` writes the same ONNX graph.
fn export_and_check(st: &Setup, label: &str, state: &Path) {
    let out_dir = st.root.join(label).join("export");
    let out = run(&["export", "--state-dir", s(state), "--out", s(&out_dir)]);
    assert_eq!(out.status.code(), Some(0), "{label}: {}", stderr(&out));
    let best = state.join("best");
    assert_eq!(
        fs::read(best.join("model.onnx")).unwrap(),
        fs::read(out_dir.join("model.onnx")).unwrap(),
        "{label}: export writes the promoted graph"
    );
    let images = st.data.join("t10k-images-idx3-ubyte");
    let labels = st.data.join("t10k-labels-idx1-ubyte");
    let (images, labels) = (gz_or_plain(&images), gz_or_plain(&labels));
    let preds = run(&[
        "predict",
        "--state-dir",
        s(state),
        "--json",
        "--logits",
        s(&images),
    ]);
    assert_eq!(preds.status.code(), Some(0), "{label}: {}", stderr(&preds));
    let preds_path = st.root.join(label).join("predictions.jsonl");
    fs::write(&preds_path, &preds.stdout).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_onnx.py");
    let check = Command::new(python())
        .arg(&script)
        .args([&best, &images, &labels, &preds_path])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup-interop.sh)", python().display()));
    assert!(
        check.status.success(),
        "{label}: interop check failed (scripts/setup-interop.sh installs onnx and \
         onnxruntime):\n{}",
        stderr(&check)
    );
    eprintln!("{label}: {}", String::from_utf8_lossy(&check.stdout).trim());
}

fn gz_or_plain(base: &Path) -> PathBuf {
    let gz = PathBuf::from(format!("{}.gz", base.display()));
    if gz.exists() {
        gz
    } else {
        base.to_path_buf()
    }
}

#[test]
fn small_presets_agree_with_onnxruntime_and_torchscript() {
    let st = setup(600);
    for preset in ["linear", "mlp", "fast", "bn3"] {
        let state = train(&st, preset, preset, &[]);
        export_and_check(&st, preset, &state);
    }
}

#[test]
fn large_presets_agree_with_onnxruntime_and_torchscript() {
    let st = setup(300);
    for preset in ["deep", "reference"] {
        let state = train(&st, preset, preset, &[]);
        export_and_check(&st, preset, &state);
    }
}

/// A spec the search draws (a perturbed rung), and one with the layer
/// variants no preset has: pool after the ReLU under batch norm, explicit
/// padding of a 5x5 kernel, a block without pooling, a two-layer head.
#[test]
fn searched_architectures_agree_with_onnxruntime_and_torchscript() {
    let st = setup(600);
    let base = trainerd::model::preset("fast").unwrap();
    let searched = (0..64)
        .map(|attempt| trainerd::search::strategy::perturb(&base, 1, 3, attempt))
        .find(|s| s.arch != base.arch)
        .expect("some perturbation widens the channels");
    let custom = TrialSpec {
        preset: "custom".into(),
        arch: ArchSpec::Cnn {
            blocks: vec![
                ConvBlock {
                    channels: 16,
                    kernel: 5,
                    padding: Some(1),
                    convs: 2,
                    batch_norm: true,
                    pool: true,
                    pool_first: false,
                    dropout: 0.25,
                },
                ConvBlock {
                    channels: 16,
                    kernel: 3,
                    padding: None,
                    convs: 1,
                    batch_norm: false,
                    pool: false,
                    pool_first: false,
                    dropout: 0.0,
                },
            ],
            head: vec![32, 16],
            head_dropout: 0.2,
        },
        recipe: base.recipe.clone(),
    };
    for (label, spec) in [("searched", searched), ("custom", custom)] {
        let file = st.root.join(format!("{label}.json"));
        fs::write(&file, serde_json::to_vec(&spec).unwrap()).unwrap();
        let state = train(&st, label, s(&file), &[]);
        export_and_check(&st, label, &state);
    }
}

fn predict(state: &Path, image: &Path) -> std::process::Output {
    run(&["predict", "--state-dir", s(state), s(image)])
}

#[test]
fn a_promotion_lists_its_weights_so_a_flipped_byte_is_refused() {
    let st = setup(300);
    let state = train(&st, "promoted", "linear", &[]);
    let card = read_card(&state.join("best"));
    let listed: Vec<&str> = card.files.iter().map(|f| f.path.as_str()).collect();
    assert!(listed.contains(&"model.safetensors"), "{listed:?}");
    let image = gz_or_plain(&st.data.join("t10k-images-idx3-ubyte"));
    let weights = state.join("best/model.safetensors");
    let mut bytes = fs::read(&weights).unwrap();
    let mid = bytes.len() - 8;
    bytes[mid] ^= 0x40;
    fs::write(&weights, &bytes).unwrap();
    let bad = predict(&state, &image);
    assert_eq!(bad.status.code(), Some(65), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("model.safetensors"),
        "{}",
        stderr(&bad)
    );
    assert!(bad.stdout.is_empty(), "no prediction from damaged weights");
}

#[test]
fn predict_and_export_refuse_a_damaged_champion_naming_the_file() {
    let st = setup(300);
    let state = train(&st, "linear", "linear", &[]);
    let card = read_card(&state.join("best"));
    let listed: Vec<&str> = card.files.iter().map(|f| f.path.as_str()).collect();
    for want in [
        "model.safetensors",
        "model.onnx",
        "model.pt",
        "repository/trainerd/config.pbtxt",
        "repository/trainerd/1/model.onnx",
        "README.md",
    ] {
        assert!(listed.contains(&want), "{want} not in {listed:?}");
    }
    let image = gz_or_plain(&st.data.join("t10k-images-idx3-ubyte"));
    let good = predict(&state, &image);
    assert_eq!(good.status.code(), Some(0), "{}", stderr(&good));

    let weights = state.join("best/model.safetensors");
    let original = fs::read(&weights).unwrap();
    let mut flipped = original.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    fs::write(&weights, &flipped).unwrap();
    let bad = predict(&state, &image);
    assert_eq!(bad.status.code(), Some(65), "{}", stderr(&bad));
    let err = stderr(&bad);
    assert!(
        err.contains("model.safetensors") && err.contains("SHA-256"),
        "{err}"
    );
    assert!(bad.stdout.is_empty(), "no prediction from damaged weights");
    let export = run(&[
        "export",
        "--state-dir",
        s(&state),
        "--out",
        s(&st.root.join("x")),
    ]);
    assert_eq!(export.status.code(), Some(65), "{}", stderr(&export));
    fs::write(&weights, &original).unwrap();

    let onnx = state.join("best/model.onnx");
    let bytes = fs::read(&onnx).unwrap();
    fs::write(&onnx, &bytes[..bytes.len() / 2]).unwrap();
    let bad = predict(&state, &image);
    assert_eq!(bad.status.code(), Some(65), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("model.onnx"), "{}", stderr(&bad));
    // `status` checks the same checksums: the table and the JSON name the file.
    let status = |json: bool| {
        let mut args = vec!["status", "--state-dir", s(&state)];
        if json {
            args.push("--json");
        }
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let v: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    let damaged = v["best"]["damaged"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(damaged.contains("model.onnx"), "{v}");
    assert!(status(false).contains("DAMAGED"), "{}", status(false));
    fs::write(&onnx, &bytes).unwrap();
    assert_eq!(predict(&state, &image).status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert!(v["best"]["damaged"].is_null(), "{v}");
}

#[test]
fn export_writes_the_chosen_form_and_refuses_bad_targets() {
    let st = setup(300);
    let state = train(&st, "mlp", "mlp", &[]);
    let out_dir = st.root.join("onnx-only");
    let out = run(&[
        "export",
        "--format",
        "onnx",
        "--state-dir",
        s(&state),
        "--out",
        s(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut names: Vec<String> = fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["README.md", "model.json", "model.onnx"]);
    let card = read_card(&out_dir);
    trainerd::export::verify(&out_dir, &card).unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.lines().count(), 2, "one line per file: {printed}");
    let readme = fs::read_to_string(out_dir.join("README.md")).unwrap();
    assert!(readme.contains(&format!("value: {}", card.test_accuracy)));

    let inside = run(&[
        "export",
        "--state-dir",
        s(&state),
        "--out",
        s(&state.join("best/sub")),
    ]);
    assert_eq!(inside.status.code(), Some(64), "{}", stderr(&inside));
    let nothing = run(&[
        "export",
        "--state-dir",
        s(&st.root.join("empty")),
        "--out",
        s(&st.root.join("y")),
    ]);
    assert_eq!(nothing.status.code(), Some(66), "{}", stderr(&nothing));
    assert!(
        stderr(&nothing).contains("no champion"),
        "{}",
        stderr(&nothing)
    );
}

/// A study killed after its first checkpoint keeps the trial's checkpoints:
/// `--trial 0` exports that checkpoint, with the input contract it recorded.
#[test]
fn export_trial_takes_the_newest_checkpoint_of_an_unfinished_study() {
    let st = setup(600);
    let state = st.root.join("killed");
    let out = trainerd(&[
        "train",
        "--data-dir",
        s(&st.data),
        "--state-dir",
        s(&state),
        "--preset",
        "fast",
        "--epochs",
        "1",
        "--val-size",
        "100",
        "--batch-size",
        "64",
        "--checkpoint-every",
        "3",
    ])
    .env("TRAINERD_FAULT_ABORT", "ckpt.after_dir_fsync:1")
    .output()
    .unwrap();
    assert_ne!(
        out.status.code(),
        Some(0),
        "the run should have been killed"
    );
    let out_dir = st.root.join("trial0");
    let export = run(&[
        "export",
        "--trial",
        "0",
        "--state-dir",
        s(&state),
        "--out",
        s(&out_dir),
    ]);
    assert_eq!(export.status.code(), Some(0), "{}", stderr(&export));
    let card = read_card(&out_dir);
    assert_eq!((card.trial, card.preset.as_str()), (0, "fast"));
    assert_eq!(card.input_shape, [1, 28, 28]);
    assert!(card.normalisation[1] > 0.0);
    trainerd::export::verify(&out_dir, &card).unwrap();
    assert!(out_dir.join("model.onnx").is_file() && out_dir.join("model.pt").is_file());
    let missing = run(&[
        "export",
        "--trial",
        "9",
        "--state-dir",
        s(&state),
        "--out",
        s(&st.root.join("z")),
    ]);
    assert_eq!(missing.status.code(), Some(66), "{}", stderr(&missing));
}
