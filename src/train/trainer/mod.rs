//! The trainer of one trial: its model, optimizer, position and clocks as
//! fields, with one method per part of the step loop (a step, an epoch's
//! end, a checkpoint, a stop, the final validation). `trial::run_trial`
//! drives it.

mod epoch;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Reduction, Tensor};

use super::eval::EvalResult;
use super::outcome::{Divergence, EpochRecord, TrialOutcome};
use super::resume::{resume_newest, Resumed, TrialIdentity};
use super::setup::{input_shape, TrialSetup};
use super::weights::copy_by_name;
use super::TrainError;
use crate::data::{rng, BatchSource};
use crate::model::{self, InputShape, TrialSpec};
use crate::optim::{learning_rate, Optimizer};
use crate::store::fault;
use crate::tensorboard::Scalars;

/// Stream tags, so the per-purpose random streams never coincide.
const STREAM_INIT: u64 = 1;
const STREAM_SHUFFLE: u64 = 2;
const STREAM_STEP: u64 = 3;

/// What the loop does after a step.
pub(super) enum Flow {
    Go,
    /// Stopped early at an epoch end (pruning).
    Pruned,
    Diverged(TrialOutcome),
}

/// How a trainer starts: ready to train, or already at an outcome.
pub(super) enum Start<'a> {
    Ready(Box<Trainer<'a>>),
    Done(TrialOutcome),
}

/// The step counts of a trial.
struct Geometry {
    n_train: i64,
    batch: i64,
    per_epoch: u64,
    total: u64,
}

impl Geometry {
    fn of(setup: &TrialSetup<'_>) -> Geometry {
        let n_train = setup.data.train.labels.size()[0];
        let batch = setup.spec.recipe.batch_size.min(n_train).max(1);
        let per_epoch = ((n_train + batch - 1) / batch) as u64;
        let total = per_epoch * u64::from(setup.spec.recipe.epochs);
        Geometry {
            n_train,
            batch,
            per_epoch,
            total,
        }
    }
}

/// The model and its optimizer, built from the trial's init stream.
struct Net {
    vs: nn::VarStore,
    net: nn::SequentialT,
    /// Every variable (weights and buffers), named as in the VarStore.
    named: Vec<(String, Tensor)>,
    opt: Optimizer,
}

impl Net {
    fn build(spec: &TrialSpec, input: InputShape, key: u64, device: Device) -> Net {
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
        let opt = Optimizer::new(spec.recipe.optimizer.clone(), trainable);
        Net {
            vs,
            net,
            named,
            opt,
        }
    }
}

/// Wall clocks of this run (resumes excluded): training time, checkpoint
/// and log cadence, time spent saving.
struct Clocks {
    run_start: Instant,
    last_ckpt: Instant,
    last_log: Instant,
    /// Step and time the samples-per-second rate counts from.
    log_from: (u64, Instant),
    /// Time spent saving, so the overhead of checkpointing is visible in the logs.
    saving: Duration,
    /// Step and time the current epoch's samples-per-second rate counts from.
    epoch_from: (u64, Instant),
}

/// One trial's training state; see `run_trial` for the loop.
pub(super) struct Trainer<'a> {
    setup: TrialSetup<'a>,
    ident: TrialIdentity<'a>,
    key: u64,
    geo: Geometry,
    net: Net,
    batches: BatchSource<'a>,
    /// Steps done so far (resumed ones included).
    pub(super) step: u64,
    history: Vec<EpochRecord>,
    /// Training seconds of earlier runs (from the checkpoint).
    earlier_seconds: f64,
    resumed_from: u64,
    last_saved: Option<u64>,
    /// Running loss sum on the device, and its step count, since the epoch began.
    loss_sum: Tensor,
    loss_count: u64,
    /// The batch order of epoch `perm_epoch`, on the training device.
    perm: Tensor,
    perm_epoch: u64,
    /// The newest epoch-end validation, reused when training ends on that step.
    last_val: Option<(u64, EvalResult)>,
    pruned: bool,
    clocks: Clocks,
    /// The trial's TensorBoard scalars (off when not wanted or after an I/O error).
    tb: Scalars,
}

impl<'a> Trainer<'a> {
    /// Builds the model, resumes from the newest good checkpoint, and
    /// announces the trial to the progress counters.
    pub(super) fn start(setup: TrialSetup<'a>) -> Result<Start<'a>, TrainError> {
        let (trial, spec, data) = (setup.trial, setup.spec, setup.data);
        let input = input_shape(data);
        spec.validate_for(input).map_err(|e| TrainError::Spec {
            trial,
            what: e.to_string(),
        })?;
        let key = rng::mix(setup.seed, u64::from(trial));
        let mut net = Net::build(spec, input, key, setup.device);
        let geo = Geometry::of(&setup);
        let ident = TrialIdentity {
            trial,
            seed: setup.seed,
            spec,
            data,
        };
        let Resumed {
            step,
            mut history,
            train_seconds,
        } = resume_newest(setup.checkpoints, &ident, &net.named, &mut net.opt)?;
        if step == 0 {
            if let Some(weights) = setup.warm_start {
                warm_start(&net.named, weights).map_err(|what| TrainError::Spec { trial, what })?;
            }
        }
        if let Some(bad) = history.iter().position(|h| !h.is_finite()) {
            // Written by a build that did not stop diverged trials.
            history.truncate(bad);
            let why = "an earlier run recorded a non-finite loss".into();
            let epoch = step / geo.per_epoch + 1;
            return Ok(Start::Done(diverged(
                trial,
                step,
                epoch,
                why,
                history,
                train_seconds,
            )));
        }
        let progress = setup.progress;
        progress.start_trial(trial, geo.total, step / geo.per_epoch);
        if let Some(last) = history.last() {
            progress.end_epoch(last.epoch, last.train_loss, last.val_accuracy);
        }
        progress.set_step(step);
        let now = Instant::now();
        let clocks = Clocks {
            run_start: now,
            last_ckpt: now,
            last_log: now,
            log_from: (step, now),
            saving: Duration::ZERO,
            epoch_from: (step, now),
        };
        let tb = match setup.tensorboard {
            Some(dir) => Scalars::open(dir, trial, step),
            None => Scalars::off(trial),
        };
        // With shift augmentation this pads a copy of the training set once
        // (timed as training: it replaces per-step work).
        let batches = BatchSource::new(&data.train.images, spec.recipe.augment_shift);
        let device = setup.device;
        Ok(Start::Ready(Box::new(Trainer {
            setup,
            ident,
            key,
            geo,
            net,
            batches,
            step,
            history,
            earlier_seconds: train_seconds,
            resumed_from: step,
            last_saved: (step > 0).then_some(step),
            loss_sum: Tensor::zeros([], (Kind::Float, device)),
            loss_count: 0,
            perm: Tensor::zeros([0], (Kind::Int64, Device::Cpu)),
            perm_epoch: u64::MAX,
            last_val: None,
            pruned: false,
            clocks,
            tb,
        })))
    }

    pub(super) fn total(&self) -> u64 {
        self.geo.total
    }

    pub(super) fn stop_requested(&self) -> bool {
        self.setup.stop.is_raised()
    }

    pub(super) fn at_epoch_end(&self) -> bool {
        self.step % self.geo.per_epoch == 0
    }

    /// Training seconds so far, earlier runs included.
    fn seconds(&self) -> f64 {
        self.earlier_seconds + self.clocks.run_start.elapsed().as_secs_f64()
    }

    /// The batch order of the current epoch, drawn once per epoch.
    fn epoch_order(&mut self) {
        let epoch = self.step / self.geo.per_epoch;
        if epoch != self.perm_epoch {
            let order = rng::permutation(
                self.geo.n_train as usize,
                rng::mix(rng::mix(self.key, STREAM_SHUFFLE), epoch),
            );
            // On the training device once per epoch: a per-step copy from
            // host memory would make the host wait for the GPU every step.
            self.perm = Tensor::from_slice(&order).to_device(self.setup.device);
            self.perm_epoch = epoch;
        }
    }

    /// One optimizer step on the next batch; returns its learning rate.
    pub(super) fn train_step(&mut self) -> f64 {
        self.epoch_order();
        let (batch, n_train) = (self.geo.batch, self.geo.n_train);
        let recipe = &self.setup.spec.recipe;
        let step = self.step;
        let pos = (step % self.geo.per_epoch) as i64;
        let len = batch.min(n_train - pos * batch);
        let idx = self.perm.narrow(0, pos * batch, len);
        tch::manual_seed(rng::mix(rng::mix(self.key, STREAM_STEP), step) as i64);
        let x = model::channels_last(&self.batches.batch(&idx));
        let y = self.setup.data.train.labels.index_select(0, &idx);
        let logits = self.net.net.forward_t(&x, true);
        let loss = logits.cross_entropy_loss::<Tensor>(
            &y,
            None,
            Reduction::Mean,
            -100,
            recipe.label_smoothing,
        );
        let base_lr = recipe.optimizer.lr();
        let lr = learning_rate(
            &recipe.schedule,
            base_lr,
            step,
            self.geo.total,
            self.geo.per_epoch,
        );
        self.net.opt.backward_step(&loss, lr);
        self.loss_sum += loss.detach();
        self.loss_count += 1;
        self.step += 1;
        self.setup.progress.set_step(self.step);
        fault::point("train.step");
        lr
    }

    /// Logs the training rate every five seconds, and the first step of a
    /// run at once (so a log shows that training started).
    pub(super) fn log_rate(&mut self) {
        let c = &mut self.clocks;
        let first = self.step == c.log_from.0 + 1 && c.last_log == c.run_start;
        if !first && c.last_log.elapsed() < Duration::from_secs(5) {
            return;
        }
        let (step, batch) = (self.step, self.geo.batch);
        let rate =
            (step - c.log_from.0) as f64 * batch as f64 / c.log_from.1.elapsed().as_secs_f64();
        tracing::info!(
            trial = self.setup.trial,
            step,
            total = self.geo.total,
            epoch = step / self.geo.per_epoch,
            samples_per_sec = rate as u64,
            "training"
        );
        self.setup
            .progress
            .samples_per_sec
            .store(rate as u64, Ordering::Relaxed);
        c.last_log = Instant::now();
        c.log_from = (step, Instant::now());
    }

    /// The trial diverged at the current step, in `epoch` (1-based).
    fn diverge(&mut self, epoch: u64, reason: String, secs: f64) -> TrialOutcome {
        let history = std::mem::take(&mut self.history);
        diverged(self.setup.trial, self.step, epoch, reason, history, secs)
    }
}

/// Copies the champion's `weights` into the model's variables (see [`copy_by_name`]).
fn warm_start(named: &[(String, Tensor)], weights: &[(String, Tensor)]) -> Result<(), String> {
    copy_by_name(named, weights).map_err(|e| format!("warm start from the champion: {e}"))
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
