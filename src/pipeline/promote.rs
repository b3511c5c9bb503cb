//! Promotion: the champion model written atomically to `best/`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::model::TrialSpec;
use crate::store::StoreError;

/// `best/model.json`: what the champion is and how good it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: u32,
    pub trial: u32,
    pub preset: String,
    pub arch: crate::model::ArchSpec,
    pub recipe: crate::model::Recipe,
    pub val_accuracy: f64,
    pub test_accuracy: f64,
    pub val_loss: f64,
    pub test_loss: f64,
    pub per_class_test_accuracy: Vec<f64>,
    pub test_confusion: Vec<Vec<i64>>,
    pub parameters: i64,
    pub epochs_trained: u32,
    pub train_seconds: f64,
    pub seed: u64,
    pub data_fingerprint: String,
    pub input_shape: [i64; 3],
    pub classes: i64,
    /// Mean/std the inputs were normalised with (predict applies the same).
    pub normalisation: [f64; 2],
    pub created_at: String,
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
        Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync dir.
fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let tmp = path.with_extension("tmp");
    write(&tmp).map_err(|e| io_err(&tmp, e))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))?;
    Ok(())
}

/// Promotes a model into `<state>/best/`: weights first, then the card, so a
/// card never describes weights that are not on disk. The previous champion
/// moves to `<state>/best.previous/` (for `trainerd rollback`).
pub fn promote(
    state_dir: &Path,
    weights: &[(String, Tensor)],
    card: &ModelCard,
) -> Result<PathBuf, StoreError> {
    let best = state_dir.join("best");
    let staging = state_dir.join("best.staging");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io_err(&staging, e))?;
    }
    let mut sorted: Vec<(&str, &Tensor)> = weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    write_atomic_with(&staging.join("model.safetensors"), |p| {
        Tensor::write_safetensors(&sorted, p).map_err(|e| e.to_string())
    })?;
    let json = serde_json::to_vec_pretty(card).map_err(|e| io_err(&staging, e))?;
    write_atomic_with(&staging.join("model.json"), |p| {
        fs::File::create(p)
            .and_then(|mut f| f.write_all(&json))
            .map_err(|e| e.to_string())
    })?;
    let previous = state_dir.join("best.previous");
    if best.exists() {
        if previous.exists() {
            fs::remove_dir_all(&previous).map_err(|e| io_err(&previous, e))?;
        }
        fs::rename(&best, &previous).map_err(|e| io_err(&best, e))?;
    }
    fs::rename(&staging, &best).map_err(|e| io_err(&best, e))?;
    fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(state_dir, e))?;
    Ok(best)
}

/// Reads `best/model.json`, if a champion exists.
pub fn read_card(state_dir: &Path) -> Option<ModelCard> {
    let text = fs::read_to_string(state_dir.join("best").join("model.json")).ok()?;
    serde_json::from_str(&text).ok()
}
