//! `trainerd rollback`: [`rollback`] swaps `best/` and `best.previous/`;
//! [`rollback_to`] makes kept version N the champion. Both take the state
//! dir's lock (a running trainerd could promote at the same moment: exit
//! 73, naming its pid) and first finish whatever a crash interrupted
//! (`promote::recover`).
//!
//! `rollback --to N` verifies `versions/N/` (its card and every listed
//! file) before anything moves, copies it to `best.staging/` (card last,
//! every file fsynced) and verifies the copy, then swaps it in as a
//! promotion does: `best/` -> `best.previous/`, `best.staging/` -> `best/`.
//! Fault points: `rollback.staged` (the copy complete) and
//! `rollback.to_swap` (between the two renames); a crash at either is
//! finished or undone by recovery like a promotion's. A version that never
//! existed, is gone, is damaged or cannot be read is refused, nothing changed.

use std::fs;
use std::path::Path;

use super::promote::{read_card, recover, swap_in_staging};
use crate::model::card::{ModelCard, CARD};
use crate::store::{fault, StateLock, StoreError};
use crate::versions::VersionError;

fn io_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

/// The state dir's lock, or "a trainerd runs there" (exit 73).
fn lock(state_dir: &Path) -> Result<StateLock, StoreError> {
    StateLock::acquire(state_dir).map_err(|e| match e {
        StoreError::Locked { path, holder } => StoreError::Busy {
            path,
            holder,
            action: "roll back the champion",
        },
        other => other,
    })
}

/// Swaps `best/` and `best.previous/`; returns the card now in `best/`
/// (`None`: no previous champion to roll back to).
pub fn rollback(state_dir: &Path) -> Result<Option<ModelCard>, StoreError> {
    if !state_dir.is_dir() {
        return Ok(None);
    }
    let _lock = lock(state_dir)?;
    recover(state_dir)?;
    let best = crate::state_dir::best(state_dir);
    let previous = crate::state_dir::best_previous(state_dir);
    let parked = crate::state_dir::best_rollback(state_dir);
    if !previous.join(CARD).exists() {
        return Ok(None);
    }
    if best.exists() {
        fs::rename(&best, &parked).map_err(|e| io_err(&best, e))?;
    }
    fault::point("rollback.swap");
    fs::rename(&previous, &best).map_err(|e| io_err(&previous, e))?;
    if parked.exists() {
        fs::rename(&parked, &previous).map_err(|e| io_err(&parked, e))?;
    }
    fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(state_dir, e))?;
    Ok(read_card(state_dir))
}

/// Why `rollback --to N` did nothing: the state dir (lock, I/O; exit 73 or
/// 74) or the version (exit 66 or 65, see [`VersionError`]).
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Version(#[from] VersionError),
}

impl crate::exit::ExitStatus for RollbackError {
    fn exit_code(&self) -> u8 {
        match self {
            RollbackError::Store(e) => e.exit_code(),
            RollbackError::Version(e) => e.exit_code(),
        }
    }
}

/// What `rollback --to N` did.
#[derive(Debug)]
pub struct RolledTo {
    /// The champion's card now (version N's).
    pub card: ModelCard,
    /// The version now in `best.previous/`.
    pub previous: Option<u64>,
    /// N already was the champion: nothing moved.
    pub already: bool,
}

/// Makes kept version `n` the champion (see the module doc).
pub fn rollback_to(state_dir: &Path, n: u64) -> Result<RolledTo, RollbackError> {
    if !state_dir.is_dir() {
        // Nothing was ever promoted there (and no lock file is created).
        let dir = crate::state_dir::versions(state_dir);
        return Err(VersionError::NeverExisted { n, newest: 0, dir }.into());
    }
    let _lock = lock(state_dir)?;
    recover(state_dir)?;
    let (dir, card) = crate::versions::open_version(state_dir, n)?;
    let already = crate::versions::champions(state_dir).0 == Some(n);
    if !already {
        stage(state_dir, &dir, n, &card)?;
        fault::point("rollback.staged");
        swap_in_staging(state_dir, "rollback.to_swap")?;
    }
    let previous = crate::versions::champions(state_dir).1;
    Ok(RolledTo {
        card,
        previous,
        already,
    })
}

/// Copies version `n` (in `from`) to `best.staging/` and verifies the copy.
fn stage(state_dir: &Path, from: &Path, n: u64, card: &ModelCard) -> Result<(), RollbackError> {
    let staging = crate::state_dir::best_staging(state_dir);
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
    }
    crate::store::copy_tree(from, &staging, CARD)
        .map_err(|e| io_err(&e.path, format!("staging version {n}: {}", e.source)))?;
    if let Err(e) = crate::versions::verify_files(&staging, n, card) {
        let _ = fs::remove_dir_all(&staging);
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
