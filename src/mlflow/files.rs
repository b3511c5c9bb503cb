//! The files of a promoted champion to upload as artifacts: its card and
//! every file the card lists, checked against their checksums first, taken
//! from whichever of `best/` and `best.previous/` still holds that trial.

use std::path::{Path, PathBuf};

use crate::model::card::{self, CARD};

/// `(relative path, file)` of each file to upload; `None` (with a warning)
/// when no folder holds the trial any more or its files fail their checks.
pub fn champion_files(state_dir: &Path, study: &str, trial: u32) -> Option<Vec<(String, PathBuf)>> {
    let dirs = [
        crate::state_dir::best(state_dir),
        crate::state_dir::best_previous(state_dir),
    ];
    for dir in dirs {
        let Ok(Some(card)) = card::read(&dir) else {
            continue;
        };
        if card.study != study || card.trial != trial {
            continue;
        }
        if let Err(e) = crate::export::manifest::verify(&dir, &card) {
            tracing::warn!("champion files not uploaded to MLflow: {e}");
            return None;
        }
        let mut files = vec![(CARD.to_string(), dir.join(CARD))];
        files.extend(
            card.files
                .iter()
                .map(|f| (f.path.clone(), dir.join(&f.path))),
        );
        let report = dir.join("report.html");
        if report.is_file() && !files.iter().any(|(r, _)| r == "report.html") {
            files.push(("report.html".into(), report));
        }
        return Some(files);
    }
    tracing::warn!(
        study,
        trial,
        "the champion's files are gone from best/ and best.previous/; its MLflow model version is registered without artifacts"
    );
    None
}
