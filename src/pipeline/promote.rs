//! Promotion: the champion model written atomically to `best/`, the previous
//! one kept in `best.previous/` (`trainerd rollback` swaps them back, see
//! `pipeline::rollback`), every promotion kept as `versions/N/`
//! (`pipeline::versions`).
//!
//! Crash windows and their recovery ([`recover`], run at every start and by
//! `rollback`): promotion writes `best.staging/` completely (weights, ONNX,
//! TorchScript, model repository, model card, report, then `model.json`), then renames `best/` -> `best.previous/` and `best.staging/` ->
//! `best/`. A crash between the two renames leaves no `best/` but a complete
//! staging dir: recovery finishes the rename. Rollback renames `best/` ->
//! `best.rollback/`, `best.previous/` -> `best/`, `best.rollback/` ->
//! `best.previous/`; a crash in between leaves `best.rollback/`, and recovery
//! completes whichever renames are missing. `rollback --to N` stages a copy
//! of `versions/N/` in `best.staging/` and swaps it in as a promotion does.
//! So at most a moment passes with no `best/`, and never does a `best/`
//! hold a half-written model. Recovery then finishes the versions' own
//! crash windows (`pipeline::versions::recover`).

use std::fs;
use std::path::{Path, PathBuf};

use tch::Tensor;

pub use crate::model::card::{CardError, ModelCard, CARD, MODEL_CARD_FORMAT};
use crate::store::{fault, write_bytes_atomic, AtomicWriteError, StoreError};

fn io_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

fn atomic_err(e: AtomicWriteError) -> StoreError {
    io_err(&e.path, e.source)
}

/// Promotes a model into `<state>/best/`: everything is staged in
/// `best.staging/` (weights and every exported form, the `extras` such as
/// `report.html`, then the card, last, so a staged card means a complete
/// champion), then the previous
/// champion moves to `best.previous/` (for `trainerd rollback`) and the
/// staging dir becomes `best/`. Then the new champion is kept as
/// `versions/N/` and versions beyond the newest `keep_versions` are deleted
/// (`pipeline::versions`). A crash anywhere is finished or undone by
/// [`recover`]. A diverged model (non-finite card) is refused.
pub fn promote(
    state_dir: &Path,
    weights: &[(String, Tensor)],
    card: &ModelCard,
    extras: &[(&str, &[u8])],
    keep_versions: usize,
) -> Result<PathBuf, StoreError> {
    let staging = crate::state_dir::best_staging(state_dir);
    if card.diverged() {
        return Err(io_err(
            &staging,
            "refusing to promote a diverged model (non-finite loss or accuracy)",
        ));
    }
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
    }
    // Every form of the model (weights, ONNX, TorchScript, the model
    // repository, the model card), each listed with its SHA-256 and size so
    // that `predict`, `serve` and `export` (through `export::verify`) refuse
    // a flipped or truncated file. The report is not listed: a missing or
    // rewritten report must not stop a model from being used.
    let mut card = card.clone();
    card.version = next_version(state_dir);
    let files = crate::export::write_all(&staging, &card, weights)
        .map_err(|e| io_err(&staging, format!("exporting the champion: {e}")))?;
    fault::point("promote.exported");
    for (name, bytes) in extras {
        write_bytes_atomic(&staging.join(name), bytes).map_err(atomic_err)?;
    }
    card.files = files.files;
    let json = serde_json::to_vec_pretty(&card).map_err(|e| io_err(&staging, e))?;
    write_bytes_atomic(&staging.join(CARD), &json).map_err(atomic_err)?;
    fault::point("promote.staged");
    let best = swap_in_staging(state_dir, "promote.swap")?;
    super::versions::keep(state_dir, &best, card.version)?;
    super::versions::retain(state_dir, keep_versions)?;
    Ok(best)
}

/// Makes the complete `best.staging/` the champion: `best/` (if any)
/// replaces `best.previous/`, then the staging dir becomes `best/`, the
/// state dir fsynced. `point` is the fault point between the two renames;
/// a crash there leaves no `best/` and a complete staging dir, which
/// [`recover`] renames.
pub(super) fn swap_in_staging(state_dir: &Path, point: &str) -> Result<PathBuf, StoreError> {
    let best = crate::state_dir::best(state_dir);
    let staging = crate::state_dir::best_staging(state_dir);
    let previous = crate::state_dir::best_previous(state_dir);
    if best.exists() {
        if previous.exists() {
            fs::remove_dir_all(&previous).map_err(|e| io_err(&previous, e))?;
        }
        fs::rename(&best, &previous).map_err(|e| io_err(&best, e))?;
    }
    fault::point(point);
    fs::rename(&staging, &best).map_err(|e| io_err(&best, e))?;
    fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(state_dir, e))?;
    Ok(best)
}

/// One more than the highest version this state dir has given out (kept in
/// `versions/`, or in `best/` and `best.previous/`): a rollback puts an
/// older one in front, and the next promotion still counts up.
fn next_version(state_dir: &Path) -> u64 {
    crate::versions::newest(state_dir) + 1
}

/// Whether a finished trial should replace the champion.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// It already is the champion (a crash came after promoting it).
    AlreadyChampion,
    Promote(String),
    Keep(String),
}

/// Decides promotion. Only validation accuracy counts, and only against a
/// champion validated on the same split (data fingerprint, seed, size); a
/// champion from other data is replaced by the first finished trial.
pub fn verdict(champion: Option<&ModelCard>, candidate: &ModelCard, margin: f64) -> Verdict {
    if candidate.diverged() {
        return Verdict::Keep("the candidate diverged".into());
    }
    let Some(c) = champion else {
        return Verdict::Promote("no champion yet".into());
    };
    if c.diverged() {
        return Verdict::Promote("the champion diverged".into());
    }
    if !c.study.is_empty() && c.study == candidate.study && c.trial == candidate.trial {
        return Verdict::AlreadyChampion;
    }
    if c.data_fingerprint != candidate.data_fingerprint
        || c.seed != candidate.seed
        || c.val_size != candidate.val_size
    {
        return Verdict::Promote(
            "the champion was validated on other data or another split".into(),
        );
    }
    let (new, old) = (candidate.val_accuracy, c.val_accuracy);
    if new > old && new >= old + margin {
        Verdict::Promote(format!(
            "validation {new:.4} beats the champion's {old:.4} (margin {margin})"
        ))
    } else {
        Verdict::Keep(format!(
            "validation {new:.4} does not beat the champion's {old:.4} by {margin}"
        ))
    }
}

/// Finishes a promotion or rollback that a crash interrupted (see the module doc).
pub fn recover(state_dir: &Path) -> Result<(), StoreError> {
    let best = crate::state_dir::best(state_dir);
    let previous = crate::state_dir::best_previous(state_dir);
    let staging = crate::state_dir::best_staging(state_dir);
    let parked = crate::state_dir::best_rollback(state_dir);
    let rename = |from: &Path, to: &Path| -> Result<(), StoreError> {
        tracing::warn!(from = %from.display(), to = %to.display(), "completing an interrupted promotion or rollback");
        fs::rename(from, to).map_err(|e| io_err(from, e))
    };
    if parked.exists() {
        if !best.exists() && previous.exists() {
            rename(&previous, &best)?;
        }
        if !previous.exists() {
            rename(&parked, &previous)?;
        } else {
            fs::remove_dir_all(&parked).map_err(|e| io_err(&parked, e))?;
        }
    }
    if !best.exists() && staging.join(CARD).exists() {
        rename(&staging, &best)?;
    } else if staging.exists() {
        // An unfinished promotion: the model it staged is rewritten if it still wins.
        fs::remove_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
    }
    for dir in [&best, &previous] {
        remove_temp_files(dir);
    }
    fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(state_dir, e))?;
    super::versions::recover(state_dir)
}

/// Removes the temp files of atomic writes a crash interrupted (`.NAME.tmp-PID`,
/// left in `best/` by builds that wrote the report there after promoting).
fn remove_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed the temp file of an interrupted write")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), "cannot remove a stray temp file: {e}")
                }
            }
        }
    }
}

/// The champion's card (see [`crate::model::card::load_champion`]).
pub use crate::model::card::{load_champion as load_card, read_champion as read_card};

#[cfg(test)]
pub(crate) mod tests;
