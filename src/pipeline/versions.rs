//! Keeping every promotion as `versions/N/` (reading them is
//! [`crate::versions`]'s): [`keep`] copies the new champion there after
//! each promotion (staged as `versions/N.staging/`, fsynced, renamed),
//! [`retain`] deletes the oldest beyond `--keep-versions` but never the
//! champion's or the previous champion's ([`doomed`], a pure function), and
//! [`recover`] cleans up after a crash: a leftover staging or deleting dir
//! goes, and a champion or previous champion whose version folder is
//! missing (a crash right after the swap, or a state dir from before
//! versions were kept) is copied in, if its files verify.
//!
//! Fault points: `version.staged` (the copy complete, not yet renamed),
//! `version.delete` (a doomed version renamed aside, not yet removed).

use std::fs;
use std::path::Path;

use crate::store::{fault, StoreError};

fn io_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Copies the model directory `from` (the champion just promoted) to
/// `versions/n/`, crash-safely: the copy is staged, fsynced, then renamed.
pub fn keep(state_dir: &Path, from: &Path, n: u64) -> Result<(), StoreError> {
    let root = crate::state_dir::versions(state_dir);
    fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
    let staging = crate::state_dir::version_staging(state_dir, n);
    remove_if_there(&staging)?;
    crate::store::copy_tree(from, &staging, crate::model::card::CARD)
        .map_err(|e| io_err(&e.path, format!("keeping version {n}: {}", e.source)))?;
    fault::point("version.staged");
    let dest = crate::state_dir::version(state_dir, n);
    if dest.exists() {
        // Only a folder someone put there by hand: numbers are never reused.
        tracing::warn!(path = %dest.display(), "replacing a version folder of the same number");
        delete(state_dir, n)?;
    }
    fs::rename(&staging, &dest).map_err(|e| io_err(&staging, e))?;
    sync_dir(&root)?;
    tracing::info!(version = n, path = %dest.display(), "version kept");
    Ok(())
}

fn remove_if_there(dir: &Path) -> Result<(), StoreError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(dir, e)),
        _ => Ok(()),
    }
}

/// Which of `numbers` retention deletes: all but the newest `keep` and
/// the `protected` (the champion's and the previous champion's), oldest first.
pub fn doomed(numbers: &[u64], keep: usize, protected: &[Option<u64>]) -> Vec<u64> {
    let mut newest_first: Vec<u64> = numbers.to_vec();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    newest_first.dedup();
    let mut out: Vec<u64> = newest_first
        .into_iter()
        .skip(keep)
        .filter(|n| !protected.contains(&Some(*n)))
        .collect();
    out.reverse();
    out
}

/// Deletes the versions beyond the newest `keep` (never the champion's or
/// the previous champion's); returns the numbers deleted.
pub fn retain(state_dir: &Path, keep: usize) -> Result<Vec<u64>, StoreError> {
    let numbers = crate::versions::numbers(state_dir).map_err(|e| io_err(state_dir, e))?;
    let (best, previous) = crate::versions::champions(state_dir);
    let gone = doomed(&numbers, keep, &[best, previous]);
    for &n in &gone {
        delete(state_dir, n)?;
    }
    if !gone.is_empty() {
        tracing::info!(deleted = ?gone, keep, "old versions deleted (--keep-versions)");
    }
    Ok(gone)
}

/// Removes `versions/n/`: renamed aside first, so no half-deleted version
/// is ever listed; [`recover`] finishes a removal a crash interrupted.
fn delete(state_dir: &Path, n: u64) -> Result<(), StoreError> {
    let dir = crate::state_dir::version(state_dir, n);
    let aside = crate::state_dir::version_deleting(state_dir, n);
    remove_if_there(&aside)?;
    fs::rename(&dir, &aside).map_err(|e| io_err(&dir, e))?;
    sync_dir(&crate::state_dir::versions(state_dir))?;
    fault::point("version.delete");
    remove_if_there(&aside)
}

/// After a crash: drops leftover `N.staging` / `N.deleting` folders, then
/// copies in the champion's and previous champion's versions when missing
/// (only if their files verify: a damaged champion is not kept as a version).
pub fn recover(state_dir: &Path) -> Result<(), StoreError> {
    let root = crate::state_dir::versions(state_dir);
    if let Ok(entries) = fs::read_dir(&root) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".staging") || name.ends_with(".deleting") {
                tracing::warn!(path = %entry.path().display(), "removing what an interrupted version write or deletion left");
                remove_if_there(&entry.path())?;
            }
        }
    }
    for dir in [
        crate::state_dir::best(state_dir),
        crate::state_dir::best_previous(state_dir),
    ] {
        restore(state_dir, &dir)?;
    }
    Ok(())
}

/// Copies the model in `dir` to its version folder when that is missing.
fn restore(state_dir: &Path, dir: &Path) -> Result<(), StoreError> {
    let Some(n) = crate::versions::version_in(dir) else {
        return Ok(());
    };
    if crate::state_dir::version(state_dir, n).exists() {
        return Ok(());
    }
    let checked = crate::versions::read_card(dir, n)
        .and_then(|card| crate::versions::verify_files(dir, n, &card));
    match checked {
        Ok(()) => {
            tracing::info!(version = n, from = %dir.display(), "keeping a champion's missing version");
            keep(state_dir, dir, n)
        }
        Err(e) => {
            tracing::warn!("{} is not kept as a version: {e}", dir.display());
            Ok(())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
