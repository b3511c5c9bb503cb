//! Push hooks against a local bare repository: payloads signed exactly as
//! GitHub, GitLab and Gitea document them start a retrain on the pushed
//! commit (new data each time, so its model is promoted and the commit ends
//! up in `model.json`); wrongly signed, unsigned, replayed and other-branch
//! requests change nothing.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, s, spawn_logged, synth_data, trainerd, wait_for};
use hmac::{Hmac, Mac};
use serde_json::Value;

const SECRET: &str = "hook-s3cret";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn hmac_hex(body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// POSTs `body` to `/hooks/git` with `headers`; returns status and body.
fn post(port: u16, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut req = agent
        .post(&format!("http://127.0.0.1:{port}/hooks/git"))
        .header("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let mut resp = req.send(body).expect("the daemon answers");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

fn payload(git_ref: &str, after: &str) -> Vec<u8> {
    serde_json::json!({"ref": git_ref, "before": "0".repeat(40), "after": after})
        .to_string()
        .into_bytes()
}

/// Headers that sign a body, given a delivery id.
type Signer = fn(&[u8], &str) -> Vec<(&'static str, String)>;

fn github(body: &[u8], delivery: &str) -> Vec<(&'static str, String)> {
    vec![
        ("X-GitHub-Event", "push".into()),
        ("X-GitHub-Delivery", delivery.into()),
        ("X-Hub-Signature-256", format!("sha256={}", hmac_hex(body))),
    ]
}

fn studies_started(state: &Path) -> usize {
    fs::read_to_string(state.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "study_started")
        .count()
}

fn champion_commit(state: &Path) -> Option<String> {
    let card: Value =
        serde_json::from_slice(&fs::read(state.join("best/model.json")).ok()?).ok()?;
    card["commit"].as_str().map(str::to_string)
}

/// A bare remote, the daemon's workspace cloned from it, a developer's clone.
struct Repos {
    _tmp: tempfile::TempDir,
    work: std::path::PathBuf,
    dev: std::path::PathBuf,
    state: std::path::PathBuf,
}

fn repos() -> Repos {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let remote = root.join("remote.git");
    fs::create_dir_all(&remote).unwrap();
    git(
        &remote,
        &["init", "--quiet", "--bare", "--initial-branch=main"],
    );
    let dev = root.join("dev");
    git(root, &["clone", "--quiet", s(&remote), s(&dev)]);
    git(&dev, &["checkout", "--quiet", "-b", "main"]);
    synth_data(&dev, 600, 100);
    git(&dev, &["add", "."]);
    git(&dev, &["commit", "--quiet", "-m", "data"]);
    git(&dev, &["push", "--quiet", "origin", "main"]);
    let work = root.join("work");
    git(root, &["clone", "--quiet", s(&remote), s(&work)]);
    Repos {
        work,
        dev,
        state: root.join("state"),
        _tmp: tmp,
    }
}

/// A new commit on `branch` of the developer's clone, with new data (so
/// its model replaces the champion, validated on other data), pushed; its id.
fn push_commit(r: &Repos, branch: &str, n: usize) -> String {
    git(&r.dev, &["checkout", "--quiet", "-B", branch]);
    synth_data(&r.dev, 600 + 20 * (n + 1), 100);
    git(&r.dev, &["add", "."]);
    git(&r.dev, &["commit", "--quiet", "-m", &format!("change {n}")]);
    git(&r.dev, &["push", "--quiet", "origin", branch]);
    let id = git(&r.dev, &["rev-parse", "HEAD"]);
    git(&r.dev, &["checkout", "--quiet", "main"]);
    id
}

#[test]
fn signed_pushes_retrain_and_everything_else_changes_nothing() {
    let r = repos();
    let port = free_port();
    let log = r.state.with_extension("log");
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = trainerd(&["run", "--data-dir", s(&r.work), "--state-dir", s(&r.state)]);
    cmd.args([
        "--metrics-addr",
        &addr,
        "--preset",
        "linear",
        "--epochs",
        "1",
        "--max-trials",
        "1",
    ])
    .env("TRAINERD_HOOK_SECRET", SECRET);
    let mut child = spawn_logged(&mut cmd, &log);
    let first = git(&r.work, &["rev-parse", "HEAD"]);
    wait_for("the first champion", &mut child, &log, || {
        champion_commit(&r.state).is_some()
    });
    assert_eq!(champion_commit(&r.state).as_deref(), Some(first.as_str()));

    // One signed push per forge, each signed its own documented way.
    let forges: [(&str, Signer); 3] = [
        ("github", github),
        ("gitlab", |_, d| {
            vec![
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Event-UUID", d.into()),
                ("X-Gitlab-Token", SECRET.into()),
            ]
        }),
        ("gitea", |b, d| {
            vec![
                ("X-Gitea-Event", "push".into()),
                ("X-Gitea-Delivery", d.into()),
                ("X-Gitea-Signature", hmac_hex(b)),
            ]
        }),
    ];
    for (n, (forge, headers)) in forges.iter().enumerate() {
        let before = studies_started(&r.state);
        let commit = push_commit(&r, "main", n);
        let body = payload("refs/heads/main", &commit);
        let sent = Instant::now();
        let (status, text) = post(port, &headers(&body, &format!("{forge}-1")), &body);
        assert_eq!(status, 202, "{forge}: {text}");
        wait_for("the retrain", &mut child, &log, || {
            studies_started(&r.state) > before
        });
        eprintln!(
            "{forge}: a study started {:?} after the hook",
            sent.elapsed()
        );
        wait_for("the retrained champion", &mut child, &log, || {
            champion_commit(&r.state).as_deref() == Some(commit.as_str())
        });
    }

    // None of these may fetch or retrain.
    let head = git(&r.work, &["rev-parse", "HEAD"]);
    let studies = studies_started(&r.state);
    let pending = push_commit(&r, "main", 10);
    let body = payload("refs/heads/main", &pending);
    let mut wrong = github(&body, "bad-1");
    wrong[2].1 = format!("sha256={}", "0".repeat(64));
    let (status, text) = post(port, &wrong, &body);
    assert_eq!(status, 401, "wrongly signed: {text}");
    let (status, text) = post(port, &github(&body, "bad-2")[..2], &body);
    assert_eq!(status, 401, "unsigned: {text}");
    assert!(text.contains("X-Hub-Signature-256"), "{text}");
    let (status, text) = post(
        port,
        &github(&payload("refs/heads/main", &head), "github-1"),
        &payload("refs/heads/main", &head),
    );
    assert_eq!(status, 409, "replayed delivery: {text}");
    let feature = push_commit(&r, "feature", 11);
    let other = payload("refs/heads/feature", &feature);
    let (status, text) = post(port, &github(&other, "feature-1"), &other);
    assert_eq!(status, 200, "another branch: {text}");
    assert!(text.contains("ignored"), "{text}");
    let (status, _) = post(port, &[("X-GitHub-Event", "issues".into())], b"{}");
    assert_eq!(status, 401, "an unsigned other event");
    // Longer than the watcher's debounce: a study would have started by now.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        git(&r.work, &["rev-parse", "HEAD"]),
        head,
        "the workspace did not move"
    );
    assert_eq!(studies_started(&r.state), studies, "no study started");

    // SAFETY: kill(2) on the child's pid only sends a signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}
