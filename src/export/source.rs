//! What `trainerd export` exports: the champion in `best/` (verified against
//! its manifest first), or the newest checkpoint of a trial of the study in
//! progress (a finished study's checkpoints are swept; its winner is `best/`).

use std::path::{Path, PathBuf};

use tch::Tensor;

use super::{verify, ExportError, WEIGHTS_FILE};
use crate::data::budget;
use crate::model::card::{self, ModelCard, MODEL_CARD_FORMAT};
use crate::model::Normalisation;
use crate::search::journal::{Journal, Record};
use crate::train::EpochRecord;

/// A model ready to export.
pub struct Source {
    pub card: ModelCard,
    pub weights: Vec<(String, Tensor)>,
    /// The file the weights came from, for messages.
    pub from: PathBuf,
}

fn not_found(what: String) -> ExportError {
    ExportError::NotFound { what }
}

/// Reads a weights file after checking it fits the memory budget.
fn read_weights(path: &Path) -> Result<Vec<(String, Tensor)>, ExportError> {
    let len = std::fs::metadata(path)
        .map_err(|e| super::io_err(path, e))?
        .len();
    let limit = budget::default_budget();
    if len.saturating_mul(2) > limit {
        return Err(ExportError::Weights {
            what: format!(
                "{}: {} of weights need about twice that to export, more than {}",
                path.display(),
                budget::human(len),
                budget::describe(limit)
            ),
        });
    }
    Tensor::read_safetensors(path).map_err(|e| ExportError::Corrupt {
        path: path.to_path_buf(),
        what: format!("not readable weights: {e}"),
    })
}

/// The champion: `best/model.json` and its weights, checksums verified.
pub fn champion(state_dir: &Path) -> Result<Source, ExportError> {
    let best = crate::state_dir::best(state_dir);
    let card = card::read(&best)?.ok_or_else(|| {
        not_found(format!(
            "no champion model in {} (train one first: trainerd train)",
            best.display()
        ))
    })?;
    verify(&best, &card)?;
    let from = best.join(WEIGHTS_FILE);
    let weights = read_weights(&from)?;
    Ok(Source {
        card,
        weights,
        from,
    })
}

/// The newest study that started `trial` (or `study`, when given), with the
/// trial's spec.
fn find_trial(
    state_dir: &Path,
    trial: u32,
    study: Option<&str>,
) -> Result<(String, crate::model::TrialSpec), ExportError> {
    let entries = Journal::open_read_only(state_dir)
        .map_err(|e| not_found(format!("no study journal to find trial {trial} in: {e}")))?;
    let started = entries.iter().rev().find_map(|e| match &e.record {
        Record::TrialStarted { trial: t, spec, .. }
            if *t == trial && study.is_none_or(|s| s == e.study) =>
        {
            Some((e.study.clone(), spec.clone()))
        }
        _ => None,
    });
    let (id, spec) = started.ok_or_else(|| {
        not_found(format!(
            "trial {trial} was never started{} (see trainerd status)",
            study.map_or(String::new(), |s| format!(" in study {s}"))
        ))
    })?;
    Ok((id, spec))
}

/// The trial's checkpoints, newest step first.
fn checkpoints_newest_first(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let step = name
                .to_str()?
                .strip_prefix("ckpt-")?
                .strip_suffix(".tch")?
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .collect();
    found.sort_by_key(|b| std::cmp::Reverse(b.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// Trial `trial`'s newest checkpoint that verifies, as an exportable model.
pub fn trial(state_dir: &Path, trial: u32, study: Option<&str>) -> Result<Source, ExportError> {
    let (id, spec) = find_trial(state_dir, trial, study)?;
    let dir = crate::state_dir::checkpoints(&crate::state_dir::trial(state_dir, &id, trial));
    let ckpt = checkpoints_newest_first(&dir)
        .into_iter()
        .find_map(|p| crate::store::checkpoint_file::read_file(&p).ok())
        .ok_or_else(|| {
            not_found(format!(
                "trial {trial} of study {id} has no readable checkpoint in {} (a finished \
                 study's checkpoints are removed: export the champion instead)",
                dir.display()
            ))
        })?;
    let data = data_fields(state_dir, &ckpt.meta).ok_or_else(|| {
        not_found(format!(
            "{}: the checkpoint does not record its input shape and normalisation, and the \
             champion was trained on other data; export the champion instead",
            ckpt.path.display()
        ))
    })?;
    let weights: Vec<(String, Tensor)> = ckpt
        .tensors
        .into_iter()
        .filter_map(|(n, t)| Some((n.strip_prefix("model/")?.to_string(), t)))
        .collect();
    let card = trial_card(trial, (id, spec), &ckpt.meta, data, &weights);
    Ok(Source {
        card,
        weights,
        from: ckpt.path,
    })
}

/// The card of a trial's checkpoint: what its meta and the journal record
/// (no test measurement, `test_size` 0: only a model about to be promoted is
/// evaluated on the test split).
fn trial_card(
    trial: u32,
    (study, spec): (String, crate::model::TrialSpec),
    meta: &serde_json::Value,
    data: DataFields,
    weights: &[(String, Tensor)],
) -> ModelCard {
    let history: Vec<EpochRecord> =
        serde_json::from_value(meta["history"].clone()).unwrap_or_default();
    let last = history.last();
    ModelCard {
        format: MODEL_CARD_FORMAT,
        trial,
        preset: spec.preset,
        arch: spec.arch,
        recipe: spec.recipe,
        val_accuracy: last.map_or(0.0, |h| h.val_accuracy),
        test_accuracy: 0.0,
        val_loss: last.map_or(0.0, |h| h.val_loss),
        test_loss: 0.0,
        per_class_test_accuracy: Vec::new(),
        test_confusion: Vec::new(),
        parameters: parameters(weights),
        epochs_trained: history.len() as u32,
        train_seconds: meta["train_seconds"].as_f64().unwrap_or(0.0),
        seed: meta["seed"].as_u64().unwrap_or(0),
        data_fingerprint: meta["fingerprint"].as_str().unwrap_or("").to_string(),
        input_shape: data.input_shape,
        classes: data.classes,
        normalisation: data.normalisation,
        created_at: ModelCard::now(),
        study,
        commit: None,
        val_size: data.val_size,
        files: Vec::new(),
        version: 0,
        class_names: data.class_names,
        intervals: Default::default(),
    }
}

/// What a trial's card needs from its data: the input contract and the split.
struct DataFields {
    input_shape: [i64; 3],
    classes: i64,
    normalisation: Normalisation,
    val_size: usize,
    class_names: Vec<String>,
}

/// Trainable parameters: every weight but batch norm's running statistics.
fn parameters(weights: &[(String, Tensor)]) -> i64 {
    weights
        .iter()
        .filter(|(n, _)| !n.ends_with("running_mean") && !n.ends_with("running_var"))
        .map(|(_, t)| t.numel() as i64)
        .sum()
}

/// Input shape, classes, normalisation, class names and validation size:
/// from the checkpoint's meta (an older one's `[mean, std]` pair reads as
/// one for every channel; class names from a champion of the same data when
/// it lacks them), else from a champion trained on the same data.
fn data_fields(state_dir: &Path, meta: &serde_json::Value) -> Option<DataFields> {
    let champion = card::read(&crate::state_dir::best(state_dir))
        .ok()
        .flatten()
        .filter(|c| meta["fingerprint"].as_str() == Some(c.data_fingerprint.as_str()));
    let val_size = champion.as_ref().map_or(0, |c| c.val_size);
    let names = champion.as_ref().map(|c| c.class_names.clone());
    let recorded = (|| {
        let input_shape: [i64; 3] = serde_json::from_value(meta["input_shape"].clone()).ok()?;
        let normalisation = serde_json::from_value(meta["normalisation"].clone()).ok()?;
        let class_names = serde_json::from_value(meta["class_names"].clone())
            .ok()
            .or(names)
            .unwrap_or_default();
        Some(DataFields {
            input_shape,
            classes: meta["classes"].as_i64()?,
            normalisation,
            val_size,
            class_names,
        })
    })();
    recorded.or_else(|| {
        champion.map(|c| DataFields {
            input_shape: c.input_shape,
            classes: c.classes,
            normalisation: c.normalisation,
            val_size: c.val_size,
            class_names: c.class_names,
        })
    })
}
