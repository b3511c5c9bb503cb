//! The end of a trial: promote it if it beats the champion, then journal it
//! as finished (pruned trials are journaled without promotion). Promotion
//! comes first, so a crash in between finds the trial already champion.
//! The verdict is made on validation alone; only a trial it promotes is
//! measured on the test split (`test_split.rs`), once, before it is written.

use anyhow::Context as _;
use tch::Device;

use super::chain::Chain;
use super::context::Context;
use super::promote::{self, ModelCard, Verdict, MODEL_CARD_FORMAT};
use super::test_split;
use crate::data::Dataset;
use crate::search::history::{OpenTrial, StudyView};
use crate::search::journal::Record;
use crate::train::{self, EpochRecord, TrialReport};

/// A trial that ran to its end, and what finishing it reads.
pub(super) struct Candidate<'a> {
    pub t: &'a OpenTrial,
    pub report: &'a TrialReport,
    pub data: &'a Dataset,
    /// Where the test split is measured (the training device).
    pub device: Device,
    /// The study before this trial.
    pub v: &'a StudyView,
}

fn study_best(v: &StudyView, this: f64) -> f64 {
    v.best().map_or(this, |b| b.1.max(this))
}

/// Journals a pruned trial as finished (never promoted: it trailed a peer).
pub(super) fn finish_pruned(
    chain: &mut Chain,
    trial: u32,
    history: Vec<EpochRecord>,
    v: &StudyView,
) -> anyhow::Result<()> {
    let last = history.last();
    let val = last.map_or(0.0, |h| h.val_accuracy);
    chain.record(Record::TrialFinished {
        trial,
        val_accuracy: val,
        val_loss: last.map_or(0.0, |h| h.val_loss),
        train_seconds: last.map_or(0.0, |h| h.train_seconds),
        pruned: true,
        promoted: false,
        study_best: study_best(v, val),
        resumed_from: 0,
        history,
    })?;
    Ok(())
}

/// Journals a diverged trial (never promoted: its model is NaN or worse).
pub(super) fn finish_diverged(
    chain: &mut Chain,
    trial: u32,
    d: train::Divergence,
    v: &StudyView,
) -> anyhow::Result<()> {
    chain.record(Record::TrialDiverged {
        trial,
        epoch: d.epoch,
        step: d.step,
        reason: d.reason,
        history: d.history,
        train_seconds: if d.train_seconds.is_finite() {
            d.train_seconds
        } else {
            0.0
        },
        study_best: v.best().map_or(0.0, |b| b.1),
    })?;
    Ok(())
}

/// Promotes the trial if it wins, then journals it as finished.
pub(super) fn finish_trial(
    ctx: &Context<'_>,
    chain: &mut Chain,
    c: &Candidate<'_>,
) -> anyhow::Result<()> {
    let card = candidate_card(ctx, chain, c);
    let verdict = verdict_for(ctx, chain, &card, c.data);
    let promoted = carry_out(ctx, chain, verdict, card, c)?;
    let report = c.report;
    chain.record(Record::TrialFinished {
        trial: c.t.trial,
        val_accuracy: report.val.accuracy,
        val_loss: report.val.loss,
        history: report.history.clone(),
        pruned: false,
        promoted,
        study_best: study_best(c.v, report.val.accuracy),
        train_seconds: report.train_seconds,
        resumed_from: report.resumed_from,
    })?;
    Ok(())
}

/// The model card a finished trial would be promoted with, before the test
/// split is measured (`test_size` 0: not measured; see `test_split`).
fn candidate_card(ctx: &Context<'_>, chain: &Chain, c: &Candidate<'_>) -> ModelCard {
    let (cfg, t, report, data) = (ctx.cfg, c.t, c.report, c.data);
    let shape = train::input_shape(data);
    ModelCard {
        format: MODEL_CARD_FORMAT,
        trial: t.trial,
        preset: t.spec.preset.clone(),
        arch: t.spec.arch.clone(),
        recipe: t.spec.recipe.clone(),
        val_accuracy: report.val.accuracy,
        test_accuracy: 0.0,
        val_loss: report.val.loss,
        test_loss: 0.0,
        per_class_test_accuracy: Vec::new(),
        test_confusion: Vec::new(),
        parameters: report.parameters,
        epochs_trained: report.history.len() as u32,
        train_seconds: report.train_seconds,
        seed: cfg.seed,
        data_fingerprint: data.fingerprint.clone(),
        input_shape: [shape.channels, shape.height, shape.width],
        classes: data.num_classes,
        normalisation: data.normalisation,
        created_at: ModelCard::now(),
        study: chain.study.clone(),
        val_size: data.val.len(),
        commit: crate::watch::git::commit_of(&cfg.data_dir),
        files: Vec::new(),
        version: 0,
        class_names: data.class_names.clone(),
        intervals: Default::default(),
    }
}

/// Whether `card` replaces the champion in `best/`: measured against the
/// champion's numbers on this data where it can be.
fn verdict_for(ctx: &Context<'_>, chain: &mut Chain, card: &ModelCard, data: &Dataset) -> Verdict {
    let margin = ctx.cfg.promote_margin;
    let champion = promote::load_card(&ctx.cfg.state_dir).unwrap_or_else(|e| {
        // Replaced like a champion from other data: it moves to best.previous/, kept.
        tracing::warn!("{e}; the next winner replaces it");
        None
    });
    let Some(champion) = champion else {
        return promote::verdict(None, card, margin);
    };
    let (champion, remeasured) = on_this_data(ctx, chain, champion, card, data);
    if !remeasured || card.diverged() {
        return promote::verdict(Some(&champion), card, margin);
    }
    // Measured on this data: a tie goes to the model trained on it.
    let (new, old) = (card.val_accuracy, champion.val_accuracy);
    if new >= old + margin {
        Verdict::Promote(format!(
            "validation {new:.4} on the new data matches or beats the champion's {old:.4} there (margin {margin})"
        ))
    } else {
        Verdict::Keep(format!(
            "validation {new:.4} on the new data trails the champion's {old:.4} there (margin {margin})"
        ))
    }
}

/// Acts on the verdict (measures on the test split and promotes, or
/// rewrites a champion's missing report); true when the trial is the
/// champion afterwards.
fn carry_out(
    ctx: &Context<'_>,
    chain: &Chain,
    verdict: Verdict,
    card: ModelCard,
    c: &Candidate<'_>,
) -> anyhow::Result<bool> {
    match verdict {
        Verdict::AlreadyChampion => {
            rewrite_missing_report(ctx, chain, c);
            Ok(true)
        }
        Verdict::Promote(why) => promote_measured(ctx, chain, card, c, &why),
        Verdict::Keep(why) => {
            tracing::info!(trial = c.t.trial, "champion kept: {why}");
            Ok(false)
        }
    }
}

/// Measures the winner on the test split, then promotes it with its report;
/// true when promoted (a model whose test evaluation is not finite is not).
fn promote_measured(
    ctx: &Context<'_>,
    chain: &Chain,
    mut card: ModelCard,
    c: &Candidate<'_>,
    why: &str,
) -> anyhow::Result<bool> {
    let (cfg, t, report) = (ctx.cfg, c.t, c.report);
    let test = test_split::measure(t.trial, &t.spec.arch, &report.weights, c.data, c.device)?;
    if !test.is_finite() {
        tracing::warn!(
            trial = t.trial,
            "champion kept: the winner's test loss is {} (not finite), it is not promoted",
            test.eval.loss
        );
        return Ok(false);
    }
    test_split::record(&mut card, &test);
    if cfg.tensorboard {
        let dir = crate::state_dir::tensorboard(&cfg.state_dir, &chain.study, t.trial);
        test_split::to_tensorboard(&dir, t.trial, report.steps, &test);
    }
    let html = render_report(ctx, chain, &card, c);
    promote::promote(
        &cfg.state_dir,
        &report.weights,
        &card,
        &[(REPORT, html.as_bytes())],
        cfg.keep_versions,
    )
    .context("promoting the model")?;
    tracing::info!(
        trial = t.trial,
        test_accuracy = card.test_accuracy,
        "promoted to best/ with its report: {why}"
    );
    Ok(true)
}

/// A champion promoted by builds that wrote the report after the renames,
/// and crashed in between: its report again, from its own card (the test
/// split is not measured again).
fn rewrite_missing_report(ctx: &Context<'_>, chain: &Chain, c: &Candidate<'_>) {
    let path = crate::state_dir::best(&ctx.cfg.state_dir).join(REPORT);
    if path.exists() {
        return;
    }
    let card = match promote::load_card(&ctx.cfg.state_dir) {
        Ok(Some(card)) => card,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("report not written: {e}");
            return;
        }
    };
    let html = render_report(ctx, chain, &card, c);
    match crate::store::write_bytes_atomic(&path, html.as_bytes()) {
        Ok(()) => tracing::info!("report of the champion written again"),
        Err(e) => tracing::warn!("report not written: {e}"),
    }
}

/// The champion as the verdict should see it, and whether it was measured
/// anew: a champion of other data that fits this data is measured on its
/// validation split, so that only a model at least as good there replaces
/// it; one that does not fit keeps its own numbers (and the first finished
/// trial of the new data replaces it).
fn on_this_data(
    ctx: &Context<'_>,
    chain: &mut Chain,
    mut champion: ModelCard,
    candidate: &ModelCard,
    data: &Dataset,
) -> (ModelCard, bool) {
    let same_split = champion.data_fingerprint == candidate.data_fingerprint
        && champion.seed == candidate.seed
        && champion.val_size == candidate.val_size;
    let this_study = !champion.study.is_empty() && champion.study == candidate.study;
    if same_split || this_study || champion.diverged() {
        return (champion, false);
    }
    let cache = &mut chain.remeasured;
    let state = &ctx.cfg.state_dir;
    if let Some(acc) = super::champion::val_accuracy_on(state, &champion, data, ctx.cfg.seed, cache)
    {
        champion.val_accuracy = acc;
        champion.data_fingerprint = candidate.data_fingerprint.clone();
        champion.seed = candidate.seed;
        champion.val_size = candidate.val_size;
        return (champion, true);
    }
    (champion, false)
}

/// The champion's report, staged and promoted with its model.
const REPORT: &str = "report.html";

/// `best/report.html` for a new champion: its curves, and every earlier
/// trial of the study as a table row with its own curves, epochs, time and
/// parameters (from its journal record and its spec).
fn render_report(ctx: &Context<'_>, chain: &Chain, card: &ModelCard, c: &Candidate<'_>) -> String {
    let input = crate::model::InputShape {
        channels: card.input_shape[0],
        height: card.input_shape[1],
        width: card.input_shape[2],
        classes: card.classes,
    };
    let mut trials: Vec<crate::report::TrialSummary> =
        c.v.finished
            .iter()
            .map(|(trial, f)| {
                let journaled = chain.finished_records().find_map(|r| match r {
                    Record::TrialFinished {
                        trial: n,
                        history,
                        train_seconds,
                        ..
                    } if n == trial => Some((history, *train_seconds)),
                    _ => None,
                });
                let (history, train_seconds) = match journaled {
                    Some((history, secs)) => (history.clone(), secs),
                    None => (Vec::new(), 0.0),
                };
                crate::report::TrialSummary {
                    trial: *trial,
                    spec: f.spec.clone(),
                    state: match (f.diverged, f.pruned) {
                        (true, _) => "diverged",
                        (false, true) => "pruned",
                        (false, false) => "finished",
                    }
                    .into(),
                    val_accuracy: (!f.diverged).then_some(f.val_accuracy),
                    parameters: f
                        .spec
                        .arch
                        .footprint(input)
                        .ok()
                        .map(|fp| fp.parameters as i64),
                    train_seconds,
                    history,
                }
            })
            .collect();
    let (t, report) = (c.t, c.report);
    trials.push(crate::report::TrialSummary {
        trial: t.trial,
        spec: t.spec.clone(),
        state: "finished".into(),
        val_accuracy: Some(report.val.accuracy),
        parameters: Some(report.parameters),
        train_seconds: report.train_seconds,
        history: report.history.clone(),
    });
    let inputs = crate::report::ReportInputs {
        card,
        trials: &trials,
        target_accuracy: Some(ctx.cfg.target_accuracy),
        study: Some(card.study.as_str()),
        commit: card.commit.as_deref(),
        class_names: (!card.class_names.is_empty()).then_some(card.class_names.as_slice()),
    };
    crate::report::render(&inputs)
}
