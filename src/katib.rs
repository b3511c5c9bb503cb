//! `trainerd trial`: exactly one trial from flags, no search, reporting its
//! objective the way Katib's metrics collectors read it: stdout lines
//! `<RFC3339> name=value ...`, and optionally a JSON-lines file whose values
//! are all strings.

use std::path::PathBuf;

use crate::config::{Config, ConfigError};
use crate::exit::Outcome;
use crate::model::OptimSpec;
use crate::pipeline;
use crate::timestamp::now_rfc3339;
use crate::train::{self, EpochRecord, Progress, StopFlag, TrialOutcome};

/// What `trainerd trial` adds to the training options.
#[derive(Debug, Clone, Default)]
pub struct TrialSettings {
    /// Trial number (names its checkpoint dir and seeds its streams).
    pub trial: u32,
    /// Optimizer by name: sgd | adamw | adadelta (default: the preset's).
    pub optimizer: Option<String>,
    /// Also append metrics as JSON lines (all values strings) to this file.
    pub metrics_file: Option<PathBuf>,
}

fn optimizer_from_name(name: &str, lr: f64) -> Result<OptimSpec, ConfigError> {
    Ok(match name {
        "sgd" => OptimSpec::Sgd {
            lr,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
        },
        "adamw" => OptimSpec::AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        },
        "adadelta" => OptimSpec::Adadelta {
            lr,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
        },
        other => {
            return Err(ConfigError::Invalid {
                key: "optimizer".into(),
                what: format!("{other:?} is not one of sgd, adamw, adadelta"),
            })
        }
    })
}

/// One metrics line in Katib's StdOut format.
pub fn stdout_line(rec: &EpochRecord) -> String {
    format!(
        "{} epoch={} accuracy={:.6} loss={:.6} train_loss={:.6}",
        now_rfc3339(),
        rec.epoch,
        rec.val_accuracy,
        rec.val_loss,
        rec.train_loss
    )
}

/// One metrics record in Katib's JSON file format: every value a string.
pub fn json_record(rec: &EpochRecord) -> serde_json::Value {
    serde_json::json!({
        "timestamp": now_rfc3339(),
        "epoch": rec.epoch.to_string(),
        "accuracy": format!("{:.6}", rec.val_accuracy),
        "loss": format!("{:.6}", rec.val_loss),
        "train_loss": format!("{:.6}", rec.train_loss),
    })
}

/// Runs the trial; returns how it ended (done, or stopped).
pub fn run(
    args: &TrialSettings,
    cfg: &Config,
    stop: &StopFlag,
    progress: &Progress,
) -> anyhow::Result<Outcome> {
    let mut spec = pipeline::initial_spec(cfg)?;
    if let Some(name) = &args.optimizer {
        spec.recipe.optimizer =
            optimizer_from_name(name, cfg.lr.unwrap_or(spec.recipe.optimizer.lr()))?;
    }
    let device = pipeline::select_device(cfg.device)?;
    let data = pipeline::load_data(cfg, device, stop)?;
    pipeline::check_specs(&spec, &[], train::input_shape(&data))?;
    let mut ckpts = pipeline::open_checkpoints(
        &cfg.state_dir,
        &pipeline::trial_dir(cfg, args.trial),
        cfg.keep_checkpoints,
    )?;
    let metrics_file = args.metrics_file.clone();
    let on_epoch = move |_trial: u32, rec: &EpochRecord| {
        print_line(&stdout_line(rec));
        if let Some(path) = &metrics_file {
            if let Err(e) = pipeline::jsonl::append_one(path, &json_record(rec)) {
                tracing::warn!(path = %path.display(), "cannot append Katib metrics: {e}");
            }
        }
    };
    let tb_dir = crate::state_dir::standalone_tensorboard(&cfg.state_dir, args.trial);
    let outcome = train::run_trial(train::TrialSetup {
        trial: args.trial,
        spec: &spec,
        seed: cfg.seed,
        data: &data,
        device,
        checkpoints: &mut ckpts,
        every: cfg.checkpoint_every,
        stop,
        progress,
        prune: None,
        warm_start: None,
        on_epoch: Some(&on_epoch),
        tensorboard: cfg.tensorboard.then_some(tb_dir.as_path()),
    })?;
    match outcome {
        TrialOutcome::Stopped { .. } => Ok(Outcome::Stopped),
        TrialOutcome::Diverged(d) => {
            // Katib reads a failed trial from the exit status; the line says why.
            print_line(&format!(
                "{} diverged=1 epoch={} step={} accuracy=0",
                now_rfc3339(),
                d.epoch,
                d.step
            ));
            eprintln!(
                "trainerd: trial {} diverged in epoch {}: {}; lower the learning rate",
                args.trial, d.epoch, d.reason
            );
            Ok(Outcome::BelowTarget)
        }
        TrialOutcome::Finished(report) => {
            // Validation only: a trial is never measured on the test split.
            print_line(&format!(
                "{} accuracy={:.6} loss={:.6}",
                now_rfc3339(),
                report.val.accuracy,
                report.val.loss
            ));
            Ok(Outcome::Done)
        }
    }
}

/// One metric line on stdout for Katib's collector. A closed stdout (the
/// collector gone) loses the line, not the trial: checkpoints and
/// `--metrics-file` still record it.
fn print_line(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}
