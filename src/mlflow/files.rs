//! The files of a promoted champion to upload as artifacts: its card and
//! every file the card lists, checked against their checksums first. They
//! come from the version that promotion kept, `versions/N/` (found by its
//! card's study and trial, read through [`crate::versions`]), which stays
//! after later promotions have moved `best/` on; a state dir without it (from
//! before versions were kept, or one retention deleted) falls back to
//! whichever of `best/` and `best.previous/` still holds that trial. The
//! kept version's number N goes with them: the model version is tagged
//! with it (`trainerd rollback --to N`).

use std::path::{Path, PathBuf};

use crate::model::card::{self, ModelCard, CARD};

/// A promoted champion's files and, when they come from `versions/N/`, N.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChampionFiles {
    /// `(relative path, file)` of each file to upload.
    pub files: Vec<(String, PathBuf)>,
    /// The kept version N they come from; `None` for `best/` or `best.previous/`.
    pub version: Option<u64>,
}

/// The files to upload; `None` (with a warning) when no folder holds the
/// trial any more or its files fail their checks.
pub fn champion_files(state_dir: &Path, study: &str, trial: u32) -> Option<ChampionFiles> {
    if let Some((n, dir, card)) = kept_version(state_dir, study, trial) {
        return Some(ChampionFiles {
            files: listed(&dir, &card),
            version: Some(n),
        });
    }
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
        return Some(ChampionFiles {
            files: listed(&dir, &card),
            version: None,
        });
    }
    tracing::warn!(
        study,
        trial,
        "the champion's files are gone from versions/, best/ and best.previous/; its MLflow model version is registered without artifacts"
    );
    None
}

/// The newest kept version of `study`'s `trial` (its number, folder and
/// card), every file verified; none
/// when no kept version is that trial's, or when its files fail their
/// checks (warned: `best/` or `best.previous/` may still hold good copies).
fn kept_version(state_dir: &Path, study: &str, trial: u32) -> Option<(u64, PathBuf, ModelCard)> {
    let numbers = crate::versions::numbers(state_dir)
        .map_err(|e| {
            tracing::warn!("{e}; the champion's files are looked for in best/ and best.previous/")
        })
        .ok()?;
    for n in numbers.into_iter().rev() {
        let dir = crate::state_dir::version(state_dir, n);
        // A version whose card does not read cannot be this trial's, as far as anyone can tell.
        let Ok(card) = crate::versions::read_card(&dir, n) else {
            continue;
        };
        if card.study != study || card.trial != trial {
            continue;
        }
        return match crate::versions::verify_files(&dir, n, &card) {
            Ok(()) => Some((n, dir, card)),
            Err(e) => {
                tracing::warn!(
                    "{e}; the champion's files are looked for in best/ and best.previous/ instead"
                );
                None
            }
        };
    }
    None
}

/// The card, the files it lists, and the report beside them.
fn listed(dir: &Path, card: &ModelCard) -> Vec<(String, PathBuf)> {
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
    files
}
