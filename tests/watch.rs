//! The workspace watcher against a real filesystem and real git: new data
//! versions (renamed in or written in place), identical rewrites, half-written
//! files, bad configs, commits, a replaced data dir, and `--git-remote`.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use trainerd::watch::{WatchEvent, WatchOptions, WatchPaths, WatchReason, Watcher};

/// Generous: the watcher aims at well under 2 s; the tests must not depend on it.
const WAIT: Duration = Duration::from_secs(10);
/// How long "no event" is given to prove itself (several debounce periods).
const QUIET: Duration = Duration::from_secs(3);

fn idx(dims: &[u32], fill: u8) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    v.extend((0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(fill)));
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A data version: `n` 4x4 images and labels; `fill` varies the content.
fn images(n: u32, fill: u8) -> Vec<u8> {
    gz(&idx(&[n, 4, 4], fill))
}
fn labels(n: u32) -> Vec<u8> {
    gz(&idx(&[n], 0))
}

/// A data version in the MNIST layout: `n` training and 3 test records.
fn write_version(dir: &Path, n: u32, fill: u8) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), images(n, fill)).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), labels(n)).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), images(3, 0)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), labels(3)).unwrap();
}

/// The way users replace a file: write a temp file next to it, then rename over.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(".upload.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn opts(poll: bool) -> WatchOptions {
    WatchOptions {
        poll,
        poll_interval: Duration::from_millis(300),
        ..WatchOptions::default()
    }
}

fn next(w: &Watcher) -> WatchEvent {
    let t = std::time::Instant::now();
    let ev = w
        .events()
        .recv_timeout(WAIT)
        .unwrap_or_else(|e| panic!("no watch event within {WAIT:?}: {e}"));
    // Information for people reading the log, never asserted.
    eprintln!("event after {:?}: {:?}", t.elapsed(), ev.reasons);
    ev
}

fn assert_quiet(w: &Watcher) {
    match w.events().recv_timeout(QUIET) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("expected no event, got {other:?}"),
    }
}

fn data_changed(ev: &WatchEvent) -> Option<&str> {
    ev.reasons.iter().find_map(|r| match r {
        WatchReason::DataChanged { fingerprint } => Some(fingerprint.as_str()),
        _ => None,
    })
}

fn new_version_is_seen(poll: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_version(&data, 8, 1);
    let w = Watcher::spawn(
        WatchPaths {
            data_dir: data.clone(),
            config: None,
        },
        opts(poll),
    )
    .unwrap();
    let base = w.current().fingerprint.expect("baseline fingerprint");

    // Copy then rename, labels and images (the pair must agree).
    replace(&data.join("train-labels-idx1-ubyte.gz"), &labels(9));
    replace(&data.join("train-images-idx3-ubyte.gz"), &images(9, 2));
    let ev = next(&w);
    assert!(ev.retrain(), "{ev:?}");
    let fp1 = data_changed(&ev).expect("data changed").to_string();
    assert_ne!(fp1, base);
    assert_eq!(ev.fingerprint.as_deref(), Some(fp1.as_str()));
    assert_eq!(w.current().fingerprint.as_deref(), Some(fp1.as_str()));

    // In place.
    std::fs::write(data.join("train-images-idx3-ubyte.gz"), images(9, 3)).unwrap();
    let ev = next(&w);
    let fp2 = data_changed(&ev).expect("data changed").to_string();
    assert_ne!(fp2, fp1);

    // The same content again, both ways: no event.
    std::fs::write(data.join("train-images-idx3-ubyte.gz"), images(9, 3)).unwrap();
    replace(&data.join("train-images-idx3-ubyte.gz"), &images(9, 3));
    std::fs::write(data.join("README"), "not data").unwrap();
    assert_quiet(&w);
}

#[test]
fn new_data_version_is_an_event_and_same_content_is_not() {
    new_version_is_seen(false);
}

#[test]
fn polling_backend_sees_new_data_versions() {
    new_version_is_seen(true);
}

#[test]
fn half_written_file_is_reported_and_ignored_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_version(&data, 8, 1);
    let w = Watcher::spawn(
        WatchPaths {
            data_dir: data.clone(),
            config: None,
        },
        opts(false),
    )
    .unwrap();
    let base = w.current().fingerprint;

    let full = images(8, 5);
    std::fs::write(
        data.join("train-images-idx3-ubyte.gz"),
        &full[..full.len() / 2],
    )
    .unwrap();
    let ev = next(&w);
    assert!(
        !ev.retrain(),
        "a half-written file must not start a retrain: {ev:?}"
    );
    match &ev.reasons[..] {
        [WatchReason::DataInvalid { problems }] => {
            assert!(
                problems[0].contains("train-images-idx3-ubyte.gz"),
                "{problems:?}"
            )
        }
        other => panic!("expected DataInvalid, got {other:?}"),
    }
    assert_eq!(w.current().fingerprint, base, "nothing accepted meanwhile");

    // A problem that persists is reported once.
    assert_quiet(&w);

    std::fs::write(data.join("train-images-idx3-ubyte.gz"), &full).unwrap();
    let ev = next(&w);
    assert!(ev.retrain(), "{ev:?}");
    assert!(data_changed(&ev).is_some());
}

#[test]
fn raw_idx_shorter_than_its_header_says_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_version(&data, 4, 1);
    std::fs::remove_file(data.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), idx(&[3], 0)).unwrap();
    let w = Watcher::spawn(
        WatchPaths {
            data_dir: data.clone(),
            config: None,
        },
        opts(false),
    )
    .unwrap();
    assert!(
        w.current().fingerprint.is_some(),
        "raw (uncompressed) IDX is data too"
    );
    let mut short = idx(&[3], 0);
    short.truncate(10);
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), &short).unwrap();
    let ev = next(&w);
    assert!(
        matches!(&ev.reasons[..], [WatchReason::DataInvalid { .. }]),
        "{ev:?}"
    );
}

#[test]
fn config_change_and_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_version(&data, 4, 1);
    let cfg = dir.path().join("trainerd.toml");
    std::fs::write(&cfg, "epochs = 2\n").unwrap();
    let w = Watcher::spawn(
        WatchPaths {
            data_dir: data,
            config: Some(cfg.clone()),
        },
        opts(false),
    )
    .unwrap();
    replace(&cfg, b"epochs = \n");
    let ev = next(&w);
    assert!(
        matches!(&ev.reasons[..], [WatchReason::ConfigInvalid { .. }]),
        "{ev:?}"
    );
    replace(&cfg, b"epochs = 3\n");
    let ev = next(&w);
    assert!(
        matches!(&ev.reasons[..], [WatchReason::ConfigChanged { .. }]),
        "{ev:?}"
    );
    // Back to identical content through an editor-style replace: nothing new.
    replace(&cfg, b"epochs = 3\n");
    assert_quiet(&w);
}

#[test]
fn replaced_data_dir_is_watched_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_version(&data, 4, 1);
    let w = Watcher::spawn(
        WatchPaths {
            data_dir: data.clone(),
            config: None,
        },
        opts(false),
    )
    .unwrap();
    let staged = dir.path().join("data.new");
    write_version(&staged, 5, 2);
    std::fs::rename(&data, dir.path().join("data.old")).unwrap();
    std::fs::rename(&staged, &data).unwrap();
    let first = data_changed(&next(&w)).expect("data changed").to_string();
    // A change inside the new directory is seen: the watch moved with it.
    std::fs::write(data.join("train-images-idx3-ubyte.gz"), images(5, 9)).unwrap();
    let second = data_changed(&next(&w)).expect("data changed").to_string();
    assert_ne!(first, second);
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn commit_in_watched_checkout_carries_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    git(ws, &["init", "-q"]);
    write_version(&ws.join("data"), 4, 1);
    std::fs::write(ws.join("trainerd.toml"), "epochs = 1\n").unwrap();
    git(ws, &["add", "."]);
    git(ws, &["commit", "-qm", "one"]);
    let one = git(ws, &["rev-parse", "HEAD"]);
    let w = Watcher::spawn(
        WatchPaths {
            data_dir: ws.join("data"),
            config: Some(ws.join("trainerd.toml")),
        },
        opts(false),
    )
    .unwrap();
    assert_eq!(w.current().commit.as_deref(), Some(one.as_str()));

    // A commit that changes nothing the study reads still moves HEAD.
    git(ws, &["commit", "-q", "--allow-empty", "-m", "two"]);
    let two = git(ws, &["rev-parse", "HEAD"]);
    let ev = next(&w);
    assert_eq!(ev.reasons, vec![WatchReason::GitCommit { id: two.clone() }]);
    assert_eq!(ev.commit.as_deref(), Some(two.as_str()));

    // A commit with new data: one event, both reasons.
    write_version(&ws.join("data"), 6, 3);
    git(ws, &["add", "."]);
    git(ws, &["commit", "-qm", "three"]);
    let three = git(ws, &["rev-parse", "HEAD"]);
    let mut ev = next(&w);
    // The data files may settle before the commit lands; then the commit follows.
    if !ev
        .reasons
        .iter()
        .any(|r| matches!(r, WatchReason::GitCommit { .. }))
    {
        ev = next(&w);
    }
    assert_eq!(ev.commit.as_deref(), Some(three.as_str()));
    assert!(
        ev.reasons.contains(&WatchReason::GitCommit { id: three }),
        "{ev:?}"
    );
}

#[test]
fn git_remote_is_fetched_and_fast_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q", "--bare", "remote.git"]);
    git(d, &["clone", "-q", "remote.git", "author"]);
    let author = d.join("author");
    write_version(&author.join("data"), 4, 1);
    git(&author, &["add", "."]);
    git(&author, &["commit", "-qm", "one"]);
    git(&author, &["push", "-q", "origin", "HEAD:main"]);
    git(d, &["clone", "-q", "--branch", "main", "remote.git", "ws"]);
    let ws = d.join("ws");
    let w = Watcher::spawn(
        WatchPaths {
            data_dir: ws.join("data"),
            config: None,
        },
        WatchOptions {
            git_remote: Some("origin".into()),
            git_fetch_every: Duration::from_millis(500),
            ..opts(false)
        },
    )
    .unwrap();
    write_version(&author.join("data"), 7, 2);
    git(&author, &["commit", "-qam", "two"]);
    git(&author, &["push", "-q", "origin", "HEAD:main"]);
    let two = git(&author, &["rev-parse", "HEAD"]);
    let ev = next(&w);
    assert!(
        ev.reasons
            .contains(&WatchReason::GitCommit { id: two.clone() }),
        "{ev:?}"
    );
    assert!(
        data_changed(&ev).is_some(),
        "the fast-forward brought new data: {ev:?}"
    );
    assert_eq!(git(&ws, &["rev-parse", "HEAD"]), two);
}
