//! One study, crash-proof: replay the journal, take over where it stopped
//! (finished trials are not re-run; the interrupted one resumes from its
//! checkpoints), then run the trials the strategy picks, promote winners and
//! emit events, until the target is reached or the budget is spent.
//!
//! Order of effects for a finished trial: promote (atomic) -> journal
//! `trial_finished` -> emit events. A crash after promoting re-finds the trial
//! as the champion and does not promote twice; a crash after journaling
//! re-emits only the missing events (ids are deterministic).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use super::events::{events_for, Event, EventLog};
use super::finish::{finish_diverged, finish_pruned, finish_trial};
use super::promote;
use super::{initial_spec, load_data, select_device, StudyEnd};
use crate::config::Config;
use crate::data::Dataset;
use crate::search::history::{view, OpenTrial, StudyView};
use crate::search::journal::{Entry, Journal, Outcome, Record};
use crate::search::strategy::{Finished, Plan, PrunePolicy};
use crate::telemetry::heartbeat::Liveness;
use crate::train::{self, EpochRecord, Progress, StopFlag, TrialOutcome};

/// What a study needs from the process.
pub struct Context<'a> {
    pub cfg: &'a Config,
    pub stop: &'a StopFlag,
    pub progress: &'a Progress,
    pub live: &'a Liveness,
    /// Where new events go besides the log (the webhook sink).
    pub notify: Option<UnboundedSender<Event>>,
    /// Start a new study even when the journal's latest one has the same settings.
    pub force_new: bool,
    /// Set by the control plane before it raises `stop` when new inputs
    /// supersede this study: the stop is journaled as `Superseded`.
    pub supersede: &'a SupersedeSlot,
}

/// Why the running study gives way to a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supersession {
    pub reason: String,
    /// The workspace's commit the new study trains on, if a checkout.
    pub commit: Option<String>,
}

/// Shared between the control task (writes) and the study (reads at its stop).
pub type SupersedeSlot = Arc<Mutex<Option<Supersession>>>;

/// The journal and the event log, written together.
pub(super) struct Chain {
    journal: Journal,
    events: EventLog,
    pub(super) study: String,
    goal: crate::confidence::Goal,
    /// The champion measured on this study's data (see `champion`).
    pub(super) remeasured: Option<super::champion::Remeasured>,
}

impl Chain {
    /// This study's `trial_finished` records, by trial (the report's rows).
    pub(super) fn finished_records(&self) -> impl Iterator<Item = &Record> {
        self.journal
            .study(&self.study)
            .map(|e| &e.record)
            .filter(|r| matches!(r, Record::TrialFinished { .. }))
    }

    /// Journals `record` (fsynced), then emits the events it implies.
    pub(super) fn record(&mut self, record: Record) -> anyhow::Result<Entry> {
        let entry = self.journal.append(&self.study, record)?;
        crate::store::fault::point("events.emit");
        for ev in events_for(&entry, self.goal) {
            self.events.emit(ev)?;
        }
        Ok(entry)
    }

    fn view(&self) -> StudyView {
        view(self.journal.study(&self.study))
    }
}

/// The settings and data that define a study, hashed: same key, same study.
/// `val_size` is the split's real size (the default depends on the data).
fn study_key(
    cfg: &Config,
    plan: &Plan,
    fingerprint: &str,
    val_size: usize,
) -> (String, serde_json::Value) {
    let mut settings = serde_json::json!({
        "start": plan.start, "ladder": plan.ladder, "target": plan.target,
        "min_accuracy": plan.min_accuracy, "max_trials": plan.max_trials,
        "max_time_s": cfg.max_time.map(|d| d.as_secs_f64()), "seed": cfg.seed,
        "val_size": val_size, "promote_margin": cfg.promote_margin,
        "prune_margin": cfg.prune_margin, "data_fingerprint": fingerprint,
    });
    // Only when set, so that the keys of studies without it stay what they were.
    if let (Some(k), Some(map)) = (cfg.classes, settings.as_object_mut()) {
        map.insert("classes".into(), k.into());
    }
    let key = hex::encode(Sha256::digest(settings.to_string().as_bytes()));
    (key, settings)
}

pub fn plan(cfg: &Config) -> anyhow::Result<Plan> {
    Ok(Plan {
        start: initial_spec(cfg)?,
        ladder: cfg.ladder.clone(),
        target: cfg.target_accuracy,
        val_n: 0,
        min_accuracy: cfg.min_accuracy,
        max_trials: cfg.max_trials,
        seed: cfg.seed,
        prune: (cfg.prune_margin < 1.0).then_some(PrunePolicy {
            margin: cfg.prune_margin,
            eta: 3,
        }),
        input: None,
    })
}

/// Directory of one trial's checkpoints.
pub fn trial_dir(state_dir: &Path, study: &str, trial: u32) -> PathBuf {
    crate::state_dir::trial(state_dir, study, trial)
}

/// Emits the events of every journal record that the event log lacks.
fn replay_events(journal: &Journal, events: &mut EventLog) -> anyhow::Result<()> {
    let mut goal = crate::confidence::Goal::from(1.0);
    let mut study = String::new();
    for e in journal.entries() {
        if let Record::StudyStarted { target, config, .. } = &e.record {
            let val_n = config.get("val_size").and_then(|v| v.as_u64()).unwrap_or(0);
            goal = crate::confidence::Goal {
                target: *target,
                val_n: val_n as usize,
            };
            study = e.study.clone();
        }
        if e.study == study {
            for ev in events_for(e, goal) {
                events.emit(ev)?;
            }
        }
    }
    Ok(())
}

fn end_of(outcome: Outcome) -> StudyEnd {
    match outcome {
        Outcome::TargetReached => StudyEnd::TargetReached,
        Outcome::BudgetExhausted => StudyEnd::BudgetExhausted,
    }
}

/// Runs (or resumes, or reports) the study the config defines.
pub fn run_study(ctx: &Context<'_>) -> anyhow::Result<StudyEnd> {
    let cfg = ctx.cfg;
    let device = select_device(cfg.device)?;
    let data = load_data(cfg, device, ctx.stop)?;
    tracing::info!(
        train = data.train.labels.size()[0], val = data.val.labels.size()[0],
        test = data.test.labels.size()[0], fingerprint = %data.fingerprint.get(..12).unwrap_or(""),
        ?device, "data loaded"
    );
    promote::recover(&cfg.state_dir).context("recovering best/")?;
    // Also what a crash before retention, or a lower --keep-versions, leaves.
    super::versions::retain(&cfg.state_dir, cfg.keep_versions).context("retention of versions/")?;
    let mut plan = plan(cfg)?;
    let input = train::input_shape(&data);
    super::check_specs(&plan.start, &plan.ladder, input)?;
    plan.input = Some(input);
    plan.val_n = data.val.len();
    let journal = Journal::open(&cfg.state_dir)?;
    let mut events = EventLog::open(&cfg.state_dir, ctx.notify.clone())?;
    replay_events(&journal, &mut events)?;
    let (key, settings) = study_key(cfg, &plan, &data.fingerprint, data.val.len());
    let (latest, studies) = latest_study(&journal);
    let mut chain = Chain {
        study: String::new(),
        goal: plan.goal(),
        journal,
        events,
        remeasured: None,
    };
    match latest {
        Some((study, k)) if k == key && !ctx.force_new => {
            chain.study = study;
            let v = chain.view();
            if let Some(outcome) = v.outcome {
                tracing::info!(study = %chain.study, ?outcome, "this study already finished; nothing to train");
                return Ok(end_of(outcome));
            }
            chain.record(Record::Resumed {
                seq: v.resumed,
                trial: v.open.map(|o| o.trial),
            })?;
        }
        previous => {
            if let Some((old, _)) = previous {
                tracing::info!(previous = %old, "starting a new study (settings, data or request changed)");
            }
            let id = hex::encode(Sha256::digest(format!("{key}:{studies}").as_bytes()));
            chain.study = id[..12].to_string();
            chain.record(Record::StudyStarted {
                key,
                ordinal: studies,
                data_fingerprint: data.fingerprint.clone(),
                target: plan.target,
                config: settings,
            })?;
        }
    }
    drive(ctx, &plan, &data, device, RefCell::new(chain))
}

/// The newest study the journal started, as (id, key), unless it was
/// superseded (a superseded study is never taken up again, even with the
/// same settings: a commit that changed neither data nor config); and how
/// many studies the journal has started in all.
fn latest_study(journal: &Journal) -> (Option<(String, String)>, u32) {
    let entries = journal.entries();
    let latest = entries.iter().rev().find_map(|e| match &e.record {
        Record::StudyStarted { key, .. } => Some((e.study.clone(), key.clone())),
        _ => None,
    });
    let studies = entries
        .iter()
        .filter(|e| matches!(e.record, Record::StudyStarted { .. }))
        .count() as u32;
    let latest = latest.filter(|(study, _)| !view(journal.study(study)).superseded);
    (latest, studies)
}

/// Journals the end of the study and sweeps its trial directories.
fn finish(ctx: &Context<'_>, chain: &mut Chain, reason: String) -> anyhow::Result<StudyEnd> {
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
        return finish(ctx, chain, format!("max_time {limit:?} spent")).map(Err);
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
        return finish(ctx, chain, why).map(Err);
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

/// The trial loop.
fn drive(
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
        let dir = trial_dir(&cfg.state_dir, &study, current.trial);
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
            finish_trial(ctx, &mut chain.borrow_mut(), &current, &report, data, &v)?;
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
