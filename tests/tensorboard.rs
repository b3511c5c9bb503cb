//! TensorBoard event files of a real run, read back with TensorBoard's own
//! reader (tests/interop/check_tensorboard.py): every tag of the trial,
//! steps strictly increasing, the test accuracy at the trial's last step;
//! and `--tensorboard off` writes none.

mod common;

use common::*;
use std::path::Path;

const TAGS: [&str; 5] = [
    "train/loss",
    "train/learning_rate",
    "val/accuracy",
    "train/samples_per_second",
    "test/accuracy",
];

fn read_back(root: &Path) -> serde_json::Value {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_tensorboard.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(root)
        .args(TAGS)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup-interop.sh)", python.display()));
    assert!(
        out.status.success(),
        "TensorBoard's reader failed (scripts/setup-interop.sh installs tensorboard): {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tensorboard_reads_every_tag_and_step() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 600, 200);
    let state = tmp.path().join("state");
    let mut args = one_quick_trial(
        "train",
        data.to_str().unwrap(),
        state.to_str().unwrap(),
        "linear",
    );
    let epochs = args.iter().position(|a| *a == "--epochs").unwrap() + 1;
    args[epochs] = "3";
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "train: {}", stderr(&out));

    let seen = read_back(&state.join("tensorboard"));
    let trials = seen.as_object().unwrap();
    assert_eq!(trials.len(), 1, "one trial: {seen}");
    let (folder, steps) = trials.iter().next().unwrap();
    assert!(folder.ends_with("0000"), "{folder}");
    let val: Vec<i64> = serde_json::from_value(steps["val/accuracy"].clone()).unwrap();
    assert_eq!(val.len(), 3, "one validation point an epoch: {val:?}");
    let test: Vec<i64> = serde_json::from_value(steps["test/accuracy"].clone()).unwrap();
    assert_eq!(
        test,
        vec![*val.last().unwrap()],
        "test accuracy at the last step"
    );

    let quiet = tmp.path().join("quiet");
    let mut off = one_quick_trial(
        "train",
        data.to_str().unwrap(),
        quiet.to_str().unwrap(),
        "linear",
    );
    off.extend(["--tensorboard", "off"]);
    let out = run(&off);
    assert_eq!(out.status.code(), Some(0), "train: {}", stderr(&out));
    assert!(
        !quiet.join("tensorboard").exists(),
        "--tensorboard off wrote event files"
    );
}
