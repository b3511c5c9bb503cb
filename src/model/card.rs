//! The champion's card, `model.json`: what the model is (architecture,
//! recipe, input contract), how good it is, where its data came from, and
//! every file beside it with its SHA-256 ([`FileEntry`]). Written by
//! promotion and export, read by everything that uses a champion.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ArchSpec, Recipe, TrialSpec};

/// One file beside the card, as listed in `model.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the directory holding `model.json`, `/`-separated.
    pub path: String,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Size in bytes: a truncated file is caught before it is hashed.
    pub bytes: u64,
}

/// The champion's card, in `best/`.
pub const CARD: &str = "model.json";
/// Largest card read (a card is a few kB; its confusion matrix grows with
/// the square of the classes).
const MAX_CARD_BYTES: u64 = 64 << 20;

/// `best/model.json`: what the champion is and how good it is. Its numbers
/// read as NaN where an older build wrote `null` for a diverged model (see
/// [`ModelCard::diverged`]); this build never writes one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: u32,
    pub trial: u32,
    pub preset: String,
    pub arch: ArchSpec,
    pub recipe: Recipe,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub val_accuracy: f64,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub test_accuracy: f64,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub val_loss: f64,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub test_loss: f64,
    #[serde(deserialize_with = "crate::finite::vec_f64_or_nan")]
    pub per_class_test_accuracy: Vec<f64>,
    pub test_confusion: Vec<Vec<i64>>,
    pub parameters: i64,
    pub epochs_trained: u32,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub train_seconds: f64,
    pub seed: u64,
    pub data_fingerprint: String,
    pub input_shape: [i64; 3],
    pub classes: i64,
    /// Per-channel mean/std the inputs were normalised with (predict, serve
    /// and the exports apply the same); an older card's `[mean, std]` pair
    /// reads as one for every channel, a card without it as MNIST's.
    #[serde(default)]
    pub normalisation: super::Normalisation,
    pub created_at: String,
    /// The study that produced it (empty for cards written before studies).
    #[serde(default)]
    pub study: String,
    /// The workspace's git commit when the data dir is a checkout.
    #[serde(default)]
    pub commit: Option<String>,
    /// Validation split size: with `seed` and the fingerprint, what makes two
    /// cards' validation accuracies comparable.
    #[serde(default)]
    pub val_size: usize,
    /// Every file of the champion besides this card (weights, ONNX,
    /// TorchScript, model repository, README) with its SHA-256 and size:
    /// verified before use (`export::verify`). Empty in older cards.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// The promotion's number in this state dir: one more than the champion
    /// it replaced (1 for the first, 0 in cards written before it was kept).
    /// Serving names its model version with it, so versions only grow.
    #[serde(default)]
    pub version: u64,
    /// The classes' names, label `i` is `class_names[i]`: the folder names
    /// of an image-folder data set, `"0"`..`"K-1"` for IDX; empty in older cards.
    #[serde(default)]
    pub class_names: Vec<String>,
    /// The accuracies' 95% Wilson intervals (`val_interval`,
    /// `test_interval`, `test_size`, `confidence_level` in the JSON);
    /// absent from older cards.
    #[serde(flatten)]
    pub intervals: Intervals,
}

/// How sure the card's accuracies are ([`crate::confidence`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Intervals {
    /// `[lo, hi]` of `val_accuracy` on `val_size` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_interval: Option<[f64; 2]>,
    /// `[lo, hi]` of `test_accuracy` on `test_size` records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_interval: Option<[f64; 2]>,
    /// Test records the test accuracy was measured on (0: not recorded).
    #[serde(default)]
    pub test_size: usize,
    /// The intervals' confidence level (0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence_level: Option<f64>,
}

impl Intervals {
    /// `acc` with `interval` when known: `0.921 [0.914, 0.928]`, else `0.9210`.
    pub fn shown(acc: f64, interval: Option<[f64; 2]>) -> String {
        match interval {
            Some([lo, hi]) => format!("{acc:.3} [{lo:.3}, {hi:.3}]"),
            None => format!("{acc:.4}"),
        }
    }

    /// The intervals of `val` on `val_n` and `test` on `test_n` records.
    pub fn of(val: f64, val_n: usize, test: f64, test_n: usize) -> Intervals {
        let pair = |i: crate::confidence::Interval| Some([i.lo, i.hi]);
        Intervals {
            val_interval: pair(crate::confidence::Interval::of_accuracy(val, val_n)),
            test_interval: pair(crate::confidence::Interval::of_accuracy(test, test_n)),
            test_size: test_n,
            confidence_level: Some(crate::confidence::LEVEL),
        }
    }
}

pub const MODEL_CARD_FORMAT: u32 = 1;

impl ModelCard {
    pub fn spec(&self) -> TrialSpec {
        TrialSpec {
            preset: self.preset.clone(),
            arch: self.arch.clone(),
            recipe: self.recipe.clone(),
        }
    }
    pub fn now() -> String {
        crate::timestamp::now_rfc3339()
    }
    /// A number of the card is not finite: the model diverged (only cards
    /// written by builds that did not stop diverged trials).
    pub fn diverged(&self) -> bool {
        [
            self.val_accuracy,
            self.test_accuracy,
            self.val_loss,
            self.test_loss,
            self.train_seconds,
        ]
        .iter()
        .chain(&self.per_class_test_accuracy)
        .any(|x| !x.is_finite())
            || !self.normalisation.is_finite()
    }
}

/// `best/model.json` exists but cannot be used (exit 65): the weights beside
/// it are not hidden behind "no champion yet".
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("{path}: the champion's card is unreadable ({what}); the weights beside it are kept: `trainerd rollback` restores the previous champion, or move best/ aside")]
    Corrupt { path: PathBuf, what: String },
    #[error("{path}: the champion diverged (its loss is not finite, written by an older trainerd); `trainerd rollback` restores the previous champion, and the next study replaces it")]
    Diverged { path: PathBuf },
}

impl crate::exit::ExitStatus for CardError {
    fn exit_code(&self) -> u8 {
        crate::exit::DATA
    }
}

/// Reads `dir/model.json`: `None` when `dir` holds no model, an error when
/// it holds weights whose card is missing, unreadable or malformed.
pub fn read(dir: &Path) -> Result<Option<ModelCard>, CardError> {
    let path = dir.join(CARD);
    let corrupt = |what: String| CardError::Corrupt {
        path: path.clone(),
        what,
    };
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if dir.join("model.safetensors").exists() {
                return Err(corrupt("missing, but the weights are there".into()));
            }
            return Ok(None);
        }
        Err(e) => return Err(corrupt(e.to_string())),
    };
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, MAX_CARD_BYTES + 1), &mut bytes)
        .map_err(|e| corrupt(e.to_string()))?;
    if bytes.len() as u64 > MAX_CARD_BYTES {
        return Err(corrupt(format!("larger than {MAX_CARD_BYTES} bytes")));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

/// The champion's card (`best/model.json`): `None` when there is no
/// champion, an error when `best/` holds one whose card is missing,
/// unreadable or malformed.
pub fn load_champion(state_dir: &Path) -> Result<Option<ModelCard>, CardError> {
    read(&crate::state_dir::best(state_dir))
}

/// [`load_champion`], where a damaged card counts as none (for metrics;
/// everything that reports or uses the champion calls `load_champion`).
pub fn read_champion(state_dir: &Path) -> Option<ModelCard> {
    load_champion(state_dir).ok().flatten()
}
