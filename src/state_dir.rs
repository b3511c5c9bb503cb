//! The state directory's layout: every path trainerd reads or writes under
//! `--state-dir`, named once here. Nothing else joins file names onto the
//! state dir.
//!
//! ```text
//! trainerd.lock            one process per state dir (store::lock)
//! heartbeat.json           liveness for `trainerd health`
//! events.jsonl             the pipeline's event log
//! deliveries.jsonl         webhook deliveries settled
//! study/journal.jsonl      the study journal (search::journal)
//! study/<id>/trials/NNNN/checkpoints/
//! trials/NNNN/checkpoints/ standalone trials (`trainerd trial`)
//! tensorboard/<id>/NNNN/   TensorBoard event files of a trial (tensorboard)
//! tensorboard/trials/NNNN/ those of standalone trials
//! best/                    the champion and its exports (pipeline::promote)
//! best.previous/ best.staging/ best.rollback/
//! versions/N/              every kept promotion, the same files as best/ (versions)
//! versions/N.staging/ versions/N.deleting/  a version being copied in or deleted
//! ```

use std::path::{Path, PathBuf};

/// The lock file's name.
pub const LOCK_FILE: &str = "trainerd.lock";

pub fn lock(state: &Path) -> PathBuf {
    state.join(LOCK_FILE)
}

pub fn heartbeat(state: &Path) -> PathBuf {
    state.join("heartbeat.json")
}

pub fn events(state: &Path) -> PathBuf {
    state.join("events.jsonl")
}

pub fn deliveries(state: &Path) -> PathBuf {
    state.join("deliveries.jsonl")
}

/// The MLflow sink's folder: `queue.jsonl` (operations to send) and
/// `sent.jsonl` (keys sent or given up on).
pub fn mlflow(state: &Path) -> PathBuf {
    state.join("mlflow")
}

/// Where every study's trials live.
pub fn studies(state: &Path) -> PathBuf {
    state.join("study")
}

pub fn journal(state: &Path) -> PathBuf {
    studies(state).join("journal.jsonl")
}

pub fn study(state: &Path, study: &str) -> PathBuf {
    studies(state).join(study)
}

/// One trial of a study.
pub fn trial(state: &Path, study_id: &str, trial: u32) -> PathBuf {
    study(state, study_id)
        .join("trials")
        .join(format!("{trial:04}"))
}

/// Where standalone trials (`trainerd trial`) live.
pub fn standalone_trials(state: &Path) -> PathBuf {
    state.join("trials")
}

pub fn standalone_trial(state: &Path, trial: u32) -> PathBuf {
    standalone_trials(state).join(format!("{trial:04}"))
}

/// A study trial's TensorBoard event files.
pub fn tensorboard(state: &Path, study_id: &str, trial: u32) -> PathBuf {
    state
        .join("tensorboard")
        .join(study_id)
        .join(format!("{trial:04}"))
}

/// A standalone trial's (`trainerd trial`) TensorBoard event files.
pub fn standalone_tensorboard(state: &Path, trial: u32) -> PathBuf {
    tensorboard(state, "trials", trial)
}

/// A trial directory's checkpoints.
pub fn checkpoints(trial_dir: &Path) -> PathBuf {
    trial_dir.join("checkpoints")
}

/// The champion.
pub fn best(state: &Path) -> PathBuf {
    state.join("best")
}

/// The champion before the last promotion (what `rollback` restores).
pub fn best_previous(state: &Path) -> PathBuf {
    state.join("best.previous")
}

/// A promotion being written.
pub fn best_staging(state: &Path) -> PathBuf {
    state.join("best.staging")
}

/// The champion a rollback is moving aside.
pub fn best_rollback(state: &Path) -> PathBuf {
    state.join("best.rollback")
}

/// Every kept promotion, `versions/N/`.
pub fn versions(state: &Path) -> PathBuf {
    state.join("versions")
}

/// Version `n`: a whole copy of what `best/` held when it was promoted.
pub fn version(state: &Path, n: u64) -> PathBuf {
    versions(state).join(n.to_string())
}

/// Version `n` being copied in (renamed to [`version`] when complete).
pub fn version_staging(state: &Path, n: u64) -> PathBuf {
    versions(state).join(format!("{n}.staging"))
}

/// Version `n` being deleted by retention (renamed away first, so no
/// half-deleted `versions/N/` is ever seen).
pub fn version_deleting(state: &Path, n: u64) -> PathBuf {
    versions(state).join(format!("{n}.deleting"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trial_dirs_are_numbered_with_four_digits() {
        let s = Path::new("/s");
        assert_eq!(trial(s, "abc", 7), Path::new("/s/study/abc/trials/0007"));
        assert_eq!(standalone_trial(s, 12), Path::new("/s/trials/0012"));
        assert_eq!(journal(s), Path::new("/s/study/journal.jsonl"));
        assert_eq!(version(s, 12), Path::new("/s/versions/12"));
        assert_eq!(version_staging(s, 3), Path::new("/s/versions/3.staging"));
    }
}
