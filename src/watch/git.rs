//! Git workspaces: find the repository a watched path lives in, read the
//! commit HEAD points at (by parsing `.git` files; `git rev-parse` as the
//! fallback), and fetch + fast-forward from a remote for `--git-remote`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::WatchError;

/// A git checkout: where its files are and where its metadata is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub work_tree: PathBuf,
    /// `.git` (or a worktree's private dir): holds `HEAD`.
    pub git_dir: PathBuf,
    /// Shared dir holding `refs/` and `packed-refs` (= `git_dir` outside worktrees).
    pub common_dir: PathBuf,
}

impl Repo {
    /// Directories whose changes can move HEAD: watched non-recursively,
    /// except `refs/heads`, which is watched recursively (`feature/x` branches).
    pub fn watch_dirs(&self) -> Vec<(PathBuf, bool)> {
        let mut dirs = vec![(self.git_dir.clone(), false)];
        if self.common_dir != self.git_dir {
            dirs.push((self.common_dir.clone(), false));
        }
        dirs.push((self.common_dir.join("refs").join("heads"), true));
        dirs
    }
}

/// The repository containing `start` (walking up like git does), if any.
pub fn discover(start: &Path) -> Option<Repo> {
    let start = std::path::absolute(start).ok()?;
    let mut dir = Some(start.as_path());
    while let Some(d) = dir {
        let dot = d.join(".git");
        if dot.is_dir() {
            return Some(repo_at(d, dot));
        }
        if dot.is_file() {
            // A worktree or submodule: `.git` is a file naming the real dir.
            let text = fs::read_to_string(&dot).ok()?;
            let target = text.trim().strip_prefix("gitdir:")?.trim();
            return Some(repo_at(d, d.join(target)));
        }
        dir = d.parent();
    }
    None
}

fn repo_at(work_tree: &Path, git_dir: PathBuf) -> Repo {
    let common_dir = fs::read_to_string(git_dir.join("commondir"))
        .map(|c| git_dir.join(c.trim()))
        .unwrap_or_else(|_| git_dir.clone());
    Repo {
        work_tree: work_tree.to_path_buf(),
        git_dir,
        common_dir,
    }
}

fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What HEAD points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The commit id; `None` on a branch with no commits yet.
    pub commit: Option<String>,
    /// The branch checked out (`None` when detached).
    pub branch: Option<String>,
}

/// Reads HEAD from the repository files, falling back to `git rev-parse`
/// for layouts the parser does not know.
pub fn head(repo: &Repo) -> Result<Head, String> {
    match parse_head(repo) {
        Ok(h) => Ok(h),
        Err(parse_err) => rev_parse(repo).map_err(|e| format!("{parse_err}; {e}")),
    }
}

fn parse_head(repo: &Repo) -> Result<Head, String> {
    let path = repo.git_dir.join("HEAD");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = text.trim();
    if is_object_id(text) {
        return Ok(Head {
            commit: Some(text.to_ascii_lowercase()),
            branch: None,
        });
    }
    let refname = text
        .strip_prefix("ref:")
        .map(str::trim)
        .ok_or_else(|| format!("{}: unexpected content {text:?}", path.display()))?;
    let branch = refname.strip_prefix("refs/heads/").map(str::to_string);
    Ok(Head {
        commit: resolve_ref(repo, refname)?,
        branch,
    })
}

/// A ref's commit: the loose file first (it wins over packed-refs), then packed-refs.
fn resolve_ref(repo: &Repo, refname: &str) -> Result<Option<String>, String> {
    for dir in [&repo.git_dir, &repo.common_dir] {
        if let Ok(text) = fs::read_to_string(dir.join(refname)) {
            let id = text.trim();
            if is_object_id(id) {
                return Ok(Some(id.to_ascii_lowercase()));
            }
            return Err(format!("ref {refname}: unexpected content {id:?}"));
        }
    }
    match fs::read_to_string(repo.common_dir.join("packed-refs")) {
        Ok(text) => Ok(text.lines().find_map(|line| {
            let (id, name) = line.split_once(' ')?;
            (name.trim() == refname && is_object_id(id)).then(|| id.to_ascii_lowercase())
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("packed-refs: {e}")),
    }
}

/// `git` with the repository trusted whatever its owner (a mounted checkout
/// is often owned by another uid than the daemon's).
fn git(repo: &Repo) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-c")
        .arg(format!("safe.directory={}", repo.work_tree.display()))
        .arg("-C")
        .arg(&repo.work_tree);
    cmd
}

fn run(mut cmd: Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{:?} failed: {}",
            cmd.get_args().collect::<Vec<_>>(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn rev_parse(repo: &Repo) -> Result<Head, String> {
    let mut cmd = git(repo);
    cmd.args(["rev-parse", "HEAD"]);
    let commit = run(cmd)?;
    let mut cmd = git(repo);
    cmd.args(["symbolic-ref", "--quiet", "--short", "HEAD"]);
    Ok(Head {
        commit: is_object_id(&commit).then_some(commit),
        branch: run(cmd).ok(),
    })
}

/// What a fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The checkout fast-forwarded from `from` to `to`.
    Advanced {
        from: Option<String>,
        to: String,
    },
    UpToDate,
}

/// `git fetch <remote> <branch>` then `git merge --ff-only FETCH_HEAD`: the
/// checked-out branch follows the remote's branch of the same name. Refuses
/// (an error, nothing changed) when HEAD is detached or the histories diverged.
pub fn fetch_fast_forward(repo: &Repo, remote: &str) -> Result<Fetched, String> {
    let before = head(repo)?;
    let branch = before
        .branch
        .clone()
        .ok_or("HEAD is detached: nothing to fast-forward")?;
    let mut cmd = git(repo);
    cmd.args(["fetch", "--quiet", "--no-tags", remote, &branch]);
    run(cmd)?;
    let mut cmd = git(repo);
    cmd.args(["merge", "--ff-only", "--quiet", "FETCH_HEAD"]);
    run(cmd)?;
    let after = head(repo)?;
    match after.commit {
        Some(to) if after.commit != before.commit => Ok(Fetched::Advanced {
            from: before.commit,
            to,
        }),
        _ => Ok(Fetched::UpToDate),
    }
}

/// The commit the checkout containing `path` is at, if it is one (for
/// recording in `model.json` when no watcher runs).
pub fn commit_of(path: &Path) -> Option<String> {
    head(&discover(path)?).ok()?.commit
}

/// The `--git-remote` thread: every `every`, fetch and fast-forward, then
/// call `fetched` (the watcher then looks at HEAD and the files; false ends
/// the thread). It sleeps on `stop`: a message or a dropped sender ends it.
pub(super) fn spawn_fetcher(
    repo: Repo,
    remote: String,
    every: Duration,
    stop: Receiver<()>,
    mut fetched: impl FnMut() -> bool + Send + 'static,
) -> Result<JoinHandle<()>, WatchError> {
    std::thread::Builder::new()
        .name("git-fetch".into())
        .spawn(move || loop {
            if !matches!(stop.recv_timeout(every), Err(RecvTimeoutError::Timeout)) {
                return;
            }
            match fetch_fast_forward(&repo, &remote) {
                Ok(Fetched::Advanced { from, to }) => {
                    tracing::info!(%remote, ?from, %to, "fetched and fast-forwarded the workspace");
                }
                Ok(Fetched::UpToDate) => tracing::debug!(%remote, "workspace up to date"),
                Err(e) => tracing::warn!(%remote, "git fetch failed: {e}"),
            }
            if !fetched() {
                return;
            }
        })
        .map_err(|e| WatchError::Thread(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) -> String {
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
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn head_parses_loose_packed_and_detached() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        sh(w, &["init", "-q"]);
        let sub = w.join("data");
        fs::create_dir(&sub).unwrap();
        let repo = discover(&sub).unwrap();
        assert_eq!(repo.work_tree, std::path::absolute(w).unwrap());
        assert_eq!(head(&repo).unwrap().commit, None, "no commits yet");
        fs::write(w.join("f"), "1").unwrap();
        sh(w, &["add", "f"]);
        sh(w, &["commit", "-qm", "one"]);
        let id = sh(w, &["rev-parse", "HEAD"]);
        let h = parse_head(&repo).unwrap();
        assert_eq!(
            (h.commit.as_deref(), h.branch.as_deref()),
            (Some(id.as_str()), Some("main"))
        );
        sh(w, &["pack-refs", "--all"]);
        assert!(!repo.git_dir.join("refs/heads/main").exists());
        assert_eq!(parse_head(&repo).unwrap().commit, Some(id.clone()));
        sh(w, &["checkout", "-q", "--detach"]);
        assert_eq!(
            parse_head(&repo).unwrap(),
            Head {
                commit: Some(id),
                branch: None
            }
        );
    }

    #[test]
    fn worktrees_resolve_through_commondir() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("main");
        fs::create_dir(&main).unwrap();
        sh(&main, &["init", "-q"]);
        sh(&main, &["commit", "-q", "--allow-empty", "-m", "one"]);
        let wt = dir.path().join("wt");
        sh(
            &main,
            &["worktree", "add", "-q", "-b", "side", wt.to_str().unwrap()],
        );
        sh(&wt, &["commit", "-q", "--allow-empty", "-m", "two"]);
        let repo = discover(&wt).unwrap();
        assert_ne!(repo.git_dir, repo.common_dir);
        let h = parse_head(&repo).unwrap();
        assert_eq!(h.commit, Some(sh(&wt, &["rev-parse", "HEAD"])));
        assert_eq!(h.branch.as_deref(), Some("side"));
    }

    #[test]
    fn fetch_fast_forwards_from_a_bare_remote() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        sh(d, &["init", "-q", "--bare", "remote.git"]);
        sh(d, &["clone", "-q", "remote.git", "author"]);
        let author = d.join("author");
        sh(&author, &["commit", "-q", "--allow-empty", "-m", "one"]);
        sh(&author, &["push", "-q", "origin", "HEAD:main"]);
        sh(d, &["clone", "-q", "--branch", "main", "remote.git", "ws"]);
        let repo = discover(&d.join("ws")).unwrap();
        assert_eq!(
            fetch_fast_forward(&repo, "origin").unwrap(),
            Fetched::UpToDate
        );
        sh(&author, &["commit", "-q", "--allow-empty", "-m", "two"]);
        sh(&author, &["push", "-q", "origin", "HEAD:main"]);
        let two = sh(&author, &["rev-parse", "HEAD"]);
        match fetch_fast_forward(&repo, "origin").unwrap() {
            Fetched::Advanced { to, .. } => assert_eq!(to, two),
            other => panic!("expected a fast-forward, got {other:?}"),
        }
        assert_eq!(commit_of(&d.join("ws")), Some(two));
    }
}
