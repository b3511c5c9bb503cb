//! Tests of `pipeline::versions`: retention's choice, and each crash
//! window of keeping and deleting a version, on real promotions.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::*;
use crate::pipeline::promote::recover as recover_all;
use crate::pipeline::promote::tests::{promote_keeping, promote_trial};
use crate::pipeline::rollback::{rollback, rollback_to};

/// Every file under `dir` (relative path -> bytes).
pub(crate) fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn kept(d: &Path) -> Vec<u64> {
    crate::versions::numbers(d).unwrap()
}

#[test]
fn retention_keeps_the_newest_and_never_the_champion_or_previous() {
    let all = [1, 2, 3, 4, 5, 6];
    assert_eq!(doomed(&all, 3, &[None, None]), [1, 2, 3]);
    assert_eq!(doomed(&all, 3, &[Some(6), Some(5)]), [1, 2, 3]);
    // Rolled back to 2, the previous champion 1: both stay past the limit.
    assert_eq!(doomed(&all, 2, &[Some(2), Some(1)]), [3, 4]);
    assert_eq!(doomed(&all, 1, &[Some(3), None]), [1, 2, 4, 5]);
    assert!(doomed(&all, 10, &[None, None]).is_empty());
    assert!(doomed(&[], 1, &[Some(1), Some(2)]).is_empty());
    // Whatever the order the folder listed them in.
    assert_eq!(doomed(&[5, 1, 3], 1, &[None, Some(1)]), [3]);
}

#[test]
fn each_promotion_is_kept_whole_and_the_oldest_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for trial in 1..=4 {
        promote_keeping(d, trial, 2);
    }
    assert_eq!(kept(d), [3, 4]);
    let best = files_under(&d.join("best"));
    assert!(best.contains_key("report.html") && best.contains_key("model.onnx"));
    assert_eq!(
        files_under(&d.join("versions/4")),
        best,
        "a whole copy of best/"
    );
    assert_eq!(
        files_under(&d.join("versions/3")),
        files_under(&d.join("best.previous"))
    );
    assert!(
        fs::read_dir(d.join("versions")).unwrap().count() == 2,
        "no staging left"
    );
}

#[test]
fn retention_never_deletes_the_champion_or_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for trial in 1..=3 {
        promote_trial(d, trial);
    }
    rollback_to(d, 1).unwrap();
    // Champion 1 (rolled back to), previous 3: retention to one version
    // (as a study start with --keep-versions 1 applies it) keeps both.
    assert_eq!(retain(d, 1).unwrap(), [2]);
    assert_eq!(kept(d), [1, 3]);
    // A promotion: 4 is champion, 1 previous; 3 is neither now.
    promote_keeping(d, 4, 1);
    assert_eq!(kept(d), [1, 4]);
    rollback(d).unwrap();
    assert_eq!(
        retain(d, 1).unwrap(),
        Vec::<u64>::new(),
        "1 champion, 4 previous and newest"
    );
    promote_keeping(d, 5, 1);
    assert_eq!(kept(d), [1, 5]);
}

#[test]
fn recovery_finishes_each_crash_window_of_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    promote_trial(d, 1);
    promote_trial(d, 2);
    let v2 = files_under(&d.join("versions/2"));
    // A crash after the swap, before the version was written.
    fs::remove_dir_all(d.join("versions/2")).unwrap();
    // A crash inside a copy and inside a deletion.
    fs::create_dir_all(d.join("versions/3.staging/repository")).unwrap();
    fs::rename(d.join("versions/1"), d.join("versions/1.deleting")).unwrap();
    recover_all(d).unwrap();
    assert_eq!(files_under(&d.join("versions/2")), v2, "copied in again");
    // The previous champion's version is restored too: never lost.
    assert_eq!(kept(d), [1, 2]);
    assert!(!d.join("versions/3.staging").exists());
    assert!(!d.join("versions/1.deleting").exists());
    recover_all(d).unwrap();
    assert_eq!(kept(d), [1, 2], "recovery is idempotent");
}

#[test]
fn a_state_dir_from_before_versions_gets_its_champions_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    promote_trial(d, 1);
    promote_trial(d, 2);
    fs::remove_dir_all(d.join("versions")).unwrap();
    // A damaged champion is not kept as a version (nor repaired).
    fs::write(d.join("best/model.onnx"), b"edited").unwrap();
    recover_all(d).unwrap();
    assert_eq!(kept(d), [1]);
    promote_trial(d, 3);
    assert_eq!(kept(d), [1, 3], "numbers go on from the champion's");
}
