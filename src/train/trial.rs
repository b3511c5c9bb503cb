//! One trial: build the model, resume from its newest good checkpoint
//! (`resume.rs`), run the step loop (checkpointing on schedule, stopping on
//! request), evaluate.
//!
//! Exact resume: every input of a step is a function of saved state. The
//! weights, batch-norm buffers and optimizer slots are in the checkpoint; the
//! batch order, dropout and augmentation draw from streams keyed by
//! (seed, trial, epoch/step), and the learning rate is a function of the step.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};

use super::eval::{evaluate, EvalResult};
use super::progress::{Progress, StopFlag};
use super::resume::{resume_newest, Resumed, TrialIdentity};
use super::TrainError;
use crate::config::CheckpointEvery;
use crate::data::{rng, BatchSource, Dataset};
use crate::model::{self, InputShape, TrialSpec};
use crate::optim::{learning_rate, Optimizer};
use crate::store::{fault, CheckpointDir};

/// Stream tags, so the per-purpose random streams never coincide.
const STREAM_INIT: u64 = 1;
const STREAM_SHUFFLE: u64 = 2;
const STREAM_STEP: u64 = 3;

/// One line of a trial's history: an epoch's end. Numbers read as NaN where
/// an older build wrote `null` (see `crate::finite`); this build never
/// records a non-finite one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u32,
    pub step: u64,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub train_loss: f64,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub val_accuracy: f64,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub val_loss: f64,
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub lr: f64,
    /// Training seconds since the trial started (resumes included, restarts excluded).
    #[serde(deserialize_with = "crate::finite::f64_or_nan")]
    pub train_seconds: f64,
}

impl EpochRecord {
    /// Every number is finite (a record with NaN or infinity means the trial diverged).
    pub fn is_finite(&self) -> bool {
        [
            self.train_loss,
            self.val_accuracy,
            self.val_loss,
            self.lr,
            self.train_seconds,
        ]
        .iter()
        .all(|x| x.is_finite())
    }
}

/// Decides at an epoch end, from the history so far, whether to stop early (pruning).
pub type PruneFn<'a> = &'a dyn Fn(&[EpochRecord]) -> bool;
/// Receives each epoch's record (metrics sinks).
pub type EpochSink<'a> = &'a dyn Fn(u32, &EpochRecord);

/// Everything a trial needs from its caller.
pub struct TrialSetup<'a> {
    pub trial: u32,
    pub spec: &'a TrialSpec,
    pub seed: u64,
    pub data: &'a Dataset,
    pub device: Device,
    pub checkpoints: &'a mut CheckpointDir,
    pub every: CheckpointEvery,
    pub stop: &'a StopFlag,
    pub progress: &'a Progress,
    /// Called at each epoch end with the history so far; `true` stops the trial early (pruning).
    pub prune: Option<PruneFn<'a>>,
    /// Called at each epoch end (metrics sink).
    pub on_epoch: Option<EpochSink<'a>>,
}

/// The result of a trial that ran to its end (or was pruned).
pub struct TrialReport {
    pub val: EvalResult,
    pub test: EvalResult,
    pub history: Vec<EpochRecord>,
    pub steps: u64,
    pub parameters: i64,
    pub train_seconds: f64,
    /// Trained weights and buffers, named as in the VarStore.
    pub weights: Vec<(String, Tensor)>,
    pub pruned: bool,
    /// The step this run resumed from (0 = fresh start).
    pub resumed_from: u64,
}

pub enum TrialOutcome {
    Finished(Box<TrialReport>),
    /// Stopped on request after checkpointing at `step`.
    Stopped {
        step: u64,
    },
    /// The loss or an evaluation became NaN or infinite: training cannot go
    /// on and the model must never be promoted. Nothing from the diverged
    /// stretch is saved.
    Diverged(Box<Divergence>),
}

/// Where and why a trial diverged.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    /// The step at which it was detected.
    pub step: u64,
    /// The epoch it happened in (1-based).
    pub epoch: u32,
    /// What was not finite, e.g. `training loss NaN`.
    pub reason: String,
    /// The finished epochs before it (all finite).
    pub history: Vec<EpochRecord>,
    pub train_seconds: f64,
}

/// Runs (or resumes) one trial to its end or until the stop flag is raised.
pub fn run_trial(setup: TrialSetup<'_>) -> Result<TrialOutcome, TrainError> {
    let TrialSetup {
        trial,
        spec,
        seed,
        data,
        device,
        checkpoints,
        every,
        stop,
        progress,
        prune,
        on_epoch,
    } = setup;
    let input = input_shape(data);
    spec.validate_for(input).map_err(|e| TrainError::Spec {
        trial,
        what: e.to_string(),
    })?;
    let key = rng::mix(seed, u64::from(trial));

    tch::manual_seed(rng::mix(key, STREAM_INIT) as i64);
    let vs = nn::VarStore::new(device);
    let net = model::build(&vs.root(), &spec.arch, input);
    model::use_channels_last(&vs);
    let named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let trainable: Vec<(String, Tensor)> = named
        .iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let mut opt = Optimizer::new(spec.recipe.optimizer.clone(), trainable);

    let recipe = &spec.recipe;
    let n_train = data.train.labels.size()[0];
    let batch = recipe.batch_size.min(n_train).max(1);
    let per_epoch = ((n_train + batch - 1) / batch) as u64;
    let total = per_epoch * u64::from(recipe.epochs);
    let base_lr = recipe.optimizer.lr();

    let ident = TrialIdentity {
        trial,
        seed,
        spec,
        data,
    };
    let Resumed {
        mut step,
        mut history,
        mut train_seconds,
    } = resume_newest(checkpoints, &ident, &named, &mut opt)?;
    let resumed_from = step;
    if let Some(bad) = history.iter().position(|h| !h.is_finite()) {
        // Written by a build that did not stop diverged trials.
        history.truncate(bad);
        return Ok(diverged(
            trial,
            step,
            step / per_epoch + 1,
            "an earlier run recorded a non-finite loss".into(),
            history,
            train_seconds,
        ));
    }
    let mut last_saved = (step > 0).then_some(step);
    progress.start_trial(trial, total, step / per_epoch);
    if let Some(last) = history.last() {
        progress.end_epoch(last.epoch, last.train_loss, last.val_accuracy);
    }
    progress.set_step(step);
    let meta = |step: u64, history: &[EpochRecord], train_seconds: f64| {
        ident.checkpoint_meta(step, per_epoch, history, train_seconds)
    };
    // Time spent saving, so the overhead of checkpointing is visible in the logs.
    let save_time = std::cell::Cell::new(Duration::ZERO);
    let save = |checkpoints: &mut CheckpointDir,
                opt: &Optimizer,
                step: u64,
                history: &[EpochRecord],
                secs: f64| {
        let mut tensors: Vec<(String, Tensor)> = named
            .iter()
            .map(|(n, t)| (format!("model/{n}"), t.shallow_clone()))
            .collect();
        tensors.extend(opt.state_tensors());
        let score = history
            .last()
            .filter(|h| h.step == step)
            .map(|h| h.val_accuracy);
        let started = Instant::now();
        let path = checkpoints
            .save(step, score, &meta(step, history, secs), &tensors)
            .map_err(TrainError::Store)?;
        progress.checkpoint_saved();
        let took = started.elapsed();
        save_time.set(save_time.get() + took);
        tracing::debug!(trial, step, path = %path.display(), ms = took.as_millis() as u64, "checkpoint saved");
        Ok::<_, TrainError>(path)
    };

    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let mut loss_count = 0u64;
    let mut perm_epoch = u64::MAX;
    let mut perm = Tensor::zeros([0], (Kind::Int64, Device::Cpu));
    let mut last_ckpt = Instant::now();
    let mut last_log = Instant::now();
    let mut log_from = (step, Instant::now());
    let run_start = Instant::now();
    // With shift augmentation this pads a copy of the training set once
    // (timed as training: it replaces per-step work).
    let batches = BatchSource::new(&data.train.images, recipe.augment_shift);
    let mut stopped_early = false;
    // The newest epoch-end validation, reused when training ends on that step.
    let mut last_val: Option<(u64, EvalResult)> = None;

    while step < total {
        if stop.is_raised() {
            let secs = train_seconds + run_start.elapsed().as_secs_f64();
            if step > 0 && last_saved != Some(step) {
                if let Some(why) = non_finite_loss(&loss_sum, loss_count) {
                    return Ok(diverged(
                        trial,
                        step,
                        step / per_epoch + 1,
                        why,
                        history,
                        secs,
                    ));
                }
                save(checkpoints, &opt, step, &history, secs)?;
            }
            tracing::info!(trial, step, "stopped on request after a final checkpoint");
            return Ok(TrialOutcome::Stopped { step });
        }
        let epoch = step / per_epoch;
        if epoch != perm_epoch {
            let order = rng::permutation(
                n_train as usize,
                rng::mix(rng::mix(key, STREAM_SHUFFLE), epoch),
            );
            // On the training device once per epoch: a per-step copy from
            // host memory would make the host wait for the GPU every step.
            perm = Tensor::from_slice(&order).to_device(device);
            perm_epoch = epoch;
        }
        let pos = (step % per_epoch) as i64;
        let len = batch.min(n_train - pos * batch);
        let idx = perm.narrow(0, pos * batch, len);
        tch::manual_seed(rng::mix(rng::mix(key, STREAM_STEP), step) as i64);
        let x = model::channels_last(&batches.batch(&idx));
        let y = data.train.labels.index_select(0, &idx);
        let logits = net.forward_t(&x, true);
        let loss = logits.cross_entropy_loss::<Tensor>(
            &y,
            None,
            Reduction::Mean,
            -100,
            recipe.label_smoothing,
        );
        let lr = learning_rate(&recipe.schedule, base_lr, step, total, per_epoch);
        opt.backward_step(&loss, lr);
        loss_sum += loss.detach();
        loss_count += 1;
        step += 1;
        progress.set_step(step);
        fault::point("train.step");

        let epoch_end = step % per_epoch == 0;
        if epoch_end {
            fault::point("train.eval");
            let val = evaluate(&net, &data.val, data.num_classes, device);
            let secs = train_seconds + run_start.elapsed().as_secs_f64();
            let record = EpochRecord {
                epoch: (step / per_epoch) as u32,
                step,
                train_loss: loss_sum.double_value(&[]) / loss_count.max(1) as f64,
                val_accuracy: val.accuracy,
                val_loss: val.loss,
                lr,
                train_seconds: secs,
            };
            if !record.is_finite() {
                let why = format!(
                    "epoch {}: training loss {}, validation loss {}, learning rate {}",
                    record.epoch, record.train_loss, record.val_loss, record.lr
                );
                return Ok(diverged(
                    trial,
                    step,
                    u64::from(record.epoch),
                    why,
                    history,
                    secs,
                ));
            }
            tracing::info!(
                trial,
                epoch = record.epoch,
                step,
                train_loss = format!("{:.4}", record.train_loss),
                val_accuracy = format!("{:.4}", record.val_accuracy),
                "epoch finished"
            );
            loss_sum = Tensor::zeros([], (Kind::Float, device));
            loss_count = 0;
            progress.end_epoch(record.epoch, record.train_loss, record.val_accuracy);
            history.push(record);
            last_val = Some((step, val));
            if let (Some(cb), Some(last)) = (on_epoch, history.last()) {
                cb(trial, last);
            }
            save(checkpoints, &opt, step, &history, secs)?;
            last_saved = Some(step);
            last_ckpt = Instant::now();
            if step < total && prune.is_some_and(|p| p(&history)) {
                tracing::info!(
                    trial,
                    step,
                    "trial pruned: early accuracy below earlier trials"
                );
                stopped_early = true;
                break;
            }
        } else if due(&every, step, last_ckpt.elapsed()) {
            let secs = train_seconds + run_start.elapsed().as_secs_f64();
            // Saving reads every weight back anyway: one scalar more is free,
            // and a diverged model is never written.
            if let Some(why) = non_finite_loss(&loss_sum, loss_count) {
                return Ok(diverged(
                    trial,
                    step,
                    step / per_epoch + 1,
                    why,
                    history,
                    secs,
                ));
            }
            save(checkpoints, &opt, step, &history, secs)?;
            last_saved = Some(step);
            last_ckpt = Instant::now();
        }
        if last_log.elapsed() >= Duration::from_secs(5) {
            let rate =
                (step - log_from.0) as f64 * batch as f64 / log_from.1.elapsed().as_secs_f64();
            tracing::info!(
                trial,
                step,
                total,
                epoch = step / per_epoch,
                samples_per_sec = rate as u64,
                "training"
            );
            progress
                .samples_per_sec
                .store(rate as u64, Ordering::Relaxed);
            last_log = Instant::now();
            log_from = (step, Instant::now());
        }
    }
    let this_run = run_start.elapsed().as_secs_f64();
    train_seconds += this_run;
    let saving = save_time.get().as_secs_f64();
    tracing::info!(
        trial,
        checkpoint_seconds = format!("{saving:.3}"),
        overhead_percent = format!("{:.2}", 100.0 * saving / this_run.max(1e-9)),
        "checkpointing cost in this run"
    );

    fault::point("train.eval");
    let val = match last_val {
        Some((at, val)) if at == step => val,
        _ => evaluate(&net, &data.val, data.num_classes, device),
    };
    let test = evaluate(&net, &data.test, data.num_classes, device);
    let evals = [val.loss, val.accuracy, test.loss, test.accuracy];
    if evals.iter().any(|x| !x.is_finite()) {
        let why = format!(
            "final evaluation: validation loss {}, test loss {}",
            val.loss, test.loss
        );
        let epoch = step.div_ceil(per_epoch);
        return Ok(diverged(trial, step, epoch, why, history, train_seconds));
    }
    // Contiguous copies: exporters write standard (NCHW) layout.
    let weights = named
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().contiguous()))
        .collect();
    Ok(TrialOutcome::Finished(Box::new(TrialReport {
        val,
        test,
        history,
        steps: step,
        parameters: model::parameter_count(&vs),
        train_seconds,
        weights,
        pruned: stopped_early,
        resumed_from,
    })))
}

/// Why the running loss sum (of `count` steps) shows divergence, if it does.
/// Reads one scalar from the device: call it where the host syncs anyway.
fn non_finite_loss(loss_sum: &Tensor, count: u64) -> Option<String> {
    let sum = loss_sum.double_value(&[]);
    (count > 0 && !sum.is_finite()).then(|| format!("training loss {sum}"))
}

/// The outcome of a diverged trial, logged.
fn diverged(
    trial: u32,
    step: u64,
    epoch: u64,
    reason: String,
    history: Vec<EpochRecord>,
    train_seconds: f64,
) -> TrialOutcome {
    tracing::warn!(
        trial,
        step,
        "trial diverged, nothing more is saved: {reason}"
    );
    TrialOutcome::Diverged(Box::new(Divergence {
        step,
        epoch: u32::try_from(epoch).unwrap_or(u32::MAX),
        reason,
        history,
        train_seconds,
    }))
}

/// Is a checkpoint due by the step or time interval?
fn due(every: &CheckpointEvery, step: u64, since_last: Duration) -> bool {
    every.steps.is_some_and(|n| step % n == 0) || every.interval.is_some_and(|d| since_last >= d)
}

/// The input geometry of a data set.
pub fn input_shape(data: &Dataset) -> InputShape {
    let s = data.train.images.size();
    InputShape {
        channels: s[1],
        height: s[2],
        width: s[3],
        classes: data.num_classes,
    }
}
