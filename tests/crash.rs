//! Crash-proofing, driven through the real binary: SIGKILL torture, kills at
//! every fault-injection point, SIGTERM, the single-writer lock.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Checkpoint every this many steps in these tests.
const INTERVAL: u64 = 3;

type Setup = Workspace;

fn setup() -> Setup {
    workspace(1500, 200)
}

fn train_cmd(s: &Setup, state: &Path) -> Command {
    let every = INTERVAL.to_string();
    let mut cmd = trainerd(&[
        "train",
        "--data-dir",
        s.data.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--val-size",
        "200",
        "--preset",
        "fast",
        "--epochs",
        "6",
        "--batch-size",
        "64",
        "--checkpoint-every",
        &every,
        "--target-accuracy",
        "0.5",
    ]);
    cmd.env("TRAINERD_HEARTBEAT_MS", "20");
    cmd
}

fn reference_hash(s: &Setup) -> String {
    let state = s.root.join("reference");
    let out = train_cmd(s, &state).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    sha256_file(&state.join("best/model.safetensors"))
}

/// Steps of the committed checkpoints of trial 0, newest last.
fn checkpoint_steps(state: &Path) -> Vec<u64> {
    // A study keeps its trials under study/<id>/trials/ (one study here).
    let dir = trial0_checkpoints(state).unwrap_or_else(|| state.join("trials/0000/checkpoints"));
    let mut steps: Vec<u64> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| {
                let name = e.ok()?.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix("ckpt-")?;
                if name.ends_with(".tmp") {
                    return None;
                }
                rest.split('.').next()?.parse().ok()
            })
            .collect()
        })
        .unwrap_or_default();
    steps.sort();
    steps
}

/// True once trial 0 has been promoted to `best/` and its checkpoints removed.
fn trial_promoted_and_cleaned(state: &Path) -> bool {
    let card = std::fs::read(state.join("best/model.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    card.is_some_and(|c| c["trial"].as_u64() == Some(0)) && checkpoint_steps(state).is_empty()
}

fn heartbeat_step(state: &Path) -> u64 {
    heartbeat(state)
        .and_then(|v| v["step"].as_u64())
        .unwrap_or(0)
}

/// Waits until `child` reports training steps in the heartbeat (or exits).
fn wait_until_training(child: &mut std::process::Child, state: &Path) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        if own_heartbeat(child, state).is_some_and(|hb| hb["step"].as_u64() > Some(0)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("trainerd did not start training within 120 s");
}

/// The step a run logged that it resumed from, if it did.
fn resumed_step(log: &str) -> Option<u64> {
    step_of(log, "resumed from checkpoint")
}

/// A small deterministic generator for kill delays (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

#[test]
fn sigkill_torture_ends_bit_identical() {
    let s = setup();
    let want = reference_hash(&s);
    let state = s.root.join("tortured");
    let mut rng = Lcg(42);
    let mut kills = 0;
    let mut expect_resume_from: Option<u64> = None;
    let mut resumes_checked = 0;
    while kills < 30 {
        // Sleeping at every save point widens the save window so kills land inside saves too.
        let log = s.root.join("torture.log");
        let mut child = spawn_logged(
            train_cmd(&s, &state).env("TRAINERD_FAULT_DELAY_MS", "15"),
            &log,
        );
        // Most kills land while training (steps, saves, evaluation); one in five anywhere from start-up on.
        let delay = if rng.next(0, 5) == 0 {
            rng.next(0, 800)
        } else {
            wait_until_training(&mut child, &state);
            rng.next(0, 600)
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(delay) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
        }
        let _ = child.wait();
        let log = read_log(&log);
        if let Some(expected) = expect_resume_from {
            if let Some(got) = resumed_step(&log) {
                assert!(
                    got >= expected,
                    "resumed from {got}, but checkpoint {expected} was committed"
                );
                resumes_checked += 1;
            }
        }
        if finished {
            break;
        }
        kills += 1;
        let reached = heartbeat_step(&state);
        let steps = checkpoint_steps(&state);
        let newest = steps.last().copied().unwrap_or(0);
        // A kill after the trial finished finds its checkpoints removed; the
        // work is then in best/ (checked by the final hash below).
        assert!(
            reached <= newest + INTERVAL + 2 || trial_promoted_and_cleaned(&state),
            "kill {kills}: reached step {reached} but newest checkpoint is {newest}: more than one interval lost"
        );
        assert!(
            steps.len() <= 3 + 1,
            "retention keeps at most K+1 checkpoints: {steps:?}"
        );
        expect_resume_from = (newest > 0).then_some(newest);
    }
    assert!(
        resumes_checked >= 5,
        "only {resumes_checked} restarts logged a resume"
    );
    let out = train_cmd(&s, &state).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "final run: {}", stderr(&out));
    assert_eq!(
        sha256_file(&state.join("best/model.safetensors")),
        want,
        "after {kills} kills"
    );
}

#[test]
fn kill_at_every_fault_point_resumes_exactly() {
    let s = setup();
    let want = reference_hash(&s);
    for point in [
        "ckpt.after_write",
        "ckpt.after_fsync",
        "ckpt.after_rename",
        "ckpt.after_dir_fsync",
        "train.eval",
    ] {
        let state = s.root.join(point);
        let out = train_cmd(&s, &state)
            .env("TRAINERD_FAULT_ABORT", format!("{point}:3"))
            .output()
            .unwrap();
        assert!(
            out.status.code() != Some(0),
            "{point}: the run should have been aborted"
        );
        let out = train_cmd(&s, &state).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{point}: {}", stderr(&out));
        assert!(
            resumed_step(&stderr(&out)).is_some(),
            "{point}: restart did not resume"
        );
        assert_eq!(
            sha256_file(&state.join("best/model.safetensors")),
            want,
            "{point}"
        );
    }
}

#[test]
fn a_panic_exits_1_in_one_line_and_the_restart_resumes_exactly() {
    let s = setup();
    let want = reference_hash(&s);
    let state = s.root.join("panic");
    // The 5th step panics, as an error raised inside libtorch would (tch
    // turns those into panics); a checkpoint was saved at step 3.
    let out = train_cmd(&s, &state)
        .env("TRAINERD_FAULT_PANIC", "train.step:5")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let plain: Vec<&str> = err.lines().filter(|l| !l.starts_with('{')).collect();
    assert_eq!(
        plain.len(),
        1,
        "one line for a human, not a panic dump: {plain:?}"
    );
    assert!(
        plain[0].starts_with("trainerd: internal error at ")
            && plain[0].contains("panic at train.step")
            && plain[0].contains("a restart resumes"),
        "{}",
        plain[0]
    );
    assert!(!err.contains("panicked at"), "{err}");
    assert_eq!(checkpoint_steps(&state), vec![INTERVAL]);
    let out = train_cmd(&s, &state).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(resumed_step(&stderr(&out)), Some(INTERVAL));
    assert_eq!(sha256_file(&state.join("best/model.safetensors")), want);
}

#[test]
fn sigterm_checkpoints_the_stop_step_and_exits_143() {
    let s = setup();
    let want = reference_hash(&s);
    let state = s.root.join("term");
    let log = s.root.join("term.log");
    let mut child = spawn_logged(&mut train_cmd(&s, &state), &log);
    let start = Instant::now();
    while checkpoint_steps(&state).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited early: {}",
            read_log(&log)
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let log = read_log(&log);
    assert_eq!(status.code(), Some(143), "{log}");
    let stopped_at = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("stopped on request"))
        })
        .and_then(|v| v["step"].as_u64())
        .expect("a 'stopped on request' line with its step");
    assert_eq!(
        checkpoint_steps(&state).last().copied(),
        Some(stopped_at),
        "checkpoint at the stop step"
    );
    let out = train_cmd(&s, &state).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        resumed_step(&stderr(&out)),
        Some(stopped_at),
        "no step lost"
    );
    assert_eq!(sha256_file(&state.join("best/model.safetensors")), want);
}

#[test]
fn second_daemon_on_one_state_dir_exits_73_naming_the_holder() {
    let s = setup();
    let state = s.root.join("locked");
    let log = s.root.join("first.log");
    let mut first = spawn_logged(
        train_cmd(&s, &state).env("TRAINERD_FAULT_DELAY_MS", "50"),
        &log,
    );
    wait_until_training(&mut first, &state);
    assert!(
        first.try_wait().unwrap().is_none(),
        "first daemon exited: {}",
        read_log(&log)
    );
    let out = train_cmd(&s, &state).output().unwrap();
    first.kill().unwrap();
    let _ = first.wait();
    assert_eq!(out.status.code(), Some(73), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&first.id().to_string()),
        "should name pid {}: {}",
        first.id(),
        stderr(&out)
    );
    // The holder is dead now: its lock must not block.
    let out = train_cmd(&s, &state).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "after the holder died: {}",
        stderr(&out)
    );
}

#[test]
fn unwritable_state_dir_exits_73() {
    let out = run(&["train", "--state-dir", "/proc/trainerd-cannot-write-here"]);
    assert_eq!(out.status.code(), Some(73), "{}", stderr(&out));
}
