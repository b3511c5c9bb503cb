//! One study, crash-proof: replay the journal, take over where it stopped
//! (finished trials are not re-run; the interrupted one resumes from its
//! checkpoints) or start a new one when the settings or data changed, then
//! hand over to the trial loop (`trials.rs`), which runs the trials the
//! strategy picks until the target is reached or the budget is spent.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};

use super::chain::Chain;
pub use super::context::{Context, SupersedeSlot, Supersession};
use super::events::{events_for, EventLog};
use super::promote;
use super::trials::{drive, end_of};
use super::{initial_spec, load_data, select_device, StudyEnd};
use crate::config::Config;
use crate::search::history::view;
use crate::search::journal::{Journal, Record};
use crate::search::strategy::{Plan, PrunePolicy};
use crate::train;

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
