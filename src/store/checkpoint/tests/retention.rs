//! Tests of the checkpoint directory's upkeep: the last K plus the best are
//! kept, disk use stays within K + 1, and opening cleans temp leftovers.

use super::*;
use crate::store::checkpoint_file::read_file;
use std::sync::{Arc, Mutex};

#[test]
fn retention_keeps_last_k_plus_best_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(tmp.path(), 3).unwrap();
    for step in 1..=10u64 {
        let score = match step {
            4 => Some(0.99),
            s if s % 2 == 0 => Some(0.1 * (s % 5) as f64),
            _ => None,
        };
        d.save(step, score, &meta(step), &sample(step, 8)).unwrap();
        assert!(
            steps_on_disk(&d).len() <= 4,
            "step {step}: {:?}",
            steps_on_disk(&d)
        );
    }
    assert_eq!(steps_on_disk(&d), vec![4, 8, 9, 10]);

    // A new process learns the scores from the files' headers.
    drop(d);
    let mut d = CheckpointDir::open(tmp.path(), 3).unwrap();
    for step in 11..=13 {
        d.save(step, None, &meta(step), &sample(step, 8)).unwrap();
    }
    assert_eq!(steps_on_disk(&d), vec![4, 11, 12, 13]);
    // A new best among the newest K: only K files remain.
    d.save(14, Some(0.999), &meta(14), &sample(14, 8)).unwrap();
    assert_eq!(steps_on_disk(&d), vec![12, 13, 14]);
    let best = read_file(&d.path_for(14)).unwrap();
    assert_eq!(best.score, Some(0.999));
}

#[test]
fn disk_use_stays_within_k_plus_one_while_writing() {
    for k in [2usize, 3, 5] {
        let tmp = tempfile::tempdir().unwrap();
        let mut d = CheckpointDir::open(tmp.path(), k).unwrap();
        let peak = Arc::new(Mutex::new(0usize));
        let seen = peak.clone();
        let dir = tmp.path().to_path_buf();
        d.sink = Box::new(move |p: &Path| {
            let on_disk = ckpt_files(&dir).len() + 1; // + the temp file being opened
            let mut m = seen.lock().unwrap();
            *m = (*m).max(on_disk);
            Ok(Box::new(File::create(p)?) as Box<dyn Sink>)
        });
        for step in 1..=20u64 {
            let score = (step == 3).then_some(0.9);
            d.save(step, score, &meta(step), &sample(step, 8)).unwrap();
            assert!(steps_on_disk(&d).len() <= k + 1);
        }
        assert_eq!(*peak.lock().unwrap(), k + 1, "k={k}");
        assert!(steps_on_disk(&d).contains(&3), "best kept");
    }
}

#[test]
fn open_removes_temp_leftovers_only() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(tmp.path(), 3).unwrap();
    d.save(5, None, &meta(5), &sample(5, 8)).unwrap();
    fs::write(
        tmp.path().join("ckpt-000000000006.tch.tmp"),
        b"half a checkpoint",
    )
    .unwrap();
    fs::write(tmp.path().join("other.tmp"), b"x").unwrap();
    fs::write(tmp.path().join("notes.txt"), b"keep me").unwrap();
    let d = CheckpointDir::open(tmp.path(), 3).unwrap();
    assert_eq!(
        ckpt_files(tmp.path()),
        vec!["ckpt-000000000005.tch", "notes.txt"]
    );
    assert_eq!(d.load_newest_valid().unwrap().unwrap().step, 5);
}

#[test]
fn open_creates_nested_dir_and_empty_dir_loads_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trials/7/checkpoints");
    let d = CheckpointDir::open(&dir, 0).unwrap();
    assert!(dir.is_dir());
    assert_eq!(d.keep_last, 1);
    assert!(d.load_newest_valid().unwrap().is_none());
}

#[test]
fn saving_an_older_step_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = CheckpointDir::open(tmp.path(), 2).unwrap();
    for step in [10, 20, 30] {
        d.save(step, None, &meta(step), &sample(step, 8)).unwrap();
    }
    d.save(5, None, &meta(5), &sample(5, 8)).unwrap();
    assert!(steps_on_disk(&d).contains(&5));
    assert!(steps_on_disk(&d).contains(&30));
}
