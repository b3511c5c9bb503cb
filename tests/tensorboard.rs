//! TensorBoard event files of a real run, read back with TensorBoard's own
//! reader (tests/interop/check_tensorboard.py): every tag of the trial,
//! steps strictly increasing, the test accuracy at the last step of the
//! promoted trial (measured once, on promotion);
//! `--tensorboard off` writes none; and after SIGKILLs mid-training and
//! resumes, the files still read, with no step of any tag twice.

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
    read_tags(root, &TAGS)
}

fn read_tags(root: &Path, tags: &[&str]) -> serde_json::Value {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/check_tensorboard.py");
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(root)
        .args(tags)
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
        "the promoted trial's test accuracy at its last step"
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

/// Steps of `tag` in the one trial folder `seen` holds.
fn steps(seen: &serde_json::Value, tag: &str) -> Vec<i64> {
    let trials = seen.as_object().unwrap();
    assert_eq!(trials.len(), 1, "one trial: {seen}");
    let (_, tags) = trials.iter().next().unwrap();
    serde_json::from_value(tags[tag].clone()).unwrap_or_default()
}

#[test]
fn sigkill_mid_training_then_resume_leaves_files_tensorboard_reads_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 600, 200);
    let state = tmp.path().join("state");
    let mut args = one_quick_trial("train", s(&data), s(&state), "linear");
    let epochs = args.iter().position(|a| *a == "--epochs").unwrap() + 1;
    args[epochs] = "6";
    args.extend(["--checkpoint-every", "5"]);
    // Killed (SIGKILL, as `kill -9` would) inside the 4th checkpoint's
    // write and after the 5th of the next run (the event records of those
    // steps written, the checkpoints not: the resume cuts them), then at a
    // plain training step; the last run trains to the end.
    let mut logs = String::new();
    for point in ["ckpt.mid_write:4", "ckpt.after_write:5", "train.step:9"] {
        let out = trainerd(&args)
            .env("TRAINERD_FAULT_ABORT", point)
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{point}: not killed: {}",
            stderr(&out)
        );
        logs += &stderr(&out);
        let seen = read_tags(&state.join("tensorboard"), &["train/loss", "val/accuracy"]);
        assert!(!steps(&seen, "train/loss").is_empty(), "{seen}");
    }
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "train: {}", stderr(&out));
    logs += &stderr(&out);
    assert!(
        logs.contains("TensorBoard: cut events written after the checkpoint"),
        "no resume had records to cut: {logs}"
    );
    assert_eq!(logs.matches("resumed from checkpoint").count(), 3, "{logs}");

    // The reader itself fails on a step that does not increase.
    let seen = read_back(&state.join("tensorboard"));
    let val = steps(&seen, "val/accuracy");
    assert_eq!(val.len(), 6, "one validation point an epoch: {val:?}");
    let loss = steps(&seen, "train/loss");
    assert!(
        loss.len() > val.len(),
        "mid-epoch losses at checkpoints too: {loss:?}"
    );
    let mut unique = loss.clone();
    unique.dedup();
    assert_eq!(unique, loss, "no step twice");
    assert_eq!(steps(&seen, "test/accuracy"), vec![*val.last().unwrap()]);
}
