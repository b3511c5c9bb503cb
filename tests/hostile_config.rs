//! Hostile input against the real binary (issue 18): diverging trials,
//! out-of-range architecture, trial and config values, hostile process
//! environments, and the README's promises about quarantine, rollback,
//! promotion, `status` and the champion's card. Every case asserts the exit
//! code, the one error line (naming the key or file), that nothing panicked
//! or leaked a libtorch trace, and that saved state is intact afterwards.
//!
//! Each test runs a table of cases and reports `held/total` on stderr
//! (`cargo test --release --test hostile_config -- --nocapture`).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// A temp dir with a small synthetic data set.
type Setup = Workspace;

fn setup() -> Setup {
    workspace(600, 200)
}

/// Flags for `command` on the setup's data into `state`: one quick MLP
/// trial unless `extra` sets a flag itself (clap refuses a repeated flag).
fn args_for(command: &str, su: &Setup, state: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        command.into(),
        "--data-dir".into(),
        s(&su.data).into(),
        "--state-dir".into(),
        s(state).into(),
    ];
    let defaults = [
        ("--val-size", "100"),
        ("--max-trials", "1"),
        ("--target-accuracy", "0.5"),
        ("--ladder", "mlp,linear"),
        ("--preset", "mlp"),
        ("--epochs", "1"),
    ];
    for (flag, value) in defaults {
        let given = extra
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        // A spec file brings its own epochs.
        let file_preset = flag == "--epochs" && extra.contains(&"--preset");
        if !given && !file_preset {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn train_cmd(su: &Setup, state: &Path, extra: &[&str]) -> std::process::Command {
    let args = args_for("train", su, state, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = trainerd(&args);
    cmd.env("TRAINERD_HEARTBEAT_MS", "20");
    cmd
}

fn train(su: &Setup, state: &Path, extra: &[&str]) -> Output {
    train_cmd(su, state, extra).output().unwrap()
}

/// SHA-256 of every file under `best*/` and `study/journal.jsonl`: what "nothing saved lost" protects.
fn saved_state(state: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for dir in ["best", "best.previous"] {
        for p in files_under(&state.join(dir)) {
            out.insert(
                p.strip_prefix(state).unwrap().display().to_string(),
                sha256_file(&p),
            );
        }
    }
    let journal = state.join("study/journal.jsonl");
    if journal.exists() {
        out.insert("journal".into(), sha256_file(&journal));
    }
    out
}

/// Collects the outcome of each case, so one test reports how many held.
#[derive(Default)]
struct Cases {
    total: usize,
    failures: Vec<String>,
}

impl Cases {
    fn check(&mut self, name: &str, result: Result<(), String>) {
        self.total += 1;
        if let Err(why) = result {
            self.failures.push(format!("{name}: {why}"));
        }
    }

    fn finish(self, class: &str) {
        let held = self.total - self.failures.len();
        eprintln!("hostile cases, {class}: {held}/{} held", self.total);
        assert!(self.failures.is_empty(), "{}", self.failures.join("\n"));
    }
}

/// No panic, no libtorch trace, no internal error anywhere in the output.
fn no_crash_output(o: &Output) -> Result<(), String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for bad in [
        "panicked",
        "internal error",
        "C++",
        "libtorch",
        "Exception raised",
        "RUST_BACKTRACE",
    ] {
        if text.contains(bad) {
            return Err(format!("output contains {bad:?}:\n{text}"));
        }
    }
    Ok(())
}

/// Exit `code`, exactly one `trainerd: error:` line, naming every `needle`.
fn fails_with(o: &Output, code: i32, needles: &[&str]) -> Result<(), String> {
    no_crash_output(o)?;
    let err = stderr(o);
    if o.status.code() != Some(code) {
        return Err(format!(
            "exit {:?}, want {code}:\n{}",
            o.status.code(),
            tail(&err)
        ));
    }
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("trainerd: error:"))
        .collect();
    let [line] = lines.as_slice() else {
        return Err(format!(
            "want one error line, got {}:\n{}",
            lines.len(),
            tail(&err)
        ));
    };
    for n in needles {
        if !line.contains(n) {
            return Err(format!("error line does not name {n:?}: {line}"));
        }
    }
    Ok(())
}

fn exits(o: &Output, code: i32) -> Result<(), String> {
    no_crash_output(o)?;
    if o.status.code() == Some(code) {
        Ok(())
    } else {
        Err(format!(
            "exit {:?}, want {code}:\n{}",
            o.status.code(),
            tail(&stderr(o))
        ))
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(6)..].join("\n")
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn events(state: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(state.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn status_json(state: &Path) -> serde_json::Value {
    let o = run(&["status", "--json", "--state-dir", s(state)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn status_table(state: &Path) -> String {
    let o = run(&["status", "--state-dir", s(state)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(path: &Path, text: &str) -> PathBuf {
    fs::write(path, text).unwrap();
    path.to_path_buf()
}

// ---------------------------------------------------------------- divergence

#[test]
fn a_diverging_trial_ends_as_diverged_and_the_state_dir_stays_usable() {
    let su = setup();
    let mut cases = Cases::default();
    let state = su.root.join("state");

    let o = train(&su, &state, &["--lr", "1e30"]);
    cases.check("lr 1e30: budget spent, exit 2", exits(&o, 2));
    let journal = fs::read_to_string(state.join("study/journal.jsonl")).unwrap_or_default();
    cases.check(
        "journal holds an explicit diverged record, no null loss",
        ensure(
            journal.contains("\"type\":\"trial_diverged\"")
                && !journal.contains("\"val_loss\":null")
                && !journal.contains("\"train_loss\":null"),
            || journal.clone(),
        ),
    );
    let kinds: Vec<String> = events(&state)
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect();
    cases.check(
        "a trial_diverged event",
        ensure(kinds.iter().any(|k| k == "trial_diverged"), || {
            format!("{kinds:?}")
        }),
    );
    cases.check(
        "never promoted",
        ensure(!state.join("best").exists(), || "best/ exists".into()),
    );
    let o = train(&su, &state, &["--lr", "1e30"]);
    cases.check("rerun: journal readable, exit 2 (not 74)", exits(&o, 2));
    let v = status_json(&state);
    cases.check(
        "status reads the state dir",
        ensure(v["best"].is_null() && v["champion_error"].is_null(), || {
            v.to_string()
        }),
    );
    let o = train(&su, &state, &[]);
    cases.check("a sane lr afterwards trains and promotes", exits(&o, 0));
    cases.check(
        "champion written",
        ensure(state.join("best/model.json").is_file(), || {
            "no best/".into()
        }),
    );

    // The study goes on past a diverged trial: trial 0 diverges, trial 1 escalates.
    let state = su.root.join("state2");
    let o = train(&su, &state, &["--lr", "1e30", "--max-trials", "2"]);
    cases.check("study continues after divergence", exits(&o, 0));
    let card: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("best/model.json")).unwrap_or_default())
            .unwrap_or_default();
    cases.check(
        "the next trial is the champion",
        ensure(card["trial"] == 1, || card.to_string()),
    );

    // `trainerd trial` (Katib): a diverged trial fails with exit 2 and says so.
    let o = run(&[
        "trial",
        "--data-dir",
        s(&su.data),
        "--state-dir",
        s(&su.root.join("katib")),
        "--val-size",
        "100",
        "--preset",
        "mlp",
        "--epochs",
        "1",
        "--lr",
        "1e30",
    ]);
    cases.check(
        "trial: diverged=1, exit 2",
        exits(&o, 2).and_then(|()| {
            ensure(
                String::from_utf8_lossy(&o.stdout).contains("diverged=1"),
                || String::from_utf8_lossy(&o.stdout).into_owned(),
            )
        }),
    );
    cases.finish("divergence");
}

#[test]
fn state_written_by_the_buggy_build_reads_as_diverged() {
    let su = setup();
    let mut cases = Cases::default();
    let state = su.root.join("state");
    let o = train(&su, &state, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // What the build before this one wrote after `--lr 1e30`: null for NaN.
    let card_path = state.join("best/model.json");
    let mut card: serde_json::Value =
        serde_json::from_slice(&fs::read(&card_path).unwrap()).unwrap();
    card["val_loss"] = serde_json::Value::Null;
    card["test_loss"] = serde_json::Value::Null;
    fs::write(&card_path, serde_json::to_vec_pretty(&card).unwrap()).unwrap();
    let journal = state.join("study/journal.jsonl");
    let text = fs::read_to_string(&journal).unwrap();
    let poisoned: String = text
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v["type"] == "trial_finished" {
                v["val_loss"] = serde_json::Value::Null;
                v["history"][0]["train_loss"] = serde_json::Value::Null;
            }
            format!("{v}\n")
        })
        .collect();
    fs::write(&journal, poisoned).unwrap();

    let table = status_table(&state);
    cases.check(
        "status shows the champion as diverged",
        ensure(table.contains("DIVERGED"), || table.clone()),
    );
    let images = su.data.join("t10k-images-idx3-ubyte.gz");
    let o = run(&["predict", "--state-dir", s(&state), s(&images)]);
    cases.check(
        "predict refuses a diverged champion, exit 65 naming the card",
        fails_with(&o, 65, &["best/model.json", "diverged"]),
    );
    // Same settings: the old study resumes from its journal (readable now).
    let o = train(&su, &state, &[]);
    cases.check(
        "train reads the old journal (its study had finished)",
        exits(&o, 0),
    );
    // New settings: a new study replaces the diverged champion.
    let o = train(&su, &state, &["--seed", "2"]);
    cases.check("a new study replaces the diverged champion", exits(&o, 0));
    let card: serde_json::Value =
        serde_json::from_slice(&fs::read(&card_path).unwrap_or_default()).unwrap_or_default();
    cases.check(
        "the new champion is finite",
        ensure(card["val_loss"].is_f64(), || card.to_string()),
    );
    cases.check(
        "the diverged one is kept in best.previous/",
        ensure(
            state.join("best.previous/model.safetensors").is_file(),
            || "no best.previous".into(),
        ),
    );
    cases.finish("old diverged state");
}

// ---------------------------------------------------------------- validation

/// Architecture and trial files with values libtorch must never see.
fn spec_cases(dir: &Path) -> Vec<(&'static str, PathBuf, Vec<&'static str>)> {
    let arch = |name: &str, text: &str| write(&dir.join(name), text);
    let trial = |name: &str, recipe_change: (&str, serde_json::Value)| {
        let out: serde_json::Value = serde_json::json!({
            "preset": "custom",
            "arch": {"kind": "mlp", "hidden": [32]},
            "recipe": {
                "optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true,
                              "weight_decay": 0.0005},
                "schedule": {"kind": "constant"},
                "epochs": 1, "batch_size": 64
            }
        });
        let mut out = out;
        let (path, value) = recipe_change;
        let mut at = &mut out["recipe"];
        let parts: Vec<&str> = path.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            at = &mut at[*p];
        }
        at[parts[parts.len() - 1]] = value;
        write(&dir.join(name), &out.to_string())
    };
    let cnn = |block: &str| format!(r#"{{"kind":"cnn","blocks":[{block}],"head":[]}}"#);
    vec![
        (
            "dropout 2",
            arch("d.json", r#"{"kind":"mlp","hidden":[32],"dropout":2}"#),
            vec!["d.json", "arch.dropout"],
        ),
        (
            "negative padding",
            arch("p.json", &cnn(r#"{"channels":8,"kernel":3,"padding":-1}"#)),
            vec!["p.json", "arch.blocks[0].padding"],
        ),
        (
            "huge padding",
            arch(
                "hp.json",
                &cnn(r#"{"channels":8,"kernel":3,"padding":1000000000}"#),
            ),
            vec!["arch.blocks[0].padding"],
        ),
        (
            "hidden width 1e8",
            arch("w.json", r#"{"kind":"mlp","hidden":[100000000]}"#),
            vec!["arch.hidden[0]"],
        ),
        (
            "kernel 99",
            arch("k.json", &cnn(r#"{"channels":8,"kernel":99}"#)),
            vec!["arch.blocks[0].kernel"],
        ),
        (
            "a million channels",
            arch("c.json", &cnn(r#"{"channels":1000000}"#)),
            vec!["arch.blocks[0].channels"],
        ),
        (
            "dropout nan (TOML)",
            arch("n.toml", "kind = \"mlp\"\nhidden = [32]\ndropout = nan\n"),
            vec!["n.toml", "arch.dropout"],
        ),
        (
            "zero convolutions",
            arch("z.json", &cnn(r#"{"channels":8,"convs":0}"#)),
            vec!["arch.blocks[0].convs"],
        ),
        (
            "label smoothing 3",
            trial("ls.json", ("label_smoothing", 3.into())),
            vec!["ls.json", "recipe.label_smoothing"],
        ),
        (
            "lr -1",
            trial("lr.json", ("optimizer.lr", (-1.0).into())),
            vec!["recipe.optimizer.lr"],
        ),
        (
            "batch 0",
            trial("b.json", ("batch_size", 0.into())),
            vec!["recipe.batch_size"],
        ),
        (
            "momentum 5",
            trial("m.json", ("optimizer.momentum", 5.into())),
            vec!["recipe.optimizer.momentum"],
        ),
        (
            "shift -3",
            trial("sh.json", ("augment_shift", (-3).into())),
            vec!["recipe.augment_shift"],
        ),
        (
            "binary garbage",
            {
                let p = dir.join("g.json");
                fs::write(&p, [0xffu8, 0xfe, 0, 1, 2]).unwrap();
                p
            },
            vec!["g.json"],
        ),
        (
            "not a regular file",
            PathBuf::from("/dev/zero"),
            vec!["/dev/zero"],
        ),
    ]
}

/// Values that pass the range checks but not the data's geometry.
fn shape_cases(dir: &Path) -> Vec<(&'static str, PathBuf, Vec<&'static str>)> {
    let block = r#"{"channels":8,"kernel":3,"pool":true}"#;
    vec![
        (
            "kernel larger than its 3x3 map",
            write(
                &dir.join("late.json"),
                &format!(
                    r#"{{"kind":"cnn","blocks":[{block},{block},{block},{{"channels":8,"kernel":5}}]}}"#
                ),
            ),
            vec!["arch.blocks[3].kernel", "3x3"],
        ),
        (
            "pooling a 1x1 map",
            write(
                &dir.join("pool.json"),
                &format!(
                    r#"{{"kind":"cnn","blocks":[{block},{block},{block},{block},{{"channels":8,"kernel":1,"pool":true}}]}}"#
                ),
            ),
            vec!["arch.blocks[4].pool"],
        ),
        (
            "4 billion parameters",
            write(
                &dir.join("big.json"),
                r#"{"kind":"mlp","hidden":[65536,65536]}"#,
            ),
            vec!["arch.hidden[1]", "parameters"],
        ),
    ]
}

#[test]
fn out_of_range_specs_and_settings_exit_78_naming_the_key() {
    let su = setup();
    let mut cases = Cases::default();
    let state = su.root.join("state");
    let o = train(&su, &state, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = saved_state(&state);
    let specs = su.root.join("specs");
    fs::create_dir_all(&specs).unwrap();

    for (name, file, needles) in spec_cases(&specs).into_iter().chain(shape_cases(&specs)) {
        let o = train(&su, &state, &["--preset", s(&file)]);
        cases.check(
            &format!("train --preset: {name}"),
            fails_with(&o, 78, &needles),
        );
        let o = run(&[
            "trial",
            "--data-dir",
            s(&su.data),
            "--state-dir",
            s(&su.root.join("katib")),
            "--val-size",
            "100",
            "--preset",
            s(&file),
        ]);
        cases.check(
            &format!("trial --preset: {name}"),
            fails_with(&o, 78, &needles),
        );
    }
    let ladder = specs.join("k.json");
    let o = train(&su, &state, &["--ladder", &format!("mlp,{}", s(&ladder))]);
    cases.check(
        "a bad ladder rung",
        fails_with(&o, 78, &["ladder", "arch.blocks[0].kernel"]),
    );

    let config = |name: &str, text: &str| write(&su.root.join(name), text);
    let huge = su.root.join("huge.toml");
    fs::write(&huge, "# x\n".repeat(600_000)).unwrap();
    let flag_cases: Vec<(&str, Vec<String>, Vec<&str>)> = vec![
        (
            "max_time 2^64 s",
            vec!["--max-time".into(), "18446744073709551616s".into()],
            vec!["max_time"],
        ),
        (
            "max_time 1e30 days",
            vec![
                "--max-time".into(),
                "1000000000000000000000000000000d".into(),
            ],
            vec!["max_time"],
        ),
        (
            "watchdog 0s",
            vec!["--watchdog".into(), "0s".into()],
            vec!["watchdog"],
        ),
        (
            "checkpoint every 5,5s,5",
            vec!["--checkpoint-every".into(), "5,5s,5".into()],
            vec!["checkpoint_every"],
        ),
        (
            "checkpoint every 0s",
            vec!["--checkpoint-every".into(), "0s".into()],
            vec!["checkpoint_every"],
        ),
        (
            "threads 10000",
            vec!["--threads".into(), "10000".into()],
            vec!["threads", "1..="],
        ),
        (
            "batch 0",
            vec!["--batch-size".into(), "0".into()],
            vec!["batch_size"],
        ),
        ("lr -1", vec!["--lr=-1".into()], vec!["lr"]),
        ("lr nan", vec!["--lr".into(), "NaN".into()], vec!["lr"]),
        (
            "epochs 0",
            vec!["--epochs".into(), "0".into()],
            vec!["epochs"],
        ),
        (
            "epochs 1e6",
            vec!["--epochs".into(), "1000000".into()],
            vec!["epochs"],
        ),
        (
            "target accuracy nan",
            vec!["--target-accuracy".into(), "nan".into()],
            vec!["target_accuracy"],
        ),
        (
            "config: watchdog 1e20 days",
            vec![
                "--config".into(),
                s(&config("w.toml", "watchdog = \"99999999999999999999d\"\n")).into(),
            ],
            vec!["watchdog"],
        ),
        (
            "config: dropout-like nan lr",
            vec!["--config".into(), s(&config("l.toml", "lr = nan\n")).into()],
            vec!["lr"],
        ),
        (
            "config: 2 MB file",
            vec!["--config".into(), s(&huge).into()],
            vec!["huge.toml", "larger than"],
        ),
        (
            "config: a directory",
            vec!["--config".into(), s(&su.root).into()],
            vec!["not a regular file"],
        ),
    ];
    for (name, flags, needles) in flag_cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let o = train(&su, &state, &flags);
        cases.check(&format!("train {name}"), fails_with(&o, 78, &needles));
    }
    let o = run(&["health", "--state-dir", s(&state), "--max-age", "1e400"]);
    cases.check("health --max-age 1e400", fails_with(&o, 78, &["max_age"]));
    let o = run(&[
        "health",
        "--state-dir",
        s(&state),
        "--max-age",
        "99999999999999999999999d",
    ]);
    cases.check(
        "health --max-age 1e23 days",
        fails_with(&o, 78, &["max_age"]),
    );

    let after = saved_state(&state);
    cases.check(
        "saved state intact after every case",
        ensure(before == after, || format!("{before:?}\n!=\n{after:?}")),
    );
    cases.finish("validation");
}

// ---------------------------------------------------------------- environment

fn non_utf8() -> OsString {
    OsString::from_vec(vec![b'x', 0xff, 0xfe, b'y'])
}

#[test]
fn foreign_variables_have_no_effect_and_ours_are_named() {
    let su = setup();
    let mut cases = Cases::default();
    let state = su.root.join("state");
    let o = train_cmd(&su, &state, &[])
        .env("NOT_OURS", non_utf8())
        .env("LC_ALL_GARBAGE", non_utf8())
        .env(OsString::from_vec(vec![b'K', 0xff]), "v")
        .output()
        .unwrap();
    cases.check("train with foreign non-UTF-8 variables", exits(&o, 0));
    let before = saved_state(&state);
    for (var, cmd) in [("NOT_OURS", "status"), ("TRAINERD_NOT_A_SETTING", "status")] {
        let o = trainerd(&[cmd, "--state-dir", s(&state)])
            .env(var, non_utf8())
            .output()
            .unwrap();
        cases.check(&format!("{cmd} with {var}"), exits(&o, 0));
    }
    for (var, args) in [
        ("TRAINERD_LR", vec!["train"]),
        ("TRAINERD_THREADS", vec!["train"]),
        ("TRAINERD_PRESET", vec!["trial"]),
        ("TRAINERD_FAULT_ABORT", vec!["status"]),
        ("TRAINERD_HEALTH_MAX_AGE", vec!["health"]),
        ("TRAINERD_HEARTBEAT_MS", vec!["status"]),
    ] {
        let mut args = args;
        args.extend(["--state-dir", s(&state)]);
        let o = trainerd(&args).env(var, non_utf8()).output().unwrap();
        cases.check(
            &format!("{} with non-UTF-8 {var}", args[0]),
            fails_with(&o, 78, &[var, "UTF-8"]),
        );
    }
    // A path may be any bytes.
    let odd = PathBuf::from(OsString::from_vec(
        [su.root.as_os_str().as_encoded_bytes(), b"/st\xffate"].concat(),
    ));
    let o = trainerd(&["status"])
        .env("TRAINERD_STATE_DIR", odd.as_os_str())
        .output()
        .unwrap();
    cases.check("status with a non-UTF-8 state dir path", exits(&o, 0));
    cases.check(
        "saved state intact",
        ensure(saved_state(&state) == before, || "changed".into()),
    );
    cases.finish("environment");
}

// ---------------------------------------------------------------- promises

/// Kills `train` at fault point `point` (SIGKILL there).
fn killed_at(su: &Setup, state: &Path, point: &str, extra: &[&str]) -> Output {
    train_cmd(su, state, extra)
        .env("TRAINERD_FAULT_ABORT", point)
        .output()
        .unwrap()
}

fn killed(o: &Output) -> Result<(), String> {
    use std::os::unix::process::ExitStatusExt;
    ensure(o.status.signal() == Some(9), || {
        format!(
            "not killed at the fault point: {:?}\n{}",
            o.status,
            tail(&stderr(o))
        )
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_crash_inside_promotion_is_finished_at_the_next_start() {
    let su = setup();
    let mut cases = Cases::default();
    for point in [
        "export.onnx",
        "promote.exported",
        "promote.staged",
        "promote.swap",
    ] {
        let state = su.root.join(point);
        // A first champion, so the swap has a best/ to move aside.
        let o = train(&su, &state, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = killed_at(&su, &state, point, &["--seed", "3"]);
        cases.check(&format!("{point}: killed there"), killed(&o));
        let o = train(&su, &state, &["--seed", "3"]);
        cases.check(&format!("{point}: the restart finishes"), exits(&o, 0));
        let best = names(&state.join("best"));
        cases.check(
            &format!("{point}: best/ complete, with its exports and report, no temp file"),
            ensure(
                best == [
                    "README.md",
                    "model.json",
                    "model.onnx",
                    "model.pt",
                    "model.safetensors",
                    "report.html",
                    "repository",
                ],
                || format!("{best:?}"),
            ),
        );
        let status = status_json(&state);
        cases.check(
            &format!("{point}: every checksum in model.json verifies"),
            ensure(
                status["best"]["damaged"].is_null() && status["best"]["version"].is_u64(),
                || status["best"].to_string(),
            ),
        );
        cases.check(
            &format!("{point}: no staging dir left"),
            ensure(!state.join("best.staging").exists(), || {
                "best.staging left".into()
            }),
        );
        let card: serde_json::Value =
            serde_json::from_slice(&fs::read(state.join("best/model.json")).unwrap_or_default())
                .unwrap_or_default();
        cases.check(
            &format!("{point}: the new study's model is champion"),
            ensure(card["seed"] == 3, || card.to_string()),
        );
    }
    // A stray temp file and a missing report, as the build before this left them.
    let state = su.root.join("promote.swap");
    fs::remove_file(state.join("best/report.html")).unwrap();
    fs::write(state.join("best/.report.html.tmp-4242"), b"half a report").unwrap();
    let o = train(&su, &state, &["--seed", "3"]);
    cases.check("rerun of a finished study", exits(&o, 0));
    cases.check(
        "stray temp file removed",
        ensure(!state.join("best/.report.html.tmp-4242").exists(), || {
            format!("{:?}", names(&state.join("best")))
        }),
    );
    cases.finish("promotion crash");
}

#[test]
fn quarantined_checkpoints_outlive_their_trial() {
    let su = setup();
    let mut cases = Cases::default();
    let state = su.root.join("state");
    // 500 training images in batches of 16: 32 steps an epoch.
    let args = [
        "--checkpoint-every",
        "3",
        "--epochs",
        "2",
        "--batch-size",
        "16",
    ];
    let o = killed_at(&su, &state, "train.step:40", &args);
    cases.check("killed mid-trial", killed(&o));
    // status after a crash: checkpoints exist, the pid is gone.
    let table = status_table(&state);
    cases.check(
        "status shows the checkpoint on disk",
        ensure(
            table.contains("ckpt-") && !table.contains("none yet ("),
            || table.clone(),
        ),
    );
    cases.check(
        "status calls the dead pid not running",
        ensure(table.contains("not running (last pid"), || table.clone()),
    );
    let ckpts: Vec<PathBuf> = files_under(&state.join("study"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tch"))
        .collect();
    let newest = ckpts.iter().max().cloned();
    let Some(newest) = newest else {
        cases.check("checkpoints were written", Err("none".into()));
        return cases.finish("quarantine");
    };
    let mut bytes = fs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&newest, &bytes).unwrap();
    let o = train(&su, &state, &args);
    cases.check("the restart finishes", exits(&o, 0));
    let kept: Vec<PathBuf> = files_under(&state.join("quarantine"));
    let name = newest.file_name().unwrap().to_string_lossy().into_owned();
    cases.check(
        "the corrupt checkpoint is kept in state_dir/quarantine/, with its reason",
        ensure(
            kept.iter().any(|p| p.ends_with(&name))
                && kept
                    .iter()
                    .any(|p| p.to_string_lossy().ends_with(".reason")),
            || format!("{kept:?}"),
        ),
    );
    cases.check(
        "byte for byte",
        ensure(
            kept.iter()
                .find(|p| p.ends_with(&name))
                .is_some_and(|p| fs::read(p).unwrap() == bytes),
            || "differs".into(),
        ),
    );
    cases.check(
        "the trial's folder is gone",
        ensure(
            !files_under(&state.join("study"))
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "tch")),
            || "checkpoints left".into(),
        ),
    );
    cases.finish("quarantine");
}

#[test]
fn rollback_against_a_running_daemon_exits_73_naming_its_pid() {
    let su = setup();
    let mut cases = Cases::default();
    let state = su.root.join("state");
    for seed in ["1", "2"] {
        let o = train(&su, &state, &["--seed", seed]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let before = saved_state(&state);
    let log = su.root.join("daemon.log");
    let mut daemon = {
        let args = args_for("run", &su, &state, &["--seed", "2"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = trainerd(&args);
        cmd.env("TRAINERD_HEARTBEAT_MS", "20");
        spawn_logged(&mut cmd, &log)
    };
    let pid = daemon.id();
    let start = Instant::now();
    let mut idle = false;
    while start.elapsed() < Duration::from_secs(120) && daemon.try_wait().unwrap().is_none() {
        let v = status_json(&state);
        if v["pid"] == pid && v["state"] == "idle" {
            idle = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cases.check("daemon is idle", ensure(idle, || read_log(&log)));
    let o = run(&["rollback", "--state-dir", s(&state)]);
    cases.check(
        "rollback refuses, naming the daemon's pid",
        fails_with(&o, 73, &[&format!("pid {pid}"), "stop it first"]),
    );
    let o = run(&["rollback", "--state-dir", s(&state), "--to", "1"]);
    cases.check(
        "rollback --to refuses too, naming the daemon's pid",
        fails_with(&o, 73, &[&format!("pid {pid}"), "stop it first"]),
    );
    let o = run(&["models", "--state-dir", s(&state), "--json"]);
    cases.check("models only reads: it runs beside the daemon", exits(&o, 0));
    cases.check(
        "nothing moved",
        ensure(saved_state(&state) == before, || "best/ changed".into()),
    );
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = daemon.wait().unwrap();
    cases.check(
        "daemon stops on SIGTERM",
        ensure(status.code() == Some(143), || format!("{status:?}")),
    );
    let table = status_table(&state);
    cases.check(
        "status: not running (last pid)",
        ensure(
            table.contains(&format!("not running (last pid {pid}")),
            || table.clone(),
        ),
    );
    let o = run(&["rollback", "--state-dir", s(&state)]);
    cases.check("rollback works once it stopped", exits(&o, 0));
    cases.finish("rollback");
}

#[test]
fn a_corrupt_card_is_reported_not_hidden() {
    let su = setup();
    let mut cases = Cases::default();
    let state = su.root.join("state");
    let o = train(&su, &state, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let weights = sha256_file(&state.join("best/model.safetensors"));
    let card = state.join("best/model.json");
    let images = su.data.join("t10k-images-idx3-ubyte.gz");
    for (name, content) in [
        (
            "truncated",
            "{\"format\": 1, \"trial\": 0, \"pres".to_string(),
        ),
        ("not JSON", "\u{0}\u{1}garbage".to_string()),
        ("wrong types", "{\"format\": \"one\"}".to_string()),
    ] {
        fs::write(&card, &content).unwrap();
        let table = status_table(&state);
        cases.check(
            &format!("{name}: status names the card"),
            ensure(
                table.contains("UNUSABLE") && table.contains("best/model.json"),
                || table.clone(),
            ),
        );
        let o = run(&["predict", "--state-dir", s(&state), s(&images)]);
        cases.check(
            &format!("{name}: predict exits 65 naming the card"),
            fails_with(&o, 65, &["best/model.json"]),
        );
    }
    fs::remove_file(&card).unwrap();
    let o = run(&["predict", "--state-dir", s(&state), s(&images)]);
    cases.check(
        "missing card beside weights: exit 65",
        fails_with(&o, 65, &["best/model.json", "missing"]),
    );
    cases.check(
        "the weights are untouched",
        ensure(
            sha256_file(&state.join("best/model.safetensors")) == weights,
            || "weights changed".into(),
        ),
    );
    // The next study replaces the unusable champion and keeps it in best.previous/.
    let o = train(&su, &state, &["--seed", "5"]);
    cases.check("a new study promotes over it", exits(&o, 0));
    cases.check(
        "old weights kept in best.previous/",
        ensure(
            fs::read(state.join("best.previous/model.safetensors")).is_ok_and(|_| {
                sha256_file(&state.join("best.previous/model.safetensors")) == weights
            }),
            || format!("{:?}", names(&state.join("best.previous"))),
        ),
    );
    cases.finish("corrupt card");
}

/// A reader that goes away (`trainerd presets | head -1`, a closed pipe)
/// ends a printing command quietly: no panic, no "internal error".
#[test]
fn printing_commands_end_quietly_when_their_reader_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let state = s(tmp.path());
    for args in [
        vec!["presets", "--json"],
        vec!["presets"],
        vec!["status", "--state-dir", state],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = trainerd(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let o = Output {
            stdout: Vec::new(),
            ..out
        };
        no_crash_output(&o).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(
            !o.status.success(),
            "{args:?} claimed success with its output lost"
        );
    }
}
