//! Resuming a trial: the meta every checkpoint of a trial carries, and
//! loading the newest checkpoint that verifies and belongs to this trial
//! (others are set aside so the next restart does not pick them again).

use std::collections::HashMap;

use serde_json::json;
use tch::Tensor;

use super::outcome::EpochRecord;
use super::setup::input_shape;
use super::TrainError;
use crate::data::Dataset;
use crate::model::{Normalisation, TrialSpec};
use crate::optim::Optimizer;
use crate::store::{saved_like, CheckpointDir};

/// Version of the checkpoint meta written by trials; checked on resume.
pub const CHECKPOINT_FORMAT: u32 = 1;

/// What a checkpoint must match to be resumed by this trial.
pub struct TrialIdentity<'a> {
    pub trial: u32,
    pub seed: u64,
    pub spec: &'a TrialSpec,
    pub data: &'a Dataset,
}

impl TrialIdentity<'_> {
    /// The JSON meta saved beside the tensors of a checkpoint at `step`.
    pub fn checkpoint_meta(
        &self,
        step: u64,
        per_epoch: u64,
        history: &[EpochRecord],
        train_seconds: f64,
    ) -> serde_json::Value {
        let shape = input_shape(self.data);
        json!({
            "format": CHECKPOINT_FORMAT, "trial": self.trial, "seed": self.seed, "step": step,
            "epoch": step / per_epoch, "position_in_epoch": step % per_epoch,
            "spec": self.spec, "fingerprint": self.data.fingerprint, "history": history,
            "train_seconds": train_seconds,
            // What `trainerd export --trial` needs to rebuild the input contract.
            "input_shape": [shape.channels, shape.height, shape.width],
            "classes": shape.classes, "normalisation": self.data.normalisation,
            "class_names": self.data.class_names,
        })
    }
}

/// Where training goes on from (step 0 and no history for a fresh start).
pub struct Resumed {
    pub step: u64,
    pub history: Vec<EpochRecord>,
    pub train_seconds: f64,
}

/// Loads the newest checkpoint that verifies *and* belongs to this trial into
/// `named` (the model's variables) and `opt`. One that verifies but cannot be
/// used (another spec, another data version) is quarantined.
pub fn resume_newest(
    checkpoints: &mut CheckpointDir,
    ident: &TrialIdentity<'_>,
    named: &[(String, Tensor)],
    opt: &mut Optimizer,
) -> Result<Resumed, TrainError> {
    let trial = ident.trial;
    while let Some(ckpt) = checkpoints.load_newest_valid().map_err(TrainError::Store)? {
        match restore(&ckpt.meta, &ckpt.tensors, ident, named, opt) {
            Ok((history, train_seconds)) => {
                tracing::info!(trial, step = ckpt.step, path = %ckpt.path.display(), "resumed from checkpoint");
                return Ok(Resumed {
                    step: ckpt.step,
                    history,
                    train_seconds,
                });
            }
            Err(why) => {
                tracing::warn!(trial, path = %ckpt.path.display(), "checkpoint not usable, set aside: {why}");
                checkpoints
                    .quarantine(&ckpt.path, &why)
                    .map_err(TrainError::Store)?;
            }
        }
    }
    Ok(Resumed {
        step: 0,
        history: Vec::new(),
        train_seconds: 0.0,
    })
}

/// Checks a checkpoint belongs to this trial and loads it into the model and
/// optimizer; returns its history and training seconds.
fn restore(
    meta: &serde_json::Value,
    tensors: &[(String, Tensor)],
    ident: &TrialIdentity<'_>,
    named: &[(String, Tensor)],
    opt: &mut Optimizer,
) -> Result<(Vec<EpochRecord>, f64), String> {
    let format = meta["format"].as_u64().unwrap_or(0);
    if format != u64::from(CHECKPOINT_FORMAT) {
        return Err(format!(
            "checkpoint format {format}, this build reads {CHECKPOINT_FORMAT}"
        ));
    }
    if meta["trial"].as_u64() != Some(u64::from(ident.trial))
        || meta["seed"].as_u64() != Some(ident.seed)
    {
        return Err("it belongs to another trial or seed".into());
    }
    if meta["fingerprint"].as_str() != Some(ident.data.fingerprint.as_str()) {
        return Err("it was trained on another version of the data".into());
    }
    // The trial goes on with the inputs normalised as it started (the values
    // are computed from the same split; an older build's one pair differs
    // for RGB sets, and such a checkpoint is not resumed).
    if !normalised_alike(meta, &ident.data.normalisation) {
        return Err("its inputs were normalised with other values than this data set's".into());
    }
    let saved_spec: TrialSpec =
        serde_json::from_value(meta["spec"].clone()).map_err(|e| e.to_string())?;
    if &saved_spec != ident.spec {
        return Err("its architecture or recipe differs from this trial's".into());
    }
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    // Check everything before copying anything: a half-restored model would be worse than none.
    let mut pairs = Vec::with_capacity(named.len());
    for (name, var) in named {
        let src = saved_like(
            &map,
            &format!("model/{name}"),
            var,
            &format!("weight {name}"),
        )?;
        pairs.push((var.shallow_clone(), src));
    }
    opt.check_state(&map)?;
    for (mut var, src) in pairs {
        tch::no_grad(|| var.copy_(src));
    }
    opt.load_state(&map)?;
    let history = serde_json::from_value(meta["history"].clone()).map_err(|e| e.to_string())?;
    Ok((history, meta["train_seconds"].as_f64().unwrap_or(0.0)))
}

/// The checkpoint's meta records no normalisation (an older build), or the same as `current`.
fn normalised_alike(meta: &serde_json::Value, current: &Normalisation) -> bool {
    match serde_json::from_value::<Normalisation>(meta["normalisation"].clone()) {
        Ok(saved) => saved.same_as(current),
        Err(_) => meta.get("normalisation").is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_resumes_only_with_its_own_normalisation() {
        let rgb = Normalisation::per_channel(&[0.1, 0.2, 0.3], &[0.4, 0.5, 0.6]).unwrap();
        let meta = json!({ "normalisation": rgb });
        assert!(normalised_alike(&meta, &rgb));
        let other = Normalisation::per_channel(&[0.1, 0.2, 0.31], &[0.4, 0.5, 0.6]).unwrap();
        assert!(!normalised_alike(&meta, &other));
        let pair = json!({ "normalisation": [0.2, 0.4] });
        assert!(
            !normalised_alike(&pair, &rgb),
            "an older build's one pair for an RGB set"
        );
        assert!(normalised_alike(&pair, &Normalisation::uniform(0.2, 0.4)));
        assert!(
            normalised_alike(&json!({}), &rgb),
            "not recorded: nothing to compare"
        );
        assert!(!normalised_alike(&json!({ "normalisation": "x" }), &rgb));
    }
}
