//! The champion measured on the data at hand. A champion's recorded
//! validation accuracy comes from the data it was trained on; when new data
//! arrives, a trial of the new study may replace it only by beating it on
//! the new validation split. So the champion is evaluated there first (when
//! its input shape and classes fit the new data), once per champion.

use std::path::Path;

use tch::{Device, Kind};

use crate::data::Dataset;
use crate::model::card::ModelCard;

/// Images per forward pass while measuring.
const BATCH: i64 = 256;

/// A champion's accuracy on one data set's validation split.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Remeasured {
    /// Which champion (study, trial, version) and which data (fingerprint, seed, split size).
    key: (String, u32, u64, String, u64, usize),
    pub val_accuracy: f64,
}

fn key_of(
    champion: &ModelCard,
    data: &Dataset,
    seed: u64,
) -> (String, u32, u64, String, u64, usize) {
    (
        champion.study.clone(),
        champion.trial,
        champion.version,
        data.fingerprint.clone(),
        seed,
        data.val.len(),
    )
}

/// `champion`'s validation accuracy on `data` (split with `seed`), from
/// `cache` when it holds this champion on this data; `None` when the
/// champion cannot be evaluated on it (another input shape or class count,
/// or files that do not load), the reason logged.
pub(super) fn val_accuracy_on(
    state_dir: &Path,
    champion: &ModelCard,
    data: &Dataset,
    seed: u64,
    cache: &mut Option<Remeasured>,
) -> Option<f64> {
    let key = key_of(champion, data, seed);
    if let Some(hit) = cache.as_ref().filter(|c| c.key == key) {
        return Some(hit.val_accuracy);
    }
    let shape = data.val.images.size();
    if shape.get(1..) != Some(&champion.input_shape[..]) || champion.classes != data.num_classes {
        tracing::info!(
            "the champion takes {:?} images of {} classes, the data has {:?} of {}: not comparable",
            champion.input_shape,
            champion.classes,
            shape.get(1..),
            data.num_classes
        );
        return None;
    }
    let loaded = match crate::predict::load_champion(state_dir) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("the champion could not be measured on the new data: {e}");
            return None;
        }
    };
    let accuracy = measure(&loaded, data)?;
    tracing::info!(
        champion_trial = champion.trial,
        study = %champion.study,
        "the champion scores {accuracy:.4} on the new data's validation split (it recorded {:.4} on its own)",
        champion.val_accuracy
    );
    *cache = Some(Remeasured {
        key,
        val_accuracy: accuracy,
    });
    Some(accuracy)
}

/// Accuracy of `champion` on `data`'s validation split: the split's images
/// back in [0, 1] (undoing `data`'s normalisation), then the champion's own.
fn measure(champion: &crate::predict::Champion, data: &Dataset) -> Option<f64> {
    let n = data.val.len() as i64;
    if n == 0 {
        return None;
    }
    let mut right = 0i64;
    let mut start = 0;
    while start < n {
        let len = BATCH.min(n - start);
        let x = data.val.images.narrow(0, start, len).to_device(Device::Cpu);
        let x01 = data
            .normalisation
            .to01(&x)
            .ok()?
            .to_kind(Kind::Float)
            .contiguous()
            .flatten(0, -1);
        let pixels = Vec::<f32>::try_from(&x01).ok()?;
        let logits = champion.logits01(&pixels, len as usize)?;
        let classes = logits.len() / len as usize;
        let labels = data.val.labels.narrow(0, start, len).to_device(Device::Cpu);
        let labels = Vec::<i64>::try_from(&labels).ok()?;
        for (row, label) in logits.chunks(classes.max(1)).zip(labels) {
            let guess = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as i64);
            right += i64::from(guess == Some(label));
        }
        start += len;
    }
    Some(right as f64 / n as f64)
}

/// The champion's weights for the first trial of a new study, when it has
/// the same architecture and fits the data (input shape, classes): the new
/// study then starts where the champion is instead of from scratch. `None`
/// when there is no such champion (or it is this study's, or its files do
/// not verify), the reason logged.
pub(super) fn warm_start_weights(
    state_dir: &Path,
    study: &str,
    spec: &crate::model::TrialSpec,
    data: &Dataset,
) -> Option<Vec<(String, tch::Tensor)>> {
    let card = crate::model::card::read_champion(state_dir)?;
    let shape = data.val.images.size();
    let fits = shape.get(1..) == Some(&card.input_shape[..]) && card.classes == data.num_classes;
    if card.study == study || card.diverged() || card.arch != spec.arch || !fits {
        return None;
    }
    match crate::export::source::champion(state_dir) {
        Ok(src) => {
            tracing::info!(
                champion_study = %card.study,
                champion_trial = card.trial,
                "warm start: the first trial of the new study starts from the champion's weights"
            );
            Some(src.weights)
        }
        Err(e) => {
            tracing::warn!("no warm start from the champion: {e}");
            None
        }
    }
}
