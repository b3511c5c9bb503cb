//! The job chain: load data, run the study's trials, promote the champion.

pub mod promote;

use std::path::PathBuf;

use anyhow::Context;
use tch::Device;

use crate::config::{Config, DeviceChoice};
use crate::data::{Dataset, LoadOptions};
use crate::model::{resolve_preset, TrialSpec};
use crate::store::CheckpointDir;
use crate::train::{self, Progress, StopFlag, TrialOutcome};
use promote::{promote, ModelCard, MODEL_CARD_FORMAT};

/// How a study ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StudyEnd {
    TargetReached,
    BudgetExhausted,
    Stopped,
}

/// Picks the libtorch device for a `--device` choice.
pub fn select_device(choice: DeviceChoice) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => Err(crate::config::ConfigError::Invalid {
            key: "device".into(),
            what: "cuda requested but no CUDA device is usable (build with --features cuda, check the driver)"
                .into(),
        }
        .into()),
    }
}

/// The first trial's spec: the preset with the flag overrides applied.
pub fn initial_spec(cfg: &Config) -> anyhow::Result<TrialSpec> {
    let mut spec =
        resolve_preset(&cfg.preset).map_err(|what| crate::config::ConfigError::Invalid {
            key: "preset".into(),
            what,
        })?;
    if let Some(e) = cfg.epochs {
        spec.recipe.epochs = e;
    }
    if let Some(b) = cfg.batch_size {
        spec.recipe.batch_size = b;
    }
    if let Some(lr) = cfg.lr {
        spec.recipe.optimizer = spec.recipe.optimizer.with_lr(lr);
    }
    Ok(spec)
}

/// Loads the data set named by the config (exit 65 on bad data).
pub fn load_data(cfg: &Config, device: Device) -> anyhow::Result<Dataset> {
    crate::data::ensure_mnist(&cfg.data_dir, &cfg.mnist_mirrors)?;
    let data = Dataset::load(
        &cfg.data_dir,
        &LoadOptions {
            val_size: cfg.val_size,
            seed: cfg.seed,
        },
    )?;
    Ok(data.to_device(device))
}

/// Directory of one trial's checkpoints.
pub fn trial_dir(cfg: &Config, trial: u32) -> PathBuf {
    cfg.state_dir.join("trials").join(format!("{trial:04}"))
}

/// `trainerd train`: runs the study to its end and promotes the best model.
pub fn train_study(cfg: &Config, stop: &StopFlag, progress: &Progress) -> anyhow::Result<StudyEnd> {
    let device = select_device(cfg.device)?;
    let data = load_data(cfg, device)?;
    tracing::info!(
        train = data.train.labels.size()[0], val = data.val.labels.size()[0],
        test = data.test.labels.size()[0], fingerprint = %&data.fingerprint[..12], ?device,
        "data loaded"
    );
    let spec = initial_spec(cfg)?;
    let trial = 0;
    let mut ckpts = CheckpointDir::open(
        &trial_dir(cfg, trial).join("checkpoints"),
        cfg.keep_checkpoints,
    )?;
    let outcome = train::run_trial(train::TrialSetup {
        trial,
        spec: &spec,
        seed: cfg.seed,
        data: &data,
        device,
        checkpoints: &mut ckpts,
        every: cfg.checkpoint_every,
        stop,
        progress,
        prune: None,
        on_epoch: None,
    })?;
    let report = match outcome {
        TrialOutcome::Stopped { .. } => return Ok(StudyEnd::Stopped),
        TrialOutcome::Finished(r) => r,
    };
    tracing::info!(
        trial,
        val_accuracy = report.val.accuracy,
        test_accuracy = report.test.accuracy,
        train_seconds = format!("{:.1}", report.train_seconds),
        "trial finished"
    );
    let shape = train::input_shape(&data);
    let card = ModelCard {
        format: MODEL_CARD_FORMAT,
        trial,
        preset: spec.preset.clone(),
        arch: spec.arch.clone(),
        recipe: spec.recipe.clone(),
        val_accuracy: report.val.accuracy,
        test_accuracy: report.test.accuracy,
        val_loss: report.val.loss,
        test_loss: report.test.loss,
        per_class_test_accuracy: report.test.per_class_accuracy.clone(),
        test_confusion: report.test.confusion.clone(),
        parameters: report.parameters,
        epochs_trained: report.history.len() as u32,
        train_seconds: report.train_seconds,
        seed: cfg.seed,
        data_fingerprint: data.fingerprint.clone(),
        input_shape: [shape.channels, shape.height, shape.width],
        classes: data.num_classes,
        normalisation: data.normalisation,
        created_at: ModelCard::now(),
    };
    let best = promote(&cfg.state_dir, &report.weights, &card).context("promoting the model")?;
    tracing::info!(path = %best.display(), test_accuracy = card.test_accuracy, "model promoted");
    let summary = crate::report::TrialSummary {
        trial,
        spec: spec.clone(),
        state: "finished".into(),
        val_accuracy: Some(report.val.accuracy),
        test_accuracy: Some(report.test.accuracy),
        parameters: Some(report.parameters),
        train_seconds: report.train_seconds,
        history: report.history.clone(),
    };
    let commit = crate::watch::git::commit_of(&cfg.data_dir);
    let inputs = crate::report::ReportInputs {
        card: &card,
        trials: std::slice::from_ref(&summary),
        target_accuracy: Some(cfg.target_accuracy),
        study: None,
        commit: commit.as_deref(),
        class_names: None,
    };
    // The report is for people: a failure to write it is logged, not fatal.
    match crate::report::write(&cfg.state_dir, &inputs) {
        Ok(path) => tracing::info!(path = %path.display(), "report written"),
        Err(e) => tracing::warn!("report not written: {e}"),
    }
    Ok(if report.val.accuracy >= cfg.target_accuracy {
        StudyEnd::TargetReached
    } else {
        StudyEnd::BudgetExhausted
    })
}
