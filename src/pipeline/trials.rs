//! The trial loop of a study: pick the next trial (or end the study),
//! train it with its pruning hook, finish it (`finish.rs`), sweep its
//! checkpoints; and the study's two ends, finished or stopped.
//!
//! Order of effects for a finished trial: promote (atomic) -> journal
//! `trial_finished` -> emit events. A crash after promoting re-finds the trial
//! as the champion and does not promote twice; a crash after journaling
//! re-emits only the missing events (ids are deterministic).

use std::cell::RefCell;
use std::path::Path;

use super::chain::Chain;
use super::context::{Context, Supersession};
use super::finish::{finish_diverged, finish_pruned, finish_trial, Candidate};
use super::StudyEnd;
use crate::data::Dataset;
use crate::search::history::{OpenTrial, StudyView};
use crate::search::journal::{Outcome, Record};
use crate::search::strategy::{Finished, Plan};
use crate::train::{self, EpochRecord, TrialOutcome};

/// The study's end as `trainerd train` reports it.
pub(super) fn end_of(outcome: Outcome) -> StudyEnd {
    match outcome {
        Outcome::TargetReached => StudyEnd::TargetReached,
        Outcome::BudgetExhausted => StudyEnd::BudgetExhausted,
    }
}

/// Journals the end of the study and sweeps its trial directories.
fn end_study(ctx: &Context<'_>, chain: &mut Chain, reason: String) -> anyhow::Result<StudyEnd> {
    let v = chain.view();
    let best = v.best();
    let best_val = best.map_or(0.0, |b| b.1);
    let outcome = if chain.goal.reached(best_val) {
        Outcome::TargetReached
    } else {
        let shown = crate::confidence::show(best_val, chain.goal.val_n);
        tracing::warn!(
            study = %chain.study, target = chain.goal.target,
            "budget spent without certifying the target: the best's validation accuracy {shown} \
             has a 95% lower bound below {}; the best model is kept",
            chain.goal.target
        );
        Outcome::BudgetExhausted
    };
    chain.record(Record::StudyFinished {
        outcome,
        best_trial: best.map(|b| b.0),
        best_val_accuracy: best_val,
        reason,
    })?;
    remove_dir(&crate::state_dir::study(&ctx.cfg.state_dir, &chain.study));
    Ok(end_of(outcome))
}

/// Journals a stop: superseded (the study is over, its trial directories
/// swept) when the control plane said so, else stopped on request.
fn stopped(
    ctx: &Context<'_>,
    chain: &mut Chain,
    trial: Option<u32>,
    step: u64,
) -> anyhow::Result<StudyEnd> {
    let why = ctx.supersede.lock().ok().and_then(|s| s.clone());
    if let Some(Supersession { reason, commit }) = why {
        tracing::info!(study = %chain.study, %reason, ?commit, "study superseded by new inputs");
        chain.record(Record::Superseded {
            trial,
            step,
            reason,
            commit,
        })?;
        remove_dir(&crate::state_dir::study(&ctx.cfg.state_dir, &chain.study));
        return Ok(StudyEnd::Stopped);
    }
    let seq = chain.view().stopped;
    chain.record(Record::Stopped { seq, trial, step })?;
    Ok(StudyEnd::Stopped)
}

/// Picks, journals and returns the next trial, or ends the study.
fn next_trial(
    ctx: &Context<'_>,
    plan: &Plan,
    chain: &mut Chain,
) -> anyhow::Result<Result<OpenTrial, StudyEnd>> {
    let v = chain.view();
    if let Some(open) = v.open {
        return Ok(Ok(open));
    }
    if ctx.stop.is_raised() {
        return stopped(ctx, chain, None, 0).map(Err);
    }
    if let Some(limit) = ctx
        .cfg
        .max_time
        .filter(|l| v.train_seconds >= l.as_secs_f64())
    {
        return end_study(ctx, chain, format!("max_time {limit:?} spent")).map(Err);
    }
    let done = v.done();
    let Some(p) = plan.next(&done) else {
        let why = match v.best() {
            Some((trial, acc)) if plan.goal().reached(acc) => format!(
                "trial {trial} reached {}: lower bound >= {}",
                crate::confidence::show(acc, plan.val_n),
                plan.target
            ),
            Some((_, acc)) => format!(
                "max_trials {} run; the best {} does not certify {}",
                plan.max_trials,
                crate::confidence::show(acc, plan.val_n),
                plan.target
            ),
            _ => format!("max_trials {} run", plan.max_trials),
        };
        return end_study(ctx, chain, why).map(Err);
    };
    let trial = v.trials_started;
    chain.record(Record::TrialStarted {
        trial,
        architecture_changed: v.last_spec.is_some_and(|prev| prev.arch != p.spec.arch),
        spec: p.spec.clone(),
        mv: p.mv,
        rung: p.rung,
        reason: p.reason,
    })?;
    Ok(Ok(OpenTrial {
        trial,
        spec: p.spec,
        pruned: None,
    }))
}

/// The trial loop, until the study ends or stops.
pub(super) fn drive(
    ctx: &Context<'_>,
    plan: &Plan,
    data: &Dataset,
    device: tch::Device,
    chain: RefCell<Chain>,
) -> anyhow::Result<StudyEnd> {
    let cfg = ctx.cfg;
    loop {
        let current = match next_trial(ctx, plan, &mut chain.borrow_mut())? {
            Ok(t) => t,
            Err(end) => return Ok(end),
        };
        let (study, v) = {
            let c = chain.borrow();
            (c.study.clone(), c.view())
        };
        let dir = crate::state_dir::trial(&cfg.state_dir, &study, current.trial);
        if let Some(history) = current.pruned.clone() {
            // Pruned just before a crash: finish it from the journal.
            finish_pruned(&mut chain.borrow_mut(), current.trial, history, &v)?;
            remove_dir(&dir);
            continue;
        }
        let done = v.done();
        let prune =
            |history: &[EpochRecord]| prune_now(ctx, plan, &current, &v, &done, &chain, history);
        let mut ckpts = super::open_checkpoints(&cfg.state_dir, &dir, cfg.keep_checkpoints)?;
        let warm = match current.trial {
            0 => {
                let study = chain.borrow().study.clone();
                super::champion::warm_start_weights(&cfg.state_dir, &study, &current.spec, data)
            }
            _ => None,
        };
        let tb_dir = crate::state_dir::tensorboard(&cfg.state_dir, &study, current.trial);
        ctx.live.begin(ctx.progress);
        let outcome = train::run_trial(train::TrialSetup {
            trial: current.trial,
            spec: &current.spec,
            seed: cfg.seed,
            data,
            device,
            checkpoints: &mut ckpts,
            every: cfg.checkpoint_every,
            stop: ctx.stop,
            progress: ctx.progress,
            prune: Some(&prune),
            on_epoch: None,
            warm_start: warm.as_deref(),
            tensorboard: cfg.tensorboard.then_some(tb_dir.as_path()),
        });
        ctx.live.end();
        let report = match outcome? {
            TrialOutcome::Stopped { step } => {
                return stopped(ctx, &mut chain.borrow_mut(), Some(current.trial), step)
            }
            TrialOutcome::Diverged(d) => {
                finish_diverged(&mut chain.borrow_mut(), current.trial, *d, &v)?;
                remove_dir(&dir);
                continue;
            }
            TrialOutcome::Finished(r) => r,
        };
        if report.pruned {
            finish_pruned(
                &mut chain.borrow_mut(),
                current.trial,
                report.history.clone(),
                &v,
            )?;
        } else {
            let candidate = Candidate {
                t: &current,
                report: &report,
                data,
                device,
                v: &v,
            };
            finish_trial(ctx, &mut chain.borrow_mut(), &candidate)?;
        }
        remove_dir(&dir);
    }
}

/// The pruning hook, called after each epoch: whether to stop the trial now
/// (its time budget is spent, or its curve trails earlier trials'), journaled
/// before the answer is given. A journal that cannot take it trains on.
fn prune_now(
    ctx: &Context<'_>,
    plan: &Plan,
    current: &OpenTrial,
    v: &StudyView,
    done: &[Finished],
    chain: &RefCell<Chain>,
    history: &[EpochRecord],
) -> bool {
    let curve: Vec<f64> = history.iter().map(|h| h.val_accuracy).collect();
    let secs = v.train_seconds + history.last().map_or(0.0, |h| h.train_seconds);
    let reason = if ctx.cfg.max_time.is_some_and(|l| secs >= l.as_secs_f64()) {
        "max_time spent".to_string()
    } else if plan.should_prune(&current.spec, &curve, done) {
        format!(
            "validation accuracy {:.4} at epoch {} trails earlier trials",
            curve.last().copied().unwrap_or(0.0),
            curve.len()
        )
    } else {
        return false;
    };
    let rec = Record::TrialPruned {
        trial: current.trial,
        history: history.to_vec(),
        reason,
    };
    match chain.borrow_mut().record(rec) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("cannot journal the pruning; training on: {e:#}");
            false
        }
    }
}

/// Checkpoints of finished trials are no longer needed (a winner's model is
/// in `best/`); failing to remove them only costs disk.
fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), "cannot remove finished checkpoints: {e}");
        }
    }
}
