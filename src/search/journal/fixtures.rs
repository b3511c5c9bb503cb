//! Journal entries for tests: the records the readers of the journal
//! (`search::history`, the dashboard's studies) are tested on.

use super::{Entry, Record};
use crate::search::strategy::Move;
use crate::train::EpochRecord;

/// `record` as a line of `study`'s journal.
pub(crate) fn entry(study: &str, record: Record) -> Entry {
    Entry {
        v: 1,
        study: study.into(),
        time: "t".into(),
        record,
    }
}

/// Trial `trial` of `study` started (the `linear` preset) on `rung`, for `reason`.
pub(crate) fn trial_started(study: &str, trial: u32, rung: Option<usize>, reason: &str) -> Entry {
    entry(
        study,
        Record::TrialStarted {
            trial,
            spec: crate::model::preset("linear").unwrap(),
            mv: Move::Start,
            rung,
            reason: reason.into(),
            architecture_changed: false,
        },
    )
}

/// Epoch 1 (step 10) at validation accuracy `acc`.
pub(crate) fn epoch(acc: f64) -> EpochRecord {
    EpochRecord {
        epoch: 1,
        step: 10,
        train_loss: 0.5,
        val_accuracy: acc,
        val_loss: 0.4,
        lr: 0.1,
        train_seconds: 2.0,
    }
}

/// Trial `trial` finished after one epoch at `acc` in 2 s: pruned, or promoted.
pub(crate) fn trial_finished(study: &str, trial: u32, acc: f64, pruned: bool) -> Entry {
    entry(
        study,
        Record::TrialFinished {
            trial,
            val_accuracy: acc,
            val_loss: 0.4,
            history: vec![epoch(acc)],
            pruned,
            promoted: !pruned,
            study_best: acc,
            train_seconds: 2.0,
            resumed_from: 0,
        },
    )
}
