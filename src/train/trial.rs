//! One trial: build the model, resume from its newest good checkpoint
//! (`resume.rs`), run the step loop (checkpointing on schedule, stopping on
//! request), validate. What it takes is in `setup.rs`, what it gives back in
//! `outcome.rs`; its state and the parts of the loop are the `Trainer`
//! (`trainer/`).
//!
//! Exact resume: every input of a step is a function of saved state. The
//! weights, batch-norm buffers and optimizer slots are in the checkpoint; the
//! batch order, dropout and augmentation draw from streams keyed by
//! (seed, trial, epoch/step), and the learning rate is a function of the step.

use super::outcome::TrialOutcome;
use super::setup::TrialSetup;
use super::trainer::{Flow, Start, Trainer};
use super::TrainError;

/// Runs (or resumes) one trial to its end or until the stop flag is raised.
pub fn run_trial(setup: TrialSetup<'_>) -> Result<TrialOutcome, TrainError> {
    let mut t = match Trainer::start(setup)? {
        Start::Ready(t) => t,
        Start::Done(outcome) => return Ok(outcome),
    };
    let mut cpu = super::cpu_share::CpuShare::for_this_thread();
    while t.step < t.total() {
        if t.stop_requested() {
            return t.stop_on_request();
        }
        let lr = t.train_step();
        cpu.tick();
        let flow = if t.at_epoch_end() {
            t.end_epoch(lr)?
        } else {
            t.checkpoint_if_due()?
        };
        match flow {
            Flow::Go => t.log_rate(),
            Flow::Pruned => break,
            Flow::Diverged(outcome) => return Ok(outcome),
        }
    }
    t.finish()
}
