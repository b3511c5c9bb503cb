//! Tests of real crashes: a child process that saves is killed at each
//! point of the commit protocol and at random moments; a valid checkpoint
//! always remains.

use super::*;
use crate::store::fault::CHECKPOINT_POINTS;
use crate::store::testutil;
use std::os::unix::process::ExitStatusExt;

/// The test path of [`saver_child`], as the crash tests spawn it.
const SAVER_CHILD: &str = "store::checkpoint::tests::crashes::saver_child";

/// Run in a child by the crash tests: resumes from the newest checkpoint
/// and saves the following steps (up to 10_000) until killed.
#[test]
#[ignore = "helper run in a child process"]
fn saver_child() {
    let Some(dir) = testutil::helper_arg() else {
        return;
    };
    let mut d = CheckpointDir::open(Path::new(&dir), 3).unwrap();
    let start = d.load_newest_valid().unwrap().map_or(1, |c| c.step + 1);
    println!("READY {start}");
    for step in start..start + 10_000 {
        d.save(step, None, &meta(step), &sample(step, 1000))
            .unwrap();
    }
    println!("NOT KILLED");
}

/// A kill at each point of the commit protocol (via the fault points):
/// the directory always holds either the old set or the old set plus the
/// new checkpoint, and nothing is ever corrupt.
#[test]
fn kill_at_each_commit_point_leaves_a_valid_checkpoint() {
    for (i, point) in CHECKPOINT_POINTS.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ckpt");
        let abort = format!("{point}:2"); // the second save, step 2
        let mut child =
            testutil::spawn_helper_with(SAVER_CHILD, &dir, &[("TRAINERD_FAULT_ABORT", &abort)]);
        child.wait_for("READY");
        let status = child.wait();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: {status:?}");

        let renamed = i >= 3; // after_rename, after_dir_fsync
        let tmp_file = dir.join("ckpt-000000000002.tch.tmp");
        assert_eq!(tmp_file.exists(), !renamed, "{point}: temp file");
        assert_eq!(
            dir.join("ckpt-000000000002.tch").exists(),
            renamed,
            "{point}"
        );

        let d = CheckpointDir::open(&dir, 3).unwrap();
        assert!(!tmp_file.exists(), "{point}: temp file not cleaned");
        let back = d.load_newest_valid().unwrap().expect("a checkpoint");
        let want = if renamed { 2 } else { 1 };
        assert_eq!(back.step, want, "{point}");
        assert_same(&sample(want, 1000), &back.tensors);
        assert!(
            !dir.join(QUARANTINE_DIR).exists(),
            "{point}: something was corrupt"
        );
    }
}

/// SIGKILLs at random moments while a child saves continuously with a
/// delay at every fault point: every restart finds a valid checkpoint, the
/// step never goes back, nothing is ever corrupt.
#[test]
fn random_kills_never_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    let mut rng = Rng(0xC0FF_EE00_1234_5678);
    let mut last = 0u64;
    let mut inside_save = 0;
    let kills = 12;
    for _ in 0..kills {
        let mut child =
            testutil::spawn_helper_with(SAVER_CHILD, &dir, &[("TRAINERD_FAULT_DELAY_MS", "3")]);
        child.wait_for("READY");
        std::thread::sleep(std::time::Duration::from_millis(rng.below(80) as u64));
        let status = child.kill();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        if fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        {
            inside_save += 1;
        }
        let d = CheckpointDir::open(&dir, 3).unwrap();
        if let Some(back) = d.load_newest_valid().unwrap() {
            assert!(back.step >= last, "went back from {last} to {}", back.step);
            assert_same(&sample(back.step, 1000), &back.tensors);
            last = back.step;
        }
        assert!(
            !dir.join(QUARANTINE_DIR).exists(),
            "corrupt checkpoint after a kill"
        );
        assert!(steps_on_disk(&d).len() <= 4);
    }
    assert!(last > 0, "no checkpoint was ever committed");
    eprintln!("random_kills_never_corrupt: {kills} kills, {inside_save} inside a save, reached step {last}");
}
