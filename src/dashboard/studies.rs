//! The studies of the journal (`study/journal.jsonl`) as the page lists
//! them: each study's state and settings, and every trial with its rung,
//! state (running, finished, pruned, diverged, superseded, stopped),
//! epochs, time, accuracies and parameters. The journal is read again only
//! when its size or time changes, at most its last [`MAX_JOURNAL`] bytes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use crate::model::{InputShape, TrialSpec};
use crate::search::journal::{Entry, Outcome, Record};
use crate::train::EpochRecord;

/// Bytes of the journal read at most (its newest part).
pub const MAX_JOURNAL: u64 = 64 << 20;
/// Studies listed at most (the newest).
pub const MAX_STUDIES: usize = 100;
/// Trials of one study listed at most (the newest).
pub const MAX_TRIALS: usize = 1000;

/// The journal's records as last read, and what the file was then.
#[derive(Default)]
pub struct JournalCache {
    sig: Option<(u64, i64, i64, u64)>,
    entries: Arc<Vec<Entry>>,
}

impl JournalCache {
    /// The records, read again when the file changed.
    pub fn entries(&mut self, state_dir: &Path) -> Arc<Vec<Entry>> {
        let path = crate::state_dir::journal(state_dir);
        let sig = std::fs::metadata(&path)
            .ok()
            .map(|m| (m.len(), m.mtime(), m.mtime_nsec(), m.ino()));
        if sig != self.sig {
            self.entries = Arc::new(sig.map_or_else(Vec::new, |_| read_tail(&path)));
            self.sig = sig;
        }
        self.entries.clone()
    }

    /// The journal's length when last read (changes with every record).
    pub fn len(&self) -> u64 {
        self.sig.map_or(0, |s| s.0)
    }
}

/// The complete lines of the last [`MAX_JOURNAL`] bytes that parse.
fn read_tail(path: &Path) -> Vec<Entry> {
    let Ok(mut f) = File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(MAX_JOURNAL);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err()
        || f.take(MAX_JOURNAL).read_to_end(&mut bytes).is_err()
    {
        return Vec::new();
    }
    let mut lines = bytes.split_inclusive(|&b| b == b'\n');
    if start > 0 {
        lines.next(); // begins mid-line
    }
    lines
        .filter(|l| l.ends_with(b"\n"))
        .filter_map(|l| serde_json::from_slice::<Entry>(l).ok())
        .collect()
}

/// The ids of the studies, in the order they started.
pub fn ids(entries: &[Entry]) -> Vec<&str> {
    entries
        .iter()
        .filter(|e| matches!(e.record, Record::StudyStarted { .. }))
        .map(|e| e.study.as_str())
        .collect()
}

/// The newest study's id.
pub fn latest(entries: &[Entry]) -> Option<&str> {
    ids(entries).last().copied()
}

/// One trial as the table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TrialRow {
    pub trial: u32,
    pub state: &'static str,
    pub rung: Option<usize>,
    #[serde(rename = "move")]
    pub mv: Value,
    pub preset: String,
    pub arch: String,
    pub recipe: String,
    pub reason: String,
    pub started_at: String,
    pub epochs: usize,
    pub train_seconds: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub parameters: Option<u64>,
    pub promoted: bool,
    pub batch_size: i64,
    #[serde(skip)]
    pub history: Vec<EpochRecord>,
}

/// What the journal says of one study.
pub struct Study {
    pub id: String,
    pub state: &'static str,
    pub trials: Vec<TrialRow>,
    /// The `study_started` record's fields: target, data, settings.
    pub started: Value,
}

/// The study `id` from `entries`; `running` is the trial this process
/// trains now (only the newest study can have one).
pub fn study(
    entries: &[Entry],
    id: &str,
    running: Option<u32>,
    input: Option<InputShape>,
) -> Option<Study> {
    let mine: Vec<&Entry> = entries.iter().filter(|e| e.study == id).collect();
    let started = mine.iter().find_map(|e| {
        let mut fields = e.record.study_started_fields()?;
        fields["time"] = json!(e.time);
        Some(fields)
    })?;
    let mut rows: Vec<TrialRow> = Vec::new();
    let mut state = "stopped";
    for e in &mine {
        apply(&mut rows, &mut state, e, input);
    }
    for r in rows.iter_mut().filter(|r| r.state == "open") {
        r.state = match (state, running) {
            ("superseded", _) => "superseded",
            (_, Some(t)) if t == r.trial => "running",
            _ => "stopped",
        };
    }
    if state == "stopped" && running.is_some() {
        state = "running";
    }
    let skip = rows.len().saturating_sub(MAX_TRIALS);
    Some(Study {
        id: super::clip(id, 64),
        state,
        trials: rows.split_off(skip),
        started,
    })
}

/// Folds one record into the rows and the study's state.
fn apply(rows: &mut Vec<TrialRow>, state: &mut &'static str, e: &Entry, input: Option<InputShape>) {
    match &e.record {
        Record::TrialStarted {
            trial,
            spec,
            mv,
            rung,
            reason,
            ..
        } => {
            rows.push(started(e, *trial, spec, mv, *rung, reason, input));
        }
        Record::TrialFinished {
            trial,
            val_accuracy,
            history,
            pruned,
            promoted,
            train_seconds,
            ..
        } => {
            let diverged = !e.record.is_finite();
            if let Some(r) = find(rows, *trial) {
                r.state = match (diverged, *pruned) {
                    (true, _) => "diverged",
                    (false, true) => "pruned",
                    (false, false) => "finished",
                };
                r.val_accuracy = val_accuracy.is_finite().then_some(*val_accuracy);
                r.promoted = *promoted;
                ended(r, history, *train_seconds);
            }
        }
        Record::TrialDiverged {
            trial,
            reason,
            history,
            train_seconds,
            ..
        } => {
            if let Some(r) = find(rows, *trial) {
                r.state = "diverged";
                r.reason = super::clip(reason, 500);
                ended(r, history, *train_seconds);
            }
        }
        Record::TrialPruned { trial, reason, .. } => {
            if let Some(r) = find(rows, *trial) {
                r.reason = super::clip(reason, 500);
            }
        }
        Record::Superseded { .. } => *state = "superseded",
        Record::StudyFinished { outcome, .. } => {
            *state = match outcome {
                Outcome::TargetReached => "target_reached",
                Outcome::BudgetExhausted => "budget_exhausted",
            }
        }
        Record::StudyStarted { .. } | Record::Resumed { .. } | Record::Stopped { .. } => {}
    }
}

fn find(rows: &mut [TrialRow], trial: u32) -> Option<&mut TrialRow> {
    rows.iter_mut().rev().find(|r| r.trial == trial)
}

fn ended(r: &mut TrialRow, history: &[EpochRecord], train_seconds: f64) {
    r.epochs = history.len();
    r.train_seconds = train_seconds.is_finite().then_some(train_seconds);
    r.history = history.to_vec();
}

fn started(
    e: &Entry,
    trial: u32,
    spec: &TrialSpec,
    mv: &crate::search::strategy::Move,
    rung: Option<usize>,
    reason: &str,
    input: Option<InputShape>,
) -> TrialRow {
    TrialRow {
        trial,
        state: "open",
        rung,
        mv: serde_json::to_value(mv).unwrap_or(Value::Null),
        preset: super::clip(&spec.preset, 200),
        arch: crate::report::describe_arch(&spec.arch),
        recipe: crate::report::describe_recipe(&spec.recipe),
        reason: super::clip(reason, 500),
        started_at: e.time.clone(),
        epochs: 0,
        train_seconds: None,
        val_accuracy: None,
        parameters: input
            .and_then(|i| spec.arch.footprint(i).ok())
            .map(|f| f.parameters),
        promoted: false,
        batch_size: spec.recipe.batch_size,
        history: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::journal::fixtures::trial_started;
    use crate::search::journal::fixtures::{entry as e, trial_finished as finished};

    fn started(study: &str) -> Entry {
        e(
            study,
            Record::StudyStarted {
                key: "k".into(),
                ordinal: 0,
                data_fingerprint: "fp".into(),
                target: 0.9,
                config: json!({}),
            },
        )
    }

    fn trial(study: &str, trial: u32) -> Entry {
        trial_started(study, trial, Some(trial as usize), "<b>why</b>")
    }

    #[test]
    fn every_trial_state_reads_from_the_journal() {
        let log = vec![
            started("a"),
            trial("a", 0),
            finished("a", 0, 0.8, false),
            trial("a", 1),
            finished("a", 1, 0.5, true),
            trial("a", 2),
            e(
                "a",
                Record::TrialDiverged {
                    trial: 2,
                    epoch: 1,
                    step: 5,
                    reason: "loss NaN".into(),
                    history: vec![],
                    train_seconds: 1.0,
                    study_best: 0.8,
                },
            ),
            trial("a", 3),
            e(
                "a",
                Record::Superseded {
                    trial: Some(3),
                    step: 4,
                    reason: "new data".into(),
                    commit: None,
                },
            ),
            started("b"),
            trial("b", 0),
        ];
        assert_eq!(ids(&log), ["a", "b"]);
        assert_eq!(latest(&log), Some("b"));
        let a = study(&log, "a", None, None).unwrap();
        let states: Vec<&str> = a.trials.iter().map(|r| r.state).collect();
        assert_eq!(states, ["finished", "pruned", "diverged", "superseded"]);
        assert_eq!(a.state, "superseded");
        assert_eq!(a.trials[0].val_accuracy, Some(0.8));
        assert!(a.trials[0].promoted && !a.trials[1].promoted);
        let row = serde_json::to_value(&a.trials[0]).unwrap();
        assert!(
            row.get("test_accuracy").is_none(),
            "no per-trial test accuracy: {row}"
        );
        assert_eq!((a.trials[0].epochs, a.trials[0].rung), (1, Some(0)));
        assert_eq!(a.trials[2].reason, "loss NaN");
        assert_eq!(a.trials[3].reason, "<b>why</b>", "kept as text");
        let b = study(&log, "b", Some(0), None).unwrap();
        assert_eq!((b.state, b.trials[0].state), ("running", "running"));
        assert_eq!(
            study(&log, "b", None, None).unwrap().trials[0].state,
            "stopped"
        );
        assert!(study(&log, "c", None, None).is_none());
    }

    #[test]
    fn the_journal_is_read_again_only_when_it_changes_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::state_dir::journal(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut cache = JournalCache::default();
        assert!(cache.entries(dir.path()).is_empty());
        let line = |x: &Entry| serde_json::to_string(x).unwrap() + "\n";
        std::fs::write(
            &path,
            line(&started("a")) + &line(&trial("a", 0)) + "{\"v\":1,",
        )
        .unwrap();
        assert_eq!(cache.entries(dir.path()).len(), 2);
        assert!(cache.len() > 0);
    }
}
