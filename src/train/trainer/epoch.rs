//! The trainer's epoch ends, checkpoints, stop and final validation: the
//! parts of the loop that write or report, beside the step in `mod.rs`.

use std::time::Instant;

use tch::{Kind, Tensor};

use super::{Flow, Trainer};
use crate::data::Split;
use crate::model;
use crate::store::fault;
use crate::train::eval::{evaluate_network, EvalResult, Network};
use crate::train::outcome::{EpochRecord, TrialOutcome, TrialReport};
use crate::train::setup::input_shape;
use crate::train::TrainError;

impl Trainer<'_> {
    /// Ends the trial on a stop request, checkpointing the current step
    /// first unless it is saved already (or diverged).
    pub(in crate::train) fn stop_on_request(mut self) -> Result<TrialOutcome, TrainError> {
        let (trial, step) = (self.setup.trial, self.step);
        if step > 0 && self.last_saved != Some(step) {
            let secs = self.seconds();
            if let Some(outcome) = self.save_unless_diverged(secs)? {
                return Ok(outcome);
            }
        }
        tracing::info!(trial, step, "stopped on request after a final checkpoint");
        Ok(TrialOutcome::Stopped { step })
    }

    /// At an epoch's end: validate, record, checkpoint, and ask the pruner.
    pub(in crate::train) fn end_epoch(&mut self, lr: f64) -> Result<Flow, TrainError> {
        fault::point("train.eval");
        let rate = self.epoch_rate();
        let data = self.setup.data;
        let eval_start = Instant::now();
        let val = self.evaluate(&data.val);
        let eval_ms = eval_start.elapsed().as_secs_f64() * 1e3;
        let secs = self.seconds();
        let step = self.step;
        let record = EpochRecord {
            epoch: (step / self.geo.per_epoch) as u32,
            step,
            train_loss: self.loss_sum.double_value(&[]) / self.loss_count.max(1) as f64,
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
            return Ok(Flow::Diverged(self.diverge(
                u64::from(record.epoch),
                why,
                secs,
            )));
        }
        self.record_epoch(record, val, rate, eval_ms);
        self.save(secs)?;
        let trial = self.setup.trial;
        if step < self.geo.total && self.setup.prune.is_some_and(|p| p(&self.history)) {
            tracing::info!(
                trial,
                step,
                "trial pruned: early accuracy below earlier trials"
            );
            self.pruned = true;
            return Ok(Flow::Pruned);
        }
        Ok(Flow::Go)
    }

    /// Logs a finite epoch record, resets the running loss, and hands the
    /// record to the progress counters, the history and the epoch sink.
    /// `eval_ms`: how long the validation pass took.
    fn record_epoch(
        &mut self,
        record: EpochRecord,
        val: EvalResult,
        rate: Option<f64>,
        eval_ms: f64,
    ) {
        let trial = self.setup.trial;
        tracing::info!(
            trial,
            epoch = record.epoch,
            step = record.step,
            train_loss = format!("{:.4}", record.train_loss),
            val_accuracy = format!("{:.4}", record.val_accuracy),
            eval_ms = format!("{eval_ms:.1}"),
            "epoch finished"
        );
        self.epoch_scalars(&record, rate);
        self.loss_sum = Tensor::zeros([], (Kind::Float, self.setup.device));
        self.loss_count = 0;
        self.clocks.epoch_from = (self.step, Instant::now());
        let progress = self.setup.progress;
        progress.end_epoch(record.epoch, record.train_loss, record.val_accuracy);
        self.history.push(record);
        self.last_val = Some((self.step, val));
        if let (Some(cb), Some(last)) = (self.setup.on_epoch, self.history.last()) {
            cb(trial, last);
        }
    }

    /// Training samples per second since the epoch began in this run (none
    /// when it began in an earlier one: a resume's first partial epoch).
    fn epoch_rate(&self) -> Option<f64> {
        let (from, at) = self.clocks.epoch_from;
        let secs = at.elapsed().as_secs_f64();
        let steps = self.step.saturating_sub(from);
        let fresh = from % self.geo.per_epoch == 0;
        (fresh && steps > 0 && secs > 0.0).then(|| {
            let samples = if steps == self.geo.per_epoch {
                self.geo.n_train as u64
            } else {
                steps * self.geo.batch as u64
            };
            samples as f64 / secs
        })
    }

    /// An epoch's scalars to TensorBoard, at its last step, made durable.
    fn epoch_scalars(&mut self, record: &EpochRecord, rate: Option<f64>) {
        let (tb, step) = (&mut self.tb, record.step);
        tb.scalar("train/loss", step, record.train_loss);
        tb.scalar("train/learning_rate", step, record.lr);
        tb.scalar("val/accuracy", step, record.val_accuracy);
        tb.scalar("val/loss", step, record.val_loss);
        if let Some(rate) = rate {
            tb.scalar("train/samples_per_second", step, rate);
        }
        tb.sync();
    }

    /// Checkpoints mid-epoch when the step or time interval says so.
    pub(in crate::train) fn checkpoint_if_due(&mut self) -> Result<Flow, TrainError> {
        let every = &self.setup.every;
        let since = self.clocks.last_ckpt.elapsed();
        let due = every.steps.is_some_and(|n| self.step % n == 0)
            || every.interval.is_some_and(|d| since >= d);
        if !due {
            return Ok(Flow::Go);
        }
        let secs = self.seconds();
        Ok(match self.save_unless_diverged(secs)? {
            Some(outcome) => Flow::Diverged(outcome),
            None => Flow::Go,
        })
    }

    /// The mid-epoch divergence check, then a checkpoint. Saving reads every
    /// weight back anyway: one scalar more is free, and a diverged model is
    /// never written.
    fn save_unless_diverged(&mut self, secs: f64) -> Result<Option<TrialOutcome>, TrainError> {
        let sum = self.loss_sum.double_value(&[]);
        if self.loss_count > 0 && !sum.is_finite() {
            let epoch = self.step / self.geo.per_epoch + 1;
            return Ok(Some(self.diverge(
                epoch,
                format!("training loss {sum}"),
                secs,
            )));
        }
        if self.loss_count > 0 {
            // The mean loss since the epoch began: read for the check above anyway.
            let mean = sum / self.loss_count as f64;
            self.tb.scalar("train/loss", self.step, mean);
        }
        self.save(secs)?;
        Ok(None)
    }

    /// Writes a checkpoint of the current step.
    fn save(&mut self, secs: f64) -> Result<(), TrainError> {
        self.tb.sync();
        let step = self.step;
        let mut tensors: Vec<(String, Tensor)> = self
            .net
            .named
            .iter()
            .map(|(n, t)| (format!("model/{n}"), t.shallow_clone()))
            .collect();
        tensors.extend(self.net.opt.state_tensors());
        let score = self
            .history
            .last()
            .filter(|h| h.step == step)
            .map(|h| h.val_accuracy);
        let meta = self
            .ident
            .checkpoint_meta(step, self.geo.per_epoch, &self.history, secs);
        let started = Instant::now();
        let path = self
            .setup
            .checkpoints
            .save(step, score, &meta, &tensors)
            .map_err(TrainError::Store)?;
        self.setup.progress.checkpoint_saved();
        let took = started.elapsed();
        self.clocks.saving += took;
        let trial = self.setup.trial;
        tracing::debug!(trial, step, path = %path.display(), ms = took.as_millis() as u64, "checkpoint saved");
        self.last_saved = Some(step);
        self.clocks.last_ckpt = Instant::now();
        Ok(())
    }

    /// The network's current weights evaluated on `split` (`train::eval`).
    fn evaluate(&self, split: &Split) -> EvalResult {
        let data = self.setup.data;
        let net = Network {
            module: &self.net.net,
            arch: &self.setup.spec.arch,
            input: input_shape(data),
            named: &self.net.named,
        };
        evaluate_network(&net, split, data.num_classes, self.setup.device)
    }

    /// After the last step (or pruning): the final validation and the
    /// report. The test split is not touched here: it is measured once, on
    /// the model about to be promoted (`pipeline::test_split`).
    pub(in crate::train) fn finish(mut self) -> Result<TrialOutcome, TrainError> {
        let this_run = self.clocks.run_start.elapsed().as_secs_f64();
        let train_seconds = self.earlier_seconds + this_run;
        let saving = self.clocks.saving.as_secs_f64();
        tracing::info!(
            trial = self.setup.trial,
            checkpoint_seconds = format!("{saving:.3}"),
            overhead_percent = format!("{:.2}", 100.0 * saving / this_run.max(1e-9)),
            "checkpointing cost in this run"
        );
        fault::point("train.eval");
        let data = self.setup.data;
        let val = match self.last_val.take() {
            Some((at, val)) if at == self.step => val,
            _ => self.evaluate(&data.val),
        };
        if !(val.loss.is_finite() && val.accuracy.is_finite()) {
            let why = format!("final evaluation: validation loss {}", val.loss);
            let epoch = self.step.div_ceil(self.geo.per_epoch);
            return Ok(self.diverge(epoch, why, train_seconds));
        }
        self.tb.sync();
        Ok(TrialOutcome::Finished(Box::new(
            self.report(val, train_seconds),
        )))
    }

    fn report(self, val: EvalResult, train_seconds: f64) -> TrialReport {
        // Contiguous copies: exporters write standard (NCHW) layout.
        let weights = self
            .net
            .named
            .iter()
            .map(|(n, t)| (n.clone(), t.detach().contiguous()))
            .collect();
        TrialReport {
            val,
            history: self.history,
            steps: self.step,
            parameters: model::parameter_count(&self.net.vs),
            train_seconds,
            weights,
            pruned: self.pruned,
            resumed_from: self.resumed_from,
        }
    }
}
