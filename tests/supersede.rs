//! A stale study gives way: new data renamed into place while a trial trains
//! stops that study at its next step (`study_superseded`, journaled) and the
//! new study starts on the new data; SIGKILL at random points of the
//! hand-over, then a restart, goes on with the new study, never the old one,
//! and no event is sent twice.

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::{spawn_logged, synth_data, trainerd, wait_for};
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn jsonl(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn journal(state: &Path) -> Vec<Value> {
    jsonl(&state.join("study/journal.jsonl"))
}

/// The data fingerprint of the newest study the journal started.
fn newest_study(state: &Path) -> Option<(String, String)> {
    journal(state).iter().rev().find_map(|e| {
        (e["type"] == "study_started").then(|| {
            let fp = e["data_fingerprint"].as_str().unwrap_or("").to_string();
            (e["study"].as_str().unwrap_or("").to_string(), fp)
        })
    })
}

/// Trials started by `study` (journal records).
fn trials_started(state: &Path, study: &str) -> usize {
    journal(state)
        .iter()
        .filter(|e| e["study"] == study && e["type"] == "trial_started")
        .count()
}

/// A long trial (so the change lands mid-trial), checkpointed often.
fn daemon(data: &Path, state: &Path, log: &Path) -> Child {
    let mut cmd = trainerd(&["run", "--data-dir", s(data), "--state-dir", s(state)]);
    cmd.args(["--preset", "mlp", "--epochs", "200", "--max-trials", "1"])
        .args(["--checkpoint-every", "10"]);
    spawn_logged(&mut cmd, log)
}

/// Writes data set number `n` elsewhere, then renames its files into `data`
/// (each file replaced atomically, as a careful user or a sync tool does).
fn swap_data(root: &Path, data: &Path, n: usize) {
    let staged = root.join(format!("staged-{n}"));
    synth_data(&staged, 1000 + 50 * n, 100);
    for e in fs::read_dir(&staged).unwrap() {
        let p = e.unwrap().path();
        fs::rename(&p, data.join(p.file_name().unwrap())).unwrap();
    }
}

fn assert_unique_ids(state: &Path) {
    let mut seen = HashSet::new();
    for e in jsonl(&state.join("events.jsonl")) {
        let id = e["id"].as_str().unwrap_or("").to_string();
        assert!(seen.insert(id.clone()), "event {id} sent twice");
    }
}

fn kill(child: &mut Child, signal: i32) {
    // SAFETY: kill(2) on the child's pid only sends a signal.
    unsafe { libc::kill(child.id() as i32, signal) };
    let _ = child.wait();
}

struct Run {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    state: PathBuf,
}

fn setup() -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let data = root.join("data");
    synth_data(&data, 1000, 100);
    Run {
        data,
        state: root.join("state"),
        root,
        _tmp: tmp,
    }
}

#[test]
fn new_data_mid_trial_supersedes_the_study() {
    let r = setup();
    let log = r.root.join("run.log");
    let mut child = daemon(&r.data, &r.state, &log);
    wait_for("the first trial", &mut child, &log, || {
        newest_study(&r.state).is_some_and(|(id, _)| trials_started(&r.state, &id) > 0)
            && r.state
                .join("study")
                .read_dir()
                .is_ok_and(|mut d| d.any(|e| e.is_ok()))
    });
    let (old, old_fp) = newest_study(&r.state).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    swap_data(&r.root, &r.data, 1);
    let swapped = Instant::now();
    wait_for("the new study's first trial", &mut child, &log, || {
        newest_study(&r.state)
            .is_some_and(|(id, fp)| id != old && fp != old_fp && trials_started(&r.state, &id) > 0)
    });
    eprintln!(
        "the new study's first trial started {:?} after the swap",
        swapped.elapsed()
    );
    let superseded: Vec<Value> = journal(&r.state)
        .into_iter()
        .filter(|e| e["type"] == "superseded")
        .collect();
    assert_eq!(superseded.len(), 1, "{superseded:?}");
    assert_eq!(superseded[0]["study"], old.as_str());
    assert!(superseded[0]["step"].as_u64() > Some(0), "{superseded:?}");
    let events = jsonl(&r.state.join("events.jsonl"));
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "study_superseded" && e["study"] == old.as_str()),
        "no study_superseded event"
    );
    assert!(
        !r.state.join("study").join(&old).exists(),
        "the superseded study's checkpoints are swept"
    );
    assert_unique_ids(&r.state);
    kill(&mut child, libc::SIGTERM);
}

#[test]
fn a_kill_anywhere_in_the_hand_over_restarts_into_the_new_study() {
    let r = setup();
    let log = r.root.join("run.log");
    for round in 1..=10usize {
        let mut child = daemon(&r.data, &r.state, &log);
        wait_for("a trial", &mut child, &log, || {
            newest_study(&r.state).is_some_and(|(id, _)| trials_started(&r.state, &id) > 0)
        });
        let (_, before) = newest_study(&r.state).unwrap();
        swap_data(&r.root, &r.data, round);
        // Somewhere in the hand-over: the debounce, the stop at the next
        // step, the journal record, the new study's start.
        std::thread::sleep(Duration::from_millis(((round * 397) % 1500) as u64));
        kill(&mut child, libc::SIGKILL);

        let mut child = daemon(&r.data, &r.state, &log);
        wait_for("the new study training", &mut child, &log, || {
            newest_study(&r.state)
                .is_some_and(|(id, fp)| fp != before && trials_started(&r.state, &id) > 0)
        });
        // The old data's study is never resumed after the restart.
        let (new, _) = newest_study(&r.state).unwrap();
        let resumed_old = journal(&r.state)
            .iter()
            .skip_while(|e| !(e["type"] == "study_started" && e["study"] == new.as_str()))
            .any(|e| e["type"] == "resumed" && e["study"] != new.as_str());
        assert!(!resumed_old, "round {round}: an old study resumed");
        assert_unique_ids(&r.state);
        kill(&mut child, libc::SIGKILL);
    }
}
