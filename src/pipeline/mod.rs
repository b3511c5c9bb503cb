//! The job chain: load data, run the study's trials (search), promote the
//! champion, record and announce every step; the daemon loop around it.
//!
//! - [`study`]: one study, resumable from its journal; its trial loop in
//!   `trials.rs`, a trial's end (promotion first) in `finish.rs`, the test
//!   split measured once on the model about to be promoted in `test_split.rs`
//! - [`promote`]: the champion in `best/`, crash recovery
//! - [`versions`]: every promotion kept as `versions/N/`, retention
//! - [`rollback`]: `trainerd rollback [--to N]`
//! - [`events`]: `events.jsonl`, derived from journal records, once per id
//! - [`webhook`]: signed, retried, recorded notifications on their own task
//! - [`daemon`]: what wakes an idle `trainerd run`: study requests

mod chain;
mod champion;
mod context;
pub mod daemon;
pub mod events;
mod finish;
/// Moved to the store (the study journal appends through it too).
pub use crate::store::jsonl;
pub mod promote;
pub mod rollback;
pub mod study;
mod test_split;
mod trials;
pub mod versions;
pub mod webhook;

use tch::Device;

use crate::config::{Config, DeviceChoice};
use crate::data::download::DownloadOptions;
use crate::data::{Dataset, LoadOptions};
use crate::model::{resolve_preset, TrialSpec};
use crate::train::StopFlag;

/// How a study ended (for `trainerd train`, its exit status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StudyEnd {
    TargetReached,
    BudgetExhausted,
    Stopped,
}

impl From<StudyEnd> for crate::exit::Outcome {
    /// `train`'s outcome: done when the target is reached, below target when
    /// the budget is spent, stopped.
    fn from(end: StudyEnd) -> Self {
        use crate::exit::Outcome;
        match end {
            StudyEnd::TargetReached => Outcome::Done,
            StudyEnd::BudgetExhausted => Outcome::BelowTarget,
            StudyEnd::Stopped => Outcome::Stopped,
        }
    }
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

/// The first trial's spec: the preset with the flag overrides applied
/// (`--epochs`, `--batch-size`, `--lr` shape the starting trial only; the
/// ladder's rungs bring their own recipes).
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
    spec.validate()
        .map_err(|e| crate::config::ConfigError::Invalid {
            key: "preset".into(),
            what: format!("{} (with the flags applied): {e}", cfg.preset),
        })?;
    Ok(spec)
}

/// Checks the first trial and every ladder rung against the data's input
/// geometry, before anything is journaled (exit 78 naming the rung and key).
pub fn check_specs(
    start: &TrialSpec,
    ladder: &[TrialSpec],
    input: crate::model::InputShape,
) -> Result<(), crate::config::ConfigError> {
    let fail = |key: &str, spec: &TrialSpec, e: crate::model::SpecError| {
        crate::config::ConfigError::Invalid {
            key: key.into(),
            what: format!(
                "{}: {e} (for {}x{}x{} images, {} classes)",
                spec.preset, input.channels, input.height, input.width, input.classes
            ),
        }
    };
    start
        .validate_for(input)
        .map_err(|e| fail("preset", start, e))?;
    for rung in ladder {
        rung.validate_for(input)
            .map_err(|e| fail("ladder", rung, e))?;
    }
    Ok(())
}

/// Loads the data set named by the config (exit 65 on bad data), downloading
/// MNIST first into an empty data dir (a stop during it: exit 143).
pub fn load_data(cfg: &Config, device: Device, stop: &StopFlag) -> anyhow::Result<Dataset> {
    crate::data::ensure_mnist(
        &cfg.data_dir,
        cfg.data_source.format,
        &DownloadOptions::within_watchdog(&cfg.mnist_mirrors, stop, cfg.watchdog),
    )?;
    let data = Dataset::load(
        &cfg.data_dir,
        &LoadOptions {
            val_size: cfg.val_size,
            target: cfg.target_accuracy,
            seed: cfg.seed,
            memory_budget: cfg.memory_budget,
            classes: cfg.classes,
            source: cfg.data_source,
        },
    )?;
    Ok(data.to_device(device))
}

/// Opens a trial's checkpoint dir with its quarantine under
/// `state_dir/quarantine/` (the same relative path): a finished trial's folder
/// is removed, and what was set aside from it must outlive it.
pub fn open_checkpoints(
    state_dir: &std::path::Path,
    trial_dir: &std::path::Path,
    keep: usize,
) -> Result<crate::store::CheckpointDir, crate::store::StoreError> {
    let rel = trial_dir.strip_prefix(state_dir).unwrap_or(trial_dir);
    let quarantine = state_dir
        .join(crate::store::checkpoint::QUARANTINE_DIR)
        .join(
            rel.components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect::<std::path::PathBuf>(),
        );
    Ok(
        crate::store::CheckpointDir::open(&crate::state_dir::checkpoints(trial_dir), keep)?
            .quarantine_into(quarantine),
    )
}

/// Directory of a standalone trial's checkpoints (`trainerd trial`); trials of
/// a study live under their study (see [`study::trial_dir`]).
pub fn trial_dir(cfg: &Config, trial: u32) -> std::path::PathBuf {
    crate::state_dir::standalone_trial(&cfg.state_dir, trial)
}
