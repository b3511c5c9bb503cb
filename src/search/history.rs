//! Where a study stands, as its journal records tell it: finished trials (in
//! the strategy's terms), the trial left open by a crash or a stop, counters.
//! Pure: a function of the records, unit-tested on hand-written ones.

use super::journal::{Entry, Outcome, Record};
use super::strategy::Finished;
use crate::model::TrialSpec;
use crate::train::EpochRecord;

/// A trial that started and has no `trial_finished` record.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTrial {
    pub trial: u32,
    pub spec: TrialSpec,
    /// The pruning rule stopped it (before a crash): finish it, do not train on.
    pub pruned: Option<Vec<EpochRecord>>,
}

/// A study's state after replaying its records.
#[derive(Debug, Default)]
pub struct StudyView {
    /// Finished trials in order, with their trial numbers.
    pub finished: Vec<(u32, Finished)>,
    /// Training seconds of the finished trials (the `--max-time` budget).
    pub train_seconds: f64,
    pub open: Option<OpenTrial>,
    pub trials_started: u32,
    /// Spec of the most recently started trial.
    pub last_spec: Option<TrialSpec>,
    pub resumed: u32,
    pub stopped: u32,
    pub target: Option<f64>,
    pub outcome: Option<Outcome>,
    /// It gave way to a newer study: never resumed.
    pub superseded: bool,
}

impl StudyView {
    /// The strategy's input.
    pub fn done(&self) -> Vec<Finished> {
        self.finished.iter().map(|(_, f)| f.clone()).collect()
    }

    /// Best validation accuracy so far, and its trial.
    pub fn best(&self) -> Option<(u32, f64)> {
        let done = self.done();
        super::strategy::best_index(&done).map(|i| (self.finished[i].0, done[i].val_accuracy))
    }
}

impl StudyView {
    /// Closes `trial` (no longer open) and records it as finished, as `set` says.
    fn close(
        &mut self,
        started: &[(u32, Finished)],
        trial: u32,
        train_seconds: &f64,
        set: impl FnOnce(&mut Finished),
    ) {
        if train_seconds.is_finite() {
            self.train_seconds += train_seconds;
        }
        if self.open.as_ref().is_some_and(|o| o.trial == trial) {
            self.open = None;
        }
        if let Some((_, f)) = started.iter().find(|(t, _)| *t == trial) {
            let mut f = f.clone();
            set(&mut f);
            self.finished.push((trial, f));
        }
    }
}

/// Replays one study's records.
pub fn view<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> StudyView {
    let mut v = StudyView::default();
    let mut started: Vec<(u32, Finished)> = Vec::new();
    for e in entries {
        match &e.record {
            Record::StudyStarted { target, .. } => v.target = Some(*target),
            Record::Resumed { .. } => v.resumed += 1,
            Record::Stopped { .. } => v.stopped += 1,
            Record::Superseded { .. } => v.superseded = true,
            Record::TrialStarted {
                trial,
                spec,
                mv,
                rung,
                ..
            } => {
                v.trials_started += 1;
                v.last_spec = Some(spec.clone());
                v.open = Some(OpenTrial {
                    trial: *trial,
                    spec: spec.clone(),
                    pruned: None,
                });
                started.push((
                    *trial,
                    Finished {
                        spec: spec.clone(),
                        mv: *mv,
                        rung: *rung,
                        val_accuracy: 0.0,
                        curve: vec![],
                        pruned: false,
                        diverged: false,
                    },
                ));
            }
            Record::TrialPruned { trial, history, .. } => {
                if let Some(open) = v.open.as_mut().filter(|o| o.trial == *trial) {
                    open.pruned = Some(history.clone());
                }
            }
            Record::TrialFinished {
                trial,
                val_accuracy,
                history,
                pruned,
                train_seconds,
                ..
            } => {
                // A build that did not stop diverged trials journaled them
                // as finished, with NaN (null) numbers: diverged is what they were.
                let diverged = !e.record.is_finite();
                v.close(&started, *trial, train_seconds, |f| {
                    if diverged {
                        f.diverged = true;
                    } else {
                        f.val_accuracy = *val_accuracy;
                        f.curve = history.iter().map(|h| h.val_accuracy).collect();
                        f.pruned = *pruned;
                    }
                });
            }
            Record::TrialDiverged {
                trial,
                train_seconds,
                ..
            } => v.close(&started, *trial, train_seconds, |f| f.diverged = true),
            Record::StudyFinished { outcome, .. } => v.outcome = Some(*outcome),
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::journal::fixtures::{entry, epoch, trial_finished, trial_started};

    fn e(record: Record) -> Entry {
        entry("s", record)
    }

    fn started(trial: u32) -> Entry {
        trial_started("s", trial, Some(0), "r")
    }

    fn finished(trial: u32, acc: f64) -> Entry {
        trial_finished("s", trial, acc, false)
    }

    #[test]
    fn finished_trials_are_closed_and_the_last_started_is_open() {
        let log = [
            started(0),
            finished(0, 0.8),
            started(1),
            finished(1, 0.9),
            started(2),
        ];
        let v = view(&log);
        assert_eq!(v.finished.len(), 2);
        assert_eq!(v.best(), Some((1, 0.9)));
        assert_eq!(v.open.as_ref().map(|o| o.trial), Some(2));
        assert_eq!(v.trials_started, 3);
        assert_eq!(v.train_seconds, 4.0);
        assert_eq!(v.done()[1].curve, vec![0.9]);
    }

    #[test]
    fn diverged_trials_are_closed_and_never_best() {
        let mut nan = finished(1, 0.3);
        if let Record::TrialFinished { val_loss, .. } = &mut nan.record {
            *val_loss = f64::NAN; // as read back from an old journal's null
        }
        let log = [
            started(0),
            finished(0, 0.2),
            started(1),
            nan,
            started(2),
            e(Record::TrialDiverged {
                trial: 2,
                epoch: 1,
                step: 5,
                reason: "training loss NaN".into(),
                history: vec![],
                train_seconds: 1.0,
                study_best: 0.2,
            }),
        ];
        let v = view(&log);
        assert!(v.open.is_none());
        assert_eq!(v.finished.len(), 3);
        assert!(v.finished[1].1.diverged && v.finished[2].1.diverged);
        assert_eq!(
            v.best(),
            Some((0, 0.2)),
            "only the finite trial can be best"
        );
        assert_eq!(v.train_seconds, 5.0);
    }

    #[test]
    fn a_pruned_open_trial_carries_its_history() {
        let log = [
            started(0),
            e(Record::TrialPruned {
                trial: 0,
                history: vec![epoch(0.3)],
                reason: "r".into(),
            }),
            e(Record::Stopped {
                seq: 0,
                trial: Some(0),
                step: 10,
            }),
        ];
        let v = view(&log);
        assert_eq!(v.open.unwrap().pruned.unwrap()[0].val_accuracy, 0.3);
        assert_eq!(v.stopped, 1);
        assert!(v.outcome.is_none());
    }
}
