//! Tests of `rollback --to N`: it makes N the champion, refuses what it
//! cannot verify with nothing changed, and a crash at either of its fault
//! points is finished or undone by recovery.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::*;
use crate::exit::ExitStatus;
use crate::pipeline::promote::tests::{promote_trial, trial_in};
use crate::pipeline::versions::tests::files_under;

/// Three promotions (trials 1, 2, 3 as versions 1, 2, 3).
fn three(d: &Path) {
    for trial in 1..=3 {
        promote_trial(d, trial);
    }
}

/// Everything saved (path -> SHA-256), lock file aside.
fn saved(d: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    let mut all = files_under(d);
    all.remove(crate::state_dir::LOCK_FILE);
    all.into_iter()
        .map(|(path, bytes)| (path, hex::encode(sha2::Sha256::digest(bytes))))
        .collect()
}

fn version_of(d: &Path, which: &str) -> Option<u64> {
    crate::versions::version_in(&d.join(which))
}

#[test]
fn rollback_to_makes_n_the_champion_and_the_champion_previous() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    three(d);
    let done = rollback_to(d, 1).unwrap();
    assert_eq!(
        (done.card.version, done.previous, done.already),
        (1, Some(3), false)
    );
    assert_eq!(
        (version_of(d, "best"), trial_in(d, "best")),
        (Some(1), Some(1))
    );
    assert_eq!(version_of(d, "best.previous"), Some(3));
    assert_eq!(
        files_under(&d.join("best")),
        files_under(&d.join("versions/1"))
    );
    assert!(!d.join("best.staging").exists());
    let again = rollback_to(d, 1).unwrap();
    assert!(again.already, "already the champion: nothing moves");
    assert_eq!(version_of(d, "best.previous"), Some(3));
    // Plain rollback still swaps the two; the next promotion counts on.
    rollback(d).unwrap();
    assert_eq!(version_of(d, "best"), Some(3));
    promote_trial(d, 4);
    assert_eq!(version_of(d, "best"), Some(4));
}

#[test]
fn a_version_that_is_missing_damaged_or_misnumbered_is_refused_with_nothing_changed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    three(d);
    promote_trial(d, 4);
    // Neither the champion's (4) nor the previous one's (3): gone for good.
    fs::remove_dir_all(d.join("versions/2")).unwrap();
    fs::write(d.join("versions/1/model.pt"), b"edited").unwrap();
    let before = saved(d);
    let cases: [(u64, u8, &str); 4] = [
        (9, 66, "version 9 never existed: the newest promotion"),
        (0, 66, "version 0 never existed"),
        (2, 66, "version 2 is gone"),
        (1, 65, "versions/1/model.pt"),
    ];
    for (n, code, says) in cases {
        let err = rollback_to(d, n).unwrap_err();
        assert_eq!(err.exit_code(), code, "{n}: {err}");
        assert!(err.to_string().contains(says), "{n}: {err}");
        assert_eq!(saved(d), before, "{n}: nothing changed");
    }
    // A card that names another version: a folder moved or copied by hand.
    fs::rename(d.join("versions/1"), d.join("versions/7")).unwrap();
    let err = rollback_to(d, 7).unwrap_err().to_string();
    assert!(err.contains("says it is version 1, not 7"), "{err}");
    let none = d.join("nothing-here");
    let err = rollback_to(&none, 1).unwrap_err();
    assert_eq!(err.exit_code(), 66);
    assert!(!none.exists(), "no state dir created");
}

#[test]
fn an_unreadable_version_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("SKIP an_unreadable_version_is_refused: root reads a mode-000 folder anyway");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    three(d);
    let v1 = d.join("versions/1");
    fs::set_permissions(&v1, fs::Permissions::from_mode(0o000)).unwrap();
    let err = rollback_to(d, 1).unwrap_err();
    fs::set_permissions(&v1, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(err.exit_code(), 66, "{err}");
    assert!(err.to_string().contains("cannot be read"), "{err}");
    assert_eq!(version_of(d, "best"), Some(3));
}

#[test]
fn rollback_to_needs_the_state_dir_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    three(d);
    let lock = StateLock::acquire(d).unwrap();
    let err = rollback_to(d, 1).unwrap_err();
    assert_eq!(err.exit_code(), 73);
    assert!(err.to_string().contains("roll back"), "{err}");
    drop(lock);
    assert_eq!(version_of(d, "best"), Some(3), "nothing moved");
}

#[test]
fn a_crash_at_either_fault_point_recovers_to_a_consistent_champion() {
    // At `rollback.staged`: the copy complete in best.staging/, nothing swapped.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    three(d);
    let (from, card) = crate::versions::open_version(d, 1).unwrap();
    stage(d, &from, 1, &card).unwrap();
    recover(d).unwrap();
    assert_eq!(
        (version_of(d, "best"), version_of(d, "best.previous")),
        (Some(3), Some(2))
    );
    assert!(
        !d.join("best.staging").exists(),
        "the unfinished rollback is undone"
    );

    // At `rollback.to_swap`: best/ moved to best.previous/, no best/.
    stage(d, &from, 1, &card).unwrap();
    fs::remove_dir_all(d.join("best.previous")).unwrap();
    fs::rename(d.join("best"), d.join("best.previous")).unwrap();
    recover(d).unwrap();
    assert_eq!(
        (version_of(d, "best"), version_of(d, "best.previous")),
        (Some(1), Some(3))
    );
    crate::export::verify(&d.join("best"), &card).unwrap();
    assert!(!d.join("best.staging").exists());
    assert_eq!(
        crate::versions::numbers(d).unwrap(),
        [1, 2, 3],
        "no version lost"
    );
}
