//! The watchdog through the real binary: a trainer frozen (SIGSTOP) for
//! longer than `--watchdog` exits 75 once it continues, every time, without
//! crashing, and its checkpoints stay good (the next run resumes from the
//! step it stopped at); a trainer that never comes back is left behind and
//! the process still exits 75.

mod common;

use common::*;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Freeze-and-continue rounds: the claim is "20 of 20".
const TRIES: usize = 20;
const WATCHDOG: &str = "2s";
/// Longer than the watchdog: the freeze is a stall.
const FREEZE: Duration = Duration::from_millis(2500);

fn train_cmd(data: &Path, state: &Path, extra: &[&str]) -> Command {
    let mut cmd = trainerd(&[
        "train",
        "--data-dir",
        data.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--val-size",
        "200",
        "--preset",
        "fast",
        // Far more steps than the rounds take: the trial never finishes here.
        "--epochs",
        "200",
        "--batch-size",
        "64",
        "--checkpoint-every",
        "3",
        "--max-trials",
        "1",
        "--watchdog",
        WATCHDOG,
    ]);
    cmd.args(extra).env("TRAINERD_HEARTBEAT_MS", "50");
    cmd
}

/// Waits until `child` trains (its own heartbeat says so, past `after`).
fn wait_until_training(child: &mut Child, state: &Path, after: u64, log: &Path) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("exited before training: {status}\n{}", read_log(log));
        }
        let hb = own_heartbeat(child, state);
        if hb.is_some_and(|h| h["training"] == true && h["step"].as_u64() > Some(after)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "not training within 180 s\n{}",
            read_log(log)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the exit (generously: nothing here is a timing claim).
fn wait_exit(child: &mut Child, log: &Path) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("still running 180 s after the stall\n{}", read_log(log));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn quarantined(state: &Path) -> usize {
    trial0_checkpoints(state)
        .and_then(|d| std::fs::read_dir(d.join("quarantine")).ok())
        .map_or(0, |rd| rd.count())
}

#[test]
fn a_frozen_trainer_exits_75_every_time_and_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 1500, 200);
    let state = tmp.path().join("state");
    // The step the previous round stopped at (its final checkpoint).
    let mut stopped_at: Option<u64> = None;
    for round in 0..TRIES {
        let log = tmp.path().join(format!("round{round}.log"));
        let mut child = spawn_logged(&mut train_cmd(&data, &state, &[]), &log);
        wait_until_training(&mut child, &state, stopped_at.unwrap_or(0), &log);
        signal(&child, libc::SIGSTOP);
        std::thread::sleep(FREEZE);
        signal(&child, libc::SIGCONT);
        let status = wait_exit(&mut child, &log);
        let text = read_log(&log);
        assert_eq!(status.code(), Some(75), "round {round}: {status}\n{text}");
        assert!(
            text.contains("watchdog: no training progress"),
            "round {round}: {text}"
        );
        if let Some(step) = stopped_at {
            assert_eq!(
                step_of(&text, "resumed from checkpoint"),
                Some(step),
                "round {round} resumes from the previous round's last checkpoint\n{text}"
            );
        }
        assert_eq!(
            quarantined(&state),
            0,
            "round {round}: a corrupt checkpoint"
        );
        stopped_at = step_of(&text, "stopped on request");
        assert!(
            stopped_at.is_some_and(|s| s > 0),
            "round {round}: the trainer came back and checkpointed\n{text}"
        );
    }
    // The last round's checkpoint loads too.
    let log = tmp.path().join("last.log");
    let mut child = spawn_logged(&mut train_cmd(&data, &state, &[]), &log);
    wait_until_training(&mut child, &state, stopped_at.unwrap_or(0), &log);
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, &log);
    let text = read_log(&log);
    assert_eq!(status.code(), Some(143), "{text}");
    assert_eq!(
        step_of(&text, "resumed from checkpoint"),
        stopped_at,
        "{text}"
    );
}

#[test]
fn a_trainer_that_never_comes_back_is_left_behind_with_exit_75() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 1500, 200);
    let state = tmp.path().join("state");
    let log = tmp.path().join("hang.log");
    // The 10th step never returns (as a libtorch call stuck for good).
    let mut cmd = train_cmd(&data, &state, &[]);
    cmd.env("TRAINERD_FAULT_HANG", "train.step:10");
    let mut child = spawn_logged(&mut cmd, &log);
    let status = wait_exit(&mut child, &log);
    let text = read_log(&log);
    assert_eq!(status.code(), Some(75), "{status}\n{text}");
    assert!(text.contains("did not come back"), "{text}");
    // Its heartbeat is fresh, but its process is gone: unhealthy at once.
    let health = run(&["health", "--state-dir", state.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&health.stdout).into_owned();
    assert_eq!(health.status.code(), Some(1), "{said}");
    assert!(said.contains("not running"), "{said}");
    // Saved before the hang (every 3 steps): the restart resumes from step 9.
    let log = tmp.path().join("after.log");
    let mut child = spawn_logged(&mut train_cmd(&data, &state, &[]), &log);
    wait_until_training(&mut child, &state, 9, &log);
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, &log);
    let text = read_log(&log);
    assert_eq!(status.code(), Some(143), "{text}");
    assert_eq!(step_of(&text, "resumed from checkpoint"), Some(9), "{text}");
    assert_eq!(quarantined(&state), 0);
}
