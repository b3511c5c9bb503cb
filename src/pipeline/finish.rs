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
    t: &OpenTrial,
    report: &TrialReport,
    data: &Dataset,
    v: &StudyView,
) -> anyhow::Result<()> {
    let card = card_of(ctx, chain, t, report, data);
    let verdict = verdict_for(ctx, chain, &card, data);
    let promoted = carry_out(ctx, chain, verdict, &card, t, report, v)?;
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

/// The model card a finished trial would be promoted with.
fn card_of(
    ctx: &Context<'_>,
    chain: &Chain,
    t: &OpenTrial,
    report: &TrialReport,
    data: &Dataset,
) -> ModelCard {
    let cfg = ctx.cfg;
    let shape = train::input_shape(data);
    ModelCard {
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
        val_size: data.val.len(),
        commit: crate::watch::git::commit_of(&cfg.data_dir),
        files: Vec::new(),
        version: 0,
        class_names: data.class_names.clone(),
        intervals: crate::model::card::Intervals::of(
            report.val.accuracy,
            data.val.len(),
            report.test.accuracy,
            data.test.len(),
        ),
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

/// Acts on the verdict (promotes, or rewrites a champion's missing report);
/// true when the trial is the champion afterwards.
fn carry_out(
    ctx: &Context<'_>,
    chain: &Chain,
    verdict: Verdict,
    card: &ModelCard,
    t: &OpenTrial,
    report: &TrialReport,
    v: &StudyView,
) -> anyhow::Result<bool> {
    let state_dir = &ctx.cfg.state_dir;
    match verdict {
        Verdict::AlreadyChampion => {
            // Promoted by builds that wrote the report after the renames, and crashed in between.
            let path = crate::state_dir::best(state_dir).join(REPORT);
            if !path.exists() {
                let html = render_report(ctx, chain, card, t, report, v);
                match crate::store::write_bytes_atomic(&path, html.as_bytes()) {
                    Ok(()) => tracing::info!("report of the champion written again"),
                    Err(e) => tracing::warn!("report not written: {e}"),
                }
            }
            Ok(true)
        }
        Verdict::Promote(why) => {
            let html = render_report(ctx, chain, card, t, report, v);
            promote::promote(
                state_dir,
                &report.weights,
                card,
                &[(REPORT, html.as_bytes())],
                ctx.cfg.keep_versions,
            )
            .context("promoting the model")?;
            tracing::info!(
                trial = t.trial,
                test_accuracy = card.test_accuracy,
                "promoted to best/ with its report: {why}"
            );
            Ok(true)
        }
        Verdict::Keep(why) => {
            tracing::info!(trial = t.trial, "champion kept: {why}");
            Ok(false)
        }
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
fn render_report(
    ctx: &Context<'_>,
    chain: &Chain,
    card: &ModelCard,
    t: &OpenTrial,
    report: &TrialReport,
    v: &StudyView,
) -> String {
    let input = crate::model::InputShape {
        channels: card.input_shape[0],
        height: card.input_shape[1],
        width: card.input_shape[2],
        classes: card.classes,
    };
    let mut trials: Vec<crate::report::TrialSummary> = v
        .finished
        .iter()
        .map(|(trial, f)| {
            let journaled = chain.finished_records().find_map(|r| match r {
                Record::TrialFinished {
                    trial: n,
                    test_accuracy,
                    history,
                    train_seconds,
                    ..
                } if n == trial => Some((*test_accuracy, history, *train_seconds)),
                _ => None,
            });
            let (test_accuracy, history, train_seconds) = match journaled {
                Some((test, history, secs)) => (test, history.clone(), secs),
                None => (None, Vec::new(), 0.0),
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
                test_accuracy,
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
        class_names: (!card.class_names.is_empty()).then_some(card.class_names.as_slice()),
    };
    crate::report::render(&inputs)
}
