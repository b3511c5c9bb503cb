//! `trainerd trial` speaks Katib's metric formats, checked by the project's
//! Katib checker (tests/deploy/katib_metrics.py, Katib's default filter).

mod common;

use common::*;
use std::process::Command;

fn katib_check(args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg("tests/deploy/katib_metrics.py")
        .args(args)
        .output()
        .expect("python3")
}

#[test]
fn trial_output_parses_as_katib_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 400, 100);
    let state = tmp.path().join("state");
    let jsonl = tmp.path().join("metrics.jsonl");
    let out = run(&[
        "trial",
        "--data-dir",
        data.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--val-size",
        "100",
        "--arch",
        "mlp",
        "--epochs",
        "2",
        "--lr",
        "0.05",
        "--batch-size",
        "32",
        "--optimizer",
        "adamw",
        "--metrics-file",
        jsonl.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout_file = tmp.path().join("stdout.txt");
    std::fs::write(&stdout_file, &out.stdout).unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(lines >= 2, "one metric line per epoch at least");
    let check = katib_check(&[
        "--stdout",
        stdout_file.to_str().unwrap(),
        "--objective",
        "accuracy",
        "--metric",
        "loss",
    ]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        stderr(&check)
    );
    let check = katib_check(&[
        "--jsonl",
        jsonl.to_str().unwrap(),
        "--objective",
        "accuracy",
    ]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        stderr(&check)
    );
}

#[test]
fn failing_trial_exits_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&[
        "trial",
        "--data-dir",
        tmp.path().join("none").to_str().unwrap(),
        "--state-dir",
        tmp.path().join("s").to_str().unwrap(),
        "--optimizer",
        "rmsprop",
    ]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let out = run(&[
        "trial",
        "--data-dir",
        tmp.path().join("none").to_str().unwrap(),
        "--state-dir",
        tmp.path().join("s").to_str().unwrap(),
    ]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "missing data must fail the trial"
    );
}
