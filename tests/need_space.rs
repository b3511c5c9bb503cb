//! `scripts/need-space.sh`, the free-disk check that setup, the first build
//! and the first image build run before writing gigabytes: short of space it
//! stops with one line naming the folder and exit code 28 (ENOSPC).

use std::path::Path;
use std::process::{Command, Output};

fn need_space(dir: &Path, gib: u64) -> Output {
    Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/need-space.sh"))
        .arg(dir)
        .arg(gib.to_string())
        .arg("the test's download")
        .output()
        .unwrap()
}

#[test]
fn short_of_space_exits_28_with_one_line_naming_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    // More than any disk this runs on has.
    let out = need_space(tmp.path(), 1 << 40);
    assert_eq!(out.status.code(), Some(28));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
    assert!(err.contains("the test's download needs about"), "{err}");
}

#[test]
fn enough_space_passes_silently_even_for_a_folder_not_made_yet() {
    let tmp = tempfile::tempdir().unwrap();
    let out = need_space(&tmp.path().join("not/made/yet"), 0);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty() && out.stdout.is_empty(), "{out:?}");
    assert!(!tmp.path().join("not").exists());
}
