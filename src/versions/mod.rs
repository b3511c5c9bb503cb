//! The kept promotions, `versions/N/`, read-only: which numbers exist, and
//! version N opened and verified ([`open_version`]: its card, then every
//! file the card lists, by size and SHA-256). `trainerd models`,
//! `rollback --to` and serving read versions through here; writing them
//! (after each promotion, retention, recovery) is `pipeline::versions`'s.
//!
//! `versions/N/` holds what `best/` held when promotion N made it the
//! champion: weights, ONNX, TorchScript, the model repository, the model
//! card and `model.json` (whose `version` is N), and the report. Names
//! that are not a plain number (`N.staging`, `N.deleting`) are not versions.
//!
//! # Layout
//! - this file: [`numbers`], [`open_version`], [`list`], [`VersionError`]
//! - [`command`]: `trainerd models`

pub mod command;

use std::io;
use std::path::{Path, PathBuf};

use crate::model::card::{ModelCard, CARD};

/// Largest `model.json` read to learn a version number.
const MAX_CARD_BYTES: u64 = 64 << 20;

/// Why version N cannot be used; every message names the version and, where
/// there is one, the file.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// No promotion ever had this number (exit 66).
    #[error(
        "version {n} never existed: the newest promotion in {} is {newest} \
         (`trainerd models` lists the kept versions)",
        dir.display()
    )]
    NeverExisted { n: u64, newest: u64, dir: PathBuf },
    /// It existed, but `versions/N/` is no longer there (exit 66).
    #[error(
        "version {n} is gone: {} no longer holds it (retention keeps the last \
         --keep-versions promotions); kept: {kept}",
        dir.display()
    )]
    Gone { n: u64, dir: PathBuf, kept: String },
    /// A file of the version is missing, edited or truncated (exit 65).
    #[error(
        "version {n} is damaged: {}: {what}; it is not used (roll back to another \
         version, or restore the file)",
        path.display()
    )]
    Damaged { n: u64, path: PathBuf, what: String },
    /// The version's directory or card cannot be read (exit 66).
    #[error(
        "version {n} cannot be read: {}: {what}; fix its permissions (chmod -R u+rwX)",
        path.display()
    )]
    Unreadable { n: u64, path: PathBuf, what: String },
    /// The `versions/` folder itself cannot be listed (exit 66).
    #[error("{}: cannot list the kept versions: {what}; fix its permissions", path.display())]
    Unlisted { path: PathBuf, what: String },
}

impl crate::exit::ExitStatus for VersionError {
    fn exit_code(&self) -> u8 {
        match self {
            VersionError::Damaged { .. } => crate::exit::DATA,
            VersionError::NeverExisted { .. }
            | VersionError::Gone { .. }
            | VersionError::Unreadable { .. }
            | VersionError::Unlisted { .. } => crate::exit::NO_INPUT,
        }
    }
}

/// The version numbers in `versions/`, ascending; none when it does not
/// exist; [`VersionError::Unlisted`] when it cannot be listed.
pub fn numbers(state_dir: &Path) -> Result<Vec<u64>, VersionError> {
    let dir = crate::state_dir::versions(state_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            let what = e.to_string();
            return Err(VersionError::Unlisted { path: dir, what });
        }
    };
    let mut found: Vec<u64> = entries
        .filter_map(Result::ok)
        .filter_map(|e| number_of(&e.file_name().to_string_lossy()))
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// `name`'s version number when it is one written as [`crate::state_dir::version`] writes it.
fn number_of(name: &str) -> Option<u64> {
    let n: u64 = name.parse().ok()?;
    (n > 0 && n.to_string() == name).then_some(n)
}

fn unreadable(n: u64, path: &Path, e: &io::Error) -> VersionError {
    VersionError::Unreadable {
        n,
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

/// The `version` a model directory's `model.json` carries (`None`: no card,
/// an unreadable one, or one from before versions were numbered).
pub fn version_in(dir: &Path) -> Option<u64> {
    let text = crate::model::read_bounded(&dir.join(CARD), MAX_CARD_BYTES).ok()?;
    let v = serde_json::from_str::<serde_json::Value>(&text).ok()?["version"].as_u64()?;
    (v > 0).then_some(v)
}

/// The champion's and the previous champion's versions (`best/`, `best.previous/`).
pub fn champions(state_dir: &Path) -> (Option<u64>, Option<u64>) {
    (
        version_in(&crate::state_dir::best(state_dir)),
        version_in(&crate::state_dir::best_previous(state_dir)),
    )
}

/// The highest version number this state dir has given out: the newest kept
/// version, or the champion's or previous champion's when higher (0: none).
pub fn newest(state_dir: &Path) -> u64 {
    let kept = numbers(state_dir).unwrap_or_default();
    let (best, previous) = champions(state_dir);
    let on_disk = kept.last().copied().unwrap_or(0);
    on_disk.max(best.unwrap_or(0)).max(previous.unwrap_or(0))
}

/// Version `n`'s directory and card, every listed file verified: an error
/// says whether it never existed, is gone, is damaged (naming the file) or
/// cannot be read. Reads only.
pub fn open_version(state_dir: &Path, n: u64) -> Result<(PathBuf, ModelCard), VersionError> {
    let dir = crate::state_dir::version(state_dir, n);
    match std::fs::symlink_metadata(&dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(damaged(n, &dir, "not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing(state_dir, n)),
        Err(e) => return Err(unreadable(n, &dir, &e)),
    }
    let card = read_card(&dir, n)?;
    verify_files(&dir, n, &card)?;
    Ok((dir, card))
}

/// Why `versions/N/` is not there: never given out, or deleted since.
fn missing(state_dir: &Path, n: u64) -> VersionError {
    let newest = newest(state_dir);
    let dir = crate::state_dir::versions(state_dir);
    if n == 0 || n > newest {
        return VersionError::NeverExisted { n, newest, dir };
    }
    let kept = numbers(state_dir).unwrap_or_default();
    let kept = match kept.is_empty() {
        true => "none".to_string(),
        false => kept
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    };
    VersionError::Gone { n, dir, kept }
}

fn damaged(n: u64, path: &Path, what: impl Into<String>) -> VersionError {
    VersionError::Damaged {
        n,
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Version `n`'s card, which must say it is version `n` and be usable.
pub fn read_card(dir: &Path, n: u64) -> Result<ModelCard, VersionError> {
    let path = dir.join(CARD);
    // Permission problems first: the card reader calls every failure corrupt.
    if let Err(e) = std::fs::read_dir(dir).and_then(|_| std::fs::File::open(&path)) {
        if e.kind() == io::ErrorKind::PermissionDenied {
            return Err(unreadable(n, dir, &e));
        }
    }
    let card = match crate::model::card::read(dir) {
        Ok(Some(card)) => card,
        Ok(None) => return Err(damaged(n, &path, "missing")),
        Err(e) => return Err(damaged(n, &path, e.to_string())),
    };
    if card.version != n {
        let says = format!("says it is version {}, not {n}", card.version);
        return Err(damaged(n, &path, says));
    }
    if card.diverged() {
        return Err(damaged(n, &path, "describes a diverged model"));
    }
    Ok(card)
}

/// Every file `card` lists, checked in `dir` (size, then SHA-256).
pub fn verify_files(dir: &Path, n: u64, card: &ModelCard) -> Result<(), VersionError> {
    match crate::export::verify(dir, card) {
        Ok(()) => Ok(()),
        Err(crate::export::ExportError::Corrupt { path, what }) => Err(damaged(n, &path, what)),
        Err(e) => Err(damaged(n, dir, e.to_string())),
    }
}

/// One kept version as `trainerd models` shows it.
#[derive(Debug)]
pub struct Listed {
    pub number: u64,
    /// Its card, when it reads (also for a version whose files are damaged).
    pub card: Option<ModelCard>,
    /// Why it cannot be used, if it cannot.
    pub problem: Option<VersionError>,
}

/// Every kept version, oldest first, each opened and verified.
pub fn list(state_dir: &Path) -> Result<Vec<Listed>, VersionError> {
    let listed = numbers(state_dir)?.into_iter().map(|number| {
        let dir = crate::state_dir::version(state_dir, number);
        match read_card(&dir, number) {
            Ok(card) => {
                let problem = verify_files(&dir, number, &card).err();
                let card = Some(card);
                Listed {
                    number,
                    card,
                    problem,
                }
            }
            Err(e) => Listed {
                number,
                card: None,
                problem: Some(e),
            },
        }
    });
    Ok(listed.collect())
}

#[cfg(test)]
pub(crate) mod tests;
