//! Promotion: the champion model written atomically to `best/`, the previous
//! one kept in `best.previous/`, and `trainerd rollback` to swap them back.
//!
//! Crash windows and their recovery ([`recover`], run at every start and by
//! `rollback`): promotion writes `best.staging/` completely (weights, ONNX,
//! TorchScript, model repository, model card, report, then `model.json`), then renames `best/` -> `best.previous/` and `best.staging/` ->
//! `best/`. A crash between the two renames leaves no `best/` but a complete
//! staging dir: recovery finishes the rename. Rollback renames `best/` ->
//! `best.rollback/`, `best.previous/` -> `best/`, `best.rollback/` ->
//! `best.previous/`; a crash in between leaves `best.rollback/`, and recovery
//! completes whichever renames are missing. So at most a moment passes with no
//! `best/`, and never does a `best/` hold a half-written model.

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
/// staging dir becomes `best/`. A crash anywhere is finished or undone by
/// [`recover`]. A diverged model (non-finite card) is refused.
pub fn promote(
    state_dir: &Path,
    weights: &[(String, Tensor)],
    card: &ModelCard,
    extras: &[(&str, &[u8])],
) -> Result<PathBuf, StoreError> {
    let best = crate::state_dir::best(state_dir);
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
    let previous = crate::state_dir::best_previous(state_dir);
    if best.exists() {
        if previous.exists() {
            fs::remove_dir_all(&previous).map_err(|e| io_err(&previous, e))?;
        }
        fs::rename(&best, &previous).map_err(|e| io_err(&best, e))?;
    }
    fault::point("promote.swap");
    fs::rename(&staging, &best).map_err(|e| io_err(&best, e))?;
    fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(state_dir, e))?;
    Ok(best)
}

/// One more than the highest version in `best/` and `best.previous/` (a
/// rollback puts the older one in front; the next promotion still counts up).
fn next_version(state_dir: &Path) -> u64 {
    let of = |dir: &str| {
        let text = fs::read(state_dir.join(dir).join(CARD)).ok()?;
        serde_json::from_slice::<serde_json::Value>(&text).ok()?["version"].as_u64()
    };
    of("best").max(of("best.previous")).unwrap_or(0) + 1
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
        .map_err(|e| io_err(state_dir, e))
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

/// Swaps `best/` and `best.previous/`; returns the card now in `best/`.
/// Takes the state dir's lock first: a running trainerd could promote at the
/// same moment, so with one running this fails (exit 73, naming its pid).
pub fn rollback(state_dir: &Path) -> Result<Option<ModelCard>, StoreError> {
    if !state_dir.is_dir() {
        return Ok(None);
    }
    let _lock = crate::store::StateLock::acquire(state_dir).map_err(|e| match e {
        StoreError::Locked { path, holder } => StoreError::Busy {
            path,
            holder,
            action: "roll back the champion",
        },
        other => other,
    })?;
    recover(state_dir)?;
    let best = crate::state_dir::best(state_dir);
    let previous = crate::state_dir::best_previous(state_dir);
    let parked = crate::state_dir::best_rollback(state_dir);
    if !previous.join("model.json").exists() {
        return Ok(None);
    }
    if best.exists() {
        fs::rename(&best, &parked).map_err(|e| io_err(&best, e))?;
    }
    crate::store::fault::point("rollback.swap");
    fs::rename(&previous, &best).map_err(|e| io_err(&previous, e))?;
    if parked.exists() {
        fs::rename(&parked, &previous).map_err(|e| io_err(&parked, e))?;
    }
    fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(state_dir, e))?;
    Ok(read_card(state_dir))
}

/// The champion's card (see [`crate::model::card::load_champion`]).
pub use crate::model::card::{load_champion as load_card, read_champion as read_card};

#[cfg(test)]
mod tests {
    use super::*;

    fn card(trial: u32) -> ModelCard {
        ModelCard {
            format: MODEL_CARD_FORMAT,
            trial,
            preset: "linear".into(),
            arch: crate::model::ArchSpec::Mlp {
                hidden: vec![],
                dropout: 0.0,
            },
            recipe: crate::model::preset("linear").unwrap().recipe,
            val_accuracy: 0.5,
            test_accuracy: 0.5,
            val_loss: 1.0,
            test_loss: 1.0,
            per_class_test_accuracy: vec![],
            test_confusion: vec![],
            parameters: 1,
            epochs_trained: 1,
            train_seconds: 1.0,
            seed: 1,
            data_fingerprint: "fp".into(),
            input_shape: [1, 2, 2],
            classes: 2,
            normalisation: [0.0, 1.0].into(),
            created_at: ModelCard::now(),
            study: "s".into(),
            commit: None,
            val_size: 10,
            files: Vec::new(),
            version: 0,
            class_names: Vec::new(),
        }
    }

    /// Weights that fit [`card`]'s architecture.
    fn weights(card: &ModelCard) -> Vec<(String, Tensor)> {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let _net = crate::model::build(&vs.root(), &card.arch, crate::export::input_shape(card));
        vs.variables().into_iter().collect()
    }

    fn promote_trial(dir: &Path, trial: u32) {
        let card = card(trial);
        promote(dir, &weights(&card), &card, &[("report.html", b"<html>")]).unwrap();
    }

    fn trial_in(dir: &Path, which: &str) -> Option<u32> {
        let text = fs::read_to_string(dir.join(which).join("model.json")).ok()?;
        Some(serde_json::from_str::<ModelCard>(&text).ok()?.trial)
    }

    #[test]
    fn verdict_needs_the_margin_on_the_same_split() {
        let champ = card(1);
        let mut c = card(2);
        c.val_accuracy = 0.505;
        assert!(matches!(verdict(None, &c, 0.01), Verdict::Promote(_)));
        assert!(matches!(verdict(Some(&champ), &c, 0.01), Verdict::Keep(_)));
        assert!(matches!(
            verdict(Some(&champ), &c, 0.0),
            Verdict::Promote(_)
        ));
        c.val_accuracy = 0.5;
        assert!(
            matches!(verdict(Some(&champ), &c, 0.0), Verdict::Keep(_)),
            "a tie keeps"
        );
        c.data_fingerprint = "other".into();
        assert!(matches!(
            verdict(Some(&champ), &c, 0.5),
            Verdict::Promote(_)
        ));
        assert_eq!(verdict(Some(&champ), &champ, 0.0), Verdict::AlreadyChampion);
    }

    #[test]
    fn promotion_keeps_the_previous_champion_and_rollback_swaps_them() {
        let dir = tempfile::tempdir().unwrap();
        promote_trial(dir.path(), 1);
        assert!(
            rollback(dir.path()).unwrap().is_none(),
            "nothing to roll back to"
        );
        promote_trial(dir.path(), 2);
        assert_eq!(trial_in(dir.path(), "best"), Some(2));
        assert_eq!(trial_in(dir.path(), "best.previous"), Some(1));
        assert_eq!(load_card(dir.path()).unwrap().map(|c| c.version), Some(2));
        assert_eq!(rollback(dir.path()).unwrap().map(|c| c.trial), Some(1));
        assert_eq!(trial_in(dir.path(), "best.previous"), Some(2));
        rollback(dir.path()).unwrap();
        assert_eq!(trial_in(dir.path(), "best"), Some(2));
        // Versions count up past a rolled-back champion.
        rollback(dir.path()).unwrap();
        promote_trial(dir.path(), 3);
        assert_eq!(load_card(dir.path()).unwrap().map(|c| c.version), Some(3));
    }

    #[test]
    fn recovery_completes_an_interrupted_rollback_at_each_crash_point() {
        for crash_after in 1..=2 {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            promote_trial(d, 1);
            promote_trial(d, 2);
            fs::rename(d.join("best"), d.join("best.rollback")).unwrap();
            if crash_after == 2 {
                fs::rename(d.join("best.previous"), d.join("best")).unwrap();
            }
            recover(d).unwrap();
            assert_eq!(
                trial_in(d, "best"),
                Some(1),
                "crash after rename {crash_after}"
            );
            assert_eq!(trial_in(d, "best.previous"), Some(2));
            assert!(!d.join("best.rollback").exists());
        }
    }

    #[test]
    fn diverged_models_are_never_promoted_and_diverged_champions_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut bad = card(1);
        bad.val_loss = f64::NAN;
        assert_eq!(
            verdict(None, &bad, 0.0),
            Verdict::Keep("the candidate diverged".into())
        );
        assert!(promote(dir.path(), &[], &bad, &[]).is_err());
        assert!(!dir.path().join("best").exists());
        let good = card(2);
        assert!(matches!(
            verdict(Some(&bad), &good, 0.5),
            Verdict::Promote(_)
        ));
    }

    #[test]
    fn a_corrupt_or_missing_card_is_an_error_not_no_champion() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(load_card(d).unwrap().is_none());
        promote_trial(d, 1);
        assert_eq!(load_card(d).unwrap().map(|c| c.trial), Some(1));
        fs::write(d.join("best/model.json"), b"{\"format\": 1, trunc").unwrap();
        let err = load_card(d).unwrap_err().to_string();
        assert!(
            err.contains("best/model.json") && err.contains("unreadable"),
            "{err}"
        );
        fs::remove_file(d.join("best/model.json")).unwrap();
        assert!(load_card(d).unwrap_err().to_string().contains("missing"));
        // An older build's card of a diverged model (NaN written as null) reads, as diverged.
        let mut text = serde_json::to_value(card(3)).unwrap();
        text["val_loss"] = serde_json::Value::Null;
        fs::write(d.join("best/model.json"), text.to_string()).unwrap();
        assert!(load_card(d).unwrap().unwrap().diverged());
    }

    #[test]
    fn rollback_needs_the_state_dir_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        promote_trial(dir.path(), 1);
        promote_trial(dir.path(), 2);
        let lock = crate::store::StateLock::acquire(dir.path()).unwrap();
        let err = rollback(dir.path()).unwrap_err();
        assert_eq!(crate::exit::ExitStatus::exit_code(&err), 73);
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert_eq!(trial_in(dir.path(), "best"), Some(2), "nothing moved");
        drop(lock);
        assert!(
            rollback(tempfile::tempdir().unwrap().path().join("none").as_path())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_promoted_champion_lists_every_exported_file_and_they_verify() {
        let dir = tempfile::tempdir().unwrap();
        promote_trial(dir.path(), 1);
        let card = load_card(dir.path()).unwrap().unwrap();
        let listed: Vec<&str> = card.files.iter().map(|f| f.path.as_str()).collect();
        for want in ["model.safetensors", "model.onnx", "model.pt", "README.md"] {
            assert!(listed.contains(&want), "{want} missing from {listed:?}");
        }
        assert!(
            listed
                .iter()
                .any(|p| p.starts_with("repository/") && p.ends_with("config.pbtxt")),
            "{listed:?}"
        );
        assert!(!listed.contains(&"report.html"), "the report is not listed");
        let best = dir.path().join("best");
        crate::export::verify(&best, &card).unwrap();
        fs::write(best.join("model.onnx"), b"not a model").unwrap();
        let err = crate::export::verify(&best, &card).unwrap_err().to_string();
        assert!(err.contains("model.onnx"), "{err}");
    }

    #[test]
    fn recovery_removes_stray_temp_files_and_keeps_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        promote_trial(d, 1);
        assert!(
            d.join("best/report.html").is_file(),
            "staged with the model"
        );
        fs::write(d.join("best/.report.html.tmp-123"), b"half").unwrap();
        recover(d).unwrap();
        let mut names: Vec<String> = fs::read_dir(d.join("best"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "README.md",
                "model.json",
                "model.onnx",
                "model.pt",
                "model.safetensors",
                "report.html",
                "repository"
            ]
        );
    }

    #[test]
    fn recovery_completes_an_interrupted_promotion() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        promote_trial(d, 1);
        promote_trial(d, 2);
        // Crash between "best -> best.previous" and "staging -> best".
        fs::remove_dir_all(d.join("best.previous")).unwrap();
        fs::rename(d.join("best"), d.join("best.previous")).unwrap();
        promote_trial(d, 3);
        fs::rename(d.join("best"), d.join("best.staging")).unwrap();
        recover(d).unwrap();
        assert_eq!(trial_in(d, "best"), Some(3));
        // A half-written staging dir (no card yet) is dropped, best untouched.
        fs::create_dir_all(d.join("best.staging")).unwrap();
        recover(d).unwrap();
        assert!(!d.join("best.staging").exists());
        assert_eq!(trial_in(d, "best"), Some(3));
    }
}
