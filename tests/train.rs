//! End-to-end behaviour of `trainerd train` on tiny generated data.

mod common;

use common::*;
use std::fs;

fn train_args<'a>(data: &'a str, state: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "train",
        "--data-dir",
        data,
        "--state-dir",
        state,
        "--val-size",
        "200",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn learns_and_writes_the_champion() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 1200, 300);
    let state = tmp.path().join("state");
    let out = run(&train_args(
        data.to_str().unwrap(),
        state.to_str().unwrap(),
        &[
            "--preset",
            "fast",
            "--epochs",
            "2",
            "--target-accuracy",
            "0.5",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let card: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("best/model.json")).unwrap()).unwrap();
    let test_acc = card["test_accuracy"].as_f64().unwrap();
    assert!(
        test_acc > 0.9,
        "test accuracy {test_acc} should be far above chance (0.1)"
    );
    for key in [
        "arch",
        "recipe",
        "val_accuracy",
        "seed",
        "created_at",
        "data_fingerprint",
    ] {
        assert!(!card[key].is_null(), "model.json lacks {key}");
    }
    assert!(state.join("best/model.safetensors").is_file());

    let status = run(&["status", "--json", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(status.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["best"]["test_accuracy"].as_f64(), Some(test_acc));
    // The process's last heartbeat: where its trial ended, not where a beat
    // caught it earlier.
    assert_eq!(v["state"], "not running", "{v}");
    assert!(v["total_steps"].as_u64().is_some_and(|t| t > 0), "{v}");
    assert_eq!(v["step"], v["total_steps"], "{v}");
    assert_eq!(v["epoch"].as_u64(), Some(2), "{v}");
    let table = run(&["status", "--state-dir", state.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("(100%)"), "{table}");
}

#[test]
fn same_seed_gives_byte_identical_models() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 600, 100);
    let mut hashes = Vec::new();
    for (i, seed) in ["5", "5", "6"].iter().enumerate() {
        let state = tmp.path().join(format!("state{i}"));
        // mlp has dropout: the random streams must be reproduced exactly too.
        let out = run(&train_args(
            data.to_str().unwrap(),
            state.to_str().unwrap(),
            &[
                "--preset",
                "mlp",
                "--epochs",
                "1",
                "--seed",
                seed,
                "--target-accuracy",
                "0.1",
            ],
        ));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        hashes.push(sha256_file(&state.join("best/model.safetensors")));
    }
    assert_eq!(hashes[0], hashes[1], "same seed, same bytes");
    assert_ne!(hashes[0], hashes[2], "another seed, other weights");
}

#[test]
fn malformed_data_exits_65_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 300, 100);
    let labels = fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("train-labels")
        })
        .unwrap();
    let bytes = fs::read(&labels).unwrap();
    fs::write(&labels, &bytes[..bytes.len() / 2]).unwrap();
    let state = tmp.path().join("state");
    let out = run(&train_args(
        data.to_str().unwrap(),
        state.to_str().unwrap(),
        &[],
    ));
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let name = labels.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        stderr(&out).contains(&name),
        "error should name {name}: {}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn invalid_config_exits_78_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let s = state.to_str().unwrap();
    for (args, key) in [
        (
            vec!["train", "--state-dir", s, "--target-accuracy", "1.5"],
            "target_accuracy",
        ),
        (vec!["train", "--state-dir", s, "--device", "tpu"], "device"),
        (
            vec!["train", "--state-dir", s, "--preset", "no-such-net"],
            "preset",
        ),
        (
            vec!["train", "--state-dir", s, "--epochs", "many"],
            "epochs",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(key),
            "{args:?} should name {key}: {}",
            stderr(&out)
        );
    }
    let cfg = tmp.path().join("bad.toml");
    fs::write(&cfg, "seed = \"one\"\n").unwrap();
    let out = run(&["train", "--state-dir", s, "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad.toml"), "{}", stderr(&out));
}

#[test]
fn env_and_config_file_apply_with_flag_precedence() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 300, 100);
    let state = tmp.path().join("state");
    let cfg = tmp.path().join("t.toml");
    fs::write(&cfg, "preset = \"linear\"\nepochs = 3\nseed = 11\n").unwrap();
    let out = trainerd(&[
        "train",
        "--data-dir",
        data.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--val-size",
        "50",
        "--epochs",
        "1",
        "--target-accuracy",
        "0.1",
    ])
    .env("TRAINERD_SEED", "12")
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let card: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("best/model.json")).unwrap()).unwrap();
    assert_eq!(card["preset"], "linear", "file sets the preset");
    assert_eq!(card["seed"], 12, "env beats file");
    assert_eq!(card["epochs_trained"], 1, "flag beats file");
}

/// A point value over the target is not enough: on 20 validation images
/// even a perfect score's 95% lower bound (20/23.84 = 0.84) is below 0.9,
/// so the study spends its one trial, exits 2 (budget spent), keeps the
/// model and shows the interval that did not certify it.
#[test]
fn a_point_value_over_the_target_with_a_low_bound_does_not_stop_as_reached() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 1200, 300);
    let state = tmp.path().join("state");
    let (d, s) = (data.to_str().unwrap(), state.to_str().unwrap());
    let out = run(&[
        "train",
        "--data-dir",
        d,
        "--state-dir",
        s,
        "--val-size",
        "20",
        "--preset",
        "fast",
        "--epochs",
        "2",
        "--target-accuracy",
        "0.9",
        "--max-trials",
        "1",
    ]);
    let log = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "budget spent, not reached: {log}"
    );
    assert!(log.contains("without certifying the target"), "{log}");
    let card: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("best/model.json")).unwrap()).unwrap();
    let val = card["val_accuracy"].as_f64().unwrap();
    assert!(
        val >= 0.9,
        "the setup needs a point value over the target: {val}"
    );
    let lo = card["val_interval"][0].as_f64().unwrap();
    let hi = card["val_interval"][1].as_f64().unwrap();
    assert!(lo < 0.9 && lo <= val && val <= hi, "{card}");
    assert!(card["test_interval"][0].as_f64().unwrap() <= card["test_accuracy"].as_f64().unwrap());
    assert_eq!(card["confidence_level"].as_f64(), Some(0.95));
    assert_eq!(card["test_size"].as_u64(), Some(300));
    let events = fs::read_to_string(state.join("events.jsonl")).unwrap_or_default();
    assert!(
        events.contains("budget_exhausted") && !events.contains("\"target_reached\""),
        "{events}"
    );
    let status = run(&["status", "--json", "--state-dir", s]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["best"]["val_interval"], card["val_interval"], "{v}");
    let table = String::from_utf8_lossy(&run(&["status", "--state-dir", s]).stdout).to_string();
    assert!(
        table.contains(&format!("val {val:.3} [{lo:.3}, {hi:.3}]")),
        "{table}"
    );
}
