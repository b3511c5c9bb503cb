//! The end of a trial: promote it if it beats the champion, then journal it
//! as finished (pruned trials are journaled without promotion). Promotion
//! comes first, so a crash in between finds the trial already champion.

use anyhow::Context as _;

use super::promote::{self, ModelCard, Verdict, MODEL_CARD_FORMAT};
use super::study::{Chain, Context};
use crate::data::Dataset;
use crate::search::history::{OpenTrial, StudyView};
use crate::search::journal::Record;
use crate::train::{self, EpochRecord, TrialReport};

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
        test_accuracy: None,
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

/// Promotes the trial if it wins, then journals it as finished.
pub(super) fn finish_trial(
    ctx: &Context<'_>,
    chain: &mut Chain,
    t: &OpenTrial,
    report: &TrialReport,
    data: &Dataset,
    v: &StudyView,
) -> anyhow::Result<()> {
    let cfg = ctx.cfg;
    let shape = train::input_shape(data);
    let card = ModelCard {
        format: MODEL_CARD_FORMAT,
        trial: t.trial,
        preset: t.spec.preset.clone(),
        arch: t.spec.arch.clone(),
        recipe: t.spec.recipe.clone(),
        val_accuracy: report.val.accuracy,
        test_accuracy: report.test.accuracy,
        val_loss: report.val.loss,
        test_loss: report.test.loss,
        per_class_test_accuracy: report.test.per_class_accuracy.clone(),
        test_confusion: report.test.confusion.clone(),
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
        val_size: cfg.val_size,
        commit: crate::watch::git::commit_of(&cfg.data_dir),
        files: Vec::new(),
    };
    let champion = promote::read_card(&cfg.state_dir);
    let promoted = match promote::verdict(champion.as_ref(), &card, cfg.promote_margin) {
        Verdict::AlreadyChampion => true,
        Verdict::Promote(why) => {
            promote::promote(&cfg.state_dir, &report.weights, &card)
                .context("promoting the model")?;
            tracing::info!(
                trial = t.trial,
                test_accuracy = card.test_accuracy,
                "promoted to best/: {why}"
            );
            write_report(ctx, &card, t, report, v);
            true
        }
        Verdict::Keep(why) => {
            tracing::info!(trial = t.trial, "champion kept: {why}");
            false
        }
    };
    chain.record(Record::TrialFinished {
        trial: t.trial,
        val_accuracy: report.val.accuracy,
        test_accuracy: Some(report.test.accuracy),
        val_loss: report.val.loss,
        history: report.history.clone(),
        pruned: false,
        promoted,
        study_best: study_best(v, report.val.accuracy),
        train_seconds: report.train_seconds,
        resumed_from: report.resumed_from,
    })?;
    Ok(())
}

/// Writes `best/report.html` for a new champion: its curves, and the study's
/// earlier trials as table rows. A report is for people: failing to write one
/// is logged, never fatal.
fn write_report(
    ctx: &Context<'_>,
    card: &ModelCard,
    t: &OpenTrial,
    report: &TrialReport,
    v: &StudyView,
) {
    let mut trials: Vec<crate::report::TrialSummary> = v
        .finished
        .iter()
        .map(|(trial, f)| crate::report::TrialSummary {
            trial: *trial,
            spec: f.spec.clone(),
            state: if f.pruned { "pruned" } else { "finished" }.into(),
            val_accuracy: Some(f.val_accuracy),
            test_accuracy: None,
            parameters: None,
            train_seconds: 0.0,
            history: Vec::new(),
        })
        .collect();
    trials.push(crate::report::TrialSummary {
        trial: t.trial,
        spec: t.spec.clone(),
        state: "finished".into(),
        val_accuracy: Some(report.val.accuracy),
        test_accuracy: Some(report.test.accuracy),
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
        class_names: None,
    };
    match crate::report::write(&ctx.cfg.state_dir, &inputs) {
        Ok(path) => tracing::info!(path = %path.display(), "report written"),
        Err(e) => tracing::warn!("report not written: {e}"),
    }
}
