//! The study journal: `state_dir/study/journal.jsonl`, append-only, one
//! versioned JSON record a line, each fsynced before the step it records is
//! acted on. Replaying it tells a restarted trainerd where every study stands:
//! which trials finished (never re-run), which one was interrupted (resumed
//! from its checkpoints), and what was already announced (events are derived
//! from records, see `pipeline::events`).
//!
//! A crash mid-append leaves a torn last line; opening the journal truncates
//! it (with a warning), since the step it described had not been acted on.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::strategy::Move;
use crate::model::TrialSpec;
use crate::store::jsonl::JsonlLog;
use crate::train::EpochRecord;

/// Version of the records this build writes and reads.
pub const JOURNAL_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {what}")]
    Io { path: PathBuf, what: String },
    #[error("{path}:{line}: {what} (the journal is damaged; move it aside to start over)")]
    Corrupt {
        path: PathBuf,
        line: usize,
        what: String,
    },
    /// A record that would not read back as written (a non-finite number):
    /// a bug, refused so the journal stays readable.
    #[error("{path}: refusing to journal a record that would not read back: {what}")]
    Unreadable { path: PathBuf, what: String },
}

impl crate::exit::ExitStatus for JournalError {
    fn exit_code(&self) -> u8 {
        match self {
            JournalError::Unreadable { .. } => crate::exit::INTERNAL,
            _ => crate::exit::IO,
        }
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Record format ([`JOURNAL_FORMAT`]).
    pub v: u32,
    pub study: String,
    /// RFC 3339 time of writing (events reuse it, so a replay emits the same).
    pub time: String,
    #[serde(flatten)]
    pub record: Record,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    StudyStarted {
        /// Hash of the settings and data that define the study.
        key: String,
        /// How many studies this state dir started before this one.
        ordinal: u32,
        data_fingerprint: String,
        target: f64,
        /// The study-defining settings, for humans and audits.
        config: serde_json::Value,
    },
    /// A process took over an unfinished study (`seq` counts these).
    Resumed { seq: u32, trial: Option<u32> },
    TrialStarted {
        trial: u32,
        spec: TrialSpec,
        #[serde(rename = "move")]
        mv: Move,
        rung: Option<usize>,
        reason: String,
        /// The architecture differs from the previous trial's.
        architecture_changed: bool,
    },
    /// The pruning rule stopped a trial after `history.len()` epochs.
    TrialPruned {
        trial: u32,
        history: Vec<EpochRecord>,
        reason: String,
    },
    /// Numbers read as NaN where an older build wrote `null` (a diverged
    /// trial it did not recognise; `history::view` treats it as diverged).
    /// No test accuracy: a trial is never measured on the test split, only
    /// a model about to be promoted is (its card holds it). The
    /// `test_accuracy` of lines written by older builds is ignored.
    TrialFinished {
        trial: u32,
        #[serde(deserialize_with = "crate::finite::f64_or_nan")]
        val_accuracy: f64,
        #[serde(deserialize_with = "crate::finite::f64_or_nan")]
        val_loss: f64,
        history: Vec<EpochRecord>,
        pruned: bool,
        /// Became the champion in `best/`.
        promoted: bool,
        /// The study's best validation accuracy after this trial.
        #[serde(deserialize_with = "crate::finite::f64_or_nan")]
        study_best: f64,
        #[serde(deserialize_with = "crate::finite::f64_or_nan")]
        train_seconds: f64,
        /// Step the last run of this trial resumed from (0 = ran in one go).
        resumed_from: u64,
    },
    /// The trial's loss or evaluation became NaN or infinite (e.g. a
    /// learning rate far too high): it ended there, never promoted.
    TrialDiverged {
        trial: u32,
        /// The epoch it diverged in (1-based) and the step it was noticed at.
        epoch: u32,
        step: u64,
        reason: String,
        /// The finished epochs before it (all finite).
        history: Vec<EpochRecord>,
        train_seconds: f64,
        /// The study's best validation accuracy after this trial.
        study_best: f64,
    },
    /// Stopped on request (SIGTERM) with `trial` checkpointed at `step`.
    Stopped {
        seq: u32,
        trial: Option<u32>,
        step: u64,
    },
    /// New inputs (data, config or a commit) arrived mid-study: the study
    /// stopped (`trial` checkpointed at `step`) and gives way to a new one;
    /// it is never resumed.
    Superseded {
        trial: Option<u32>,
        step: u64,
        reason: String,
        /// The workspace's commit the new study trains on, if a checkout.
        commit: Option<String>,
    },
    StudyFinished {
        outcome: Outcome,
        best_trial: Option<u32>,
        #[serde(deserialize_with = "crate::finite::f64_or_nan")]
        best_val_accuracy: f64,
        reason: String,
    },
}

impl Record {
    /// A `study_started` record's fields as one JSON object (the study's
    /// header on the dashboard, its event's data); `None` for other records.
    pub fn study_started_fields(&self) -> Option<serde_json::Value> {
        match self {
            Record::StudyStarted {
                key,
                ordinal,
                data_fingerprint,
                target,
                config,
            } => Some(serde_json::json!({
                "key": key, "ordinal": ordinal, "data_fingerprint": data_fingerprint,
                "target": target, "config": config,
            })),
            _ => None,
        }
    }

    /// Every number in the record is finite (what this build journals).
    pub fn is_finite(&self) -> bool {
        let epochs = |h: &[EpochRecord]| h.iter().all(EpochRecord::is_finite);
        match self {
            Record::StudyStarted { target, .. } => target.is_finite(),
            Record::Resumed { .. }
            | Record::TrialStarted { .. }
            | Record::Stopped { .. }
            | Record::Superseded { .. } => true,
            Record::TrialPruned { history, .. } => epochs(history),
            Record::TrialFinished {
                val_accuracy,
                val_loss,
                history,
                study_best,
                train_seconds,
                ..
            } => {
                [*val_accuracy, *val_loss, *study_best, *train_seconds]
                    .iter()
                    .all(|x| x.is_finite())
                    && epochs(history)
            }
            Record::TrialDiverged {
                history,
                train_seconds,
                study_best,
                ..
            } => train_seconds.is_finite() && study_best.is_finite() && epochs(history),
            Record::StudyFinished {
                best_val_accuracy, ..
            } => best_val_accuracy.is_finite(),
        }
    }
}

/// How a study ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    TargetReached,
    BudgetExhausted,
}

/// The open journal: its records so far and the file to append to.
pub struct Journal {
    log: JsonlLog,
    entries: Vec<Entry>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> JournalError {
    JournalError::Io {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

impl Journal {
    pub fn path(state_dir: &Path) -> PathBuf {
        crate::state_dir::journal(state_dir)
    }

    /// Opens (creating) the journal, reads every record, and truncates a torn
    /// last line. A bad line before the last one is corruption, not a crash.
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        let path = Self::path(state_dir);
        let dir = path.parent().unwrap_or(state_dir);
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path, e)),
        };
        let (entries, good_len) = parse(&path, &bytes)?;
        if good_len < bytes.len() {
            tracing::warn!(
                path = %path.display(), dropped_bytes = bytes.len() - good_len,
                "journal ends in a torn record (crash mid-append); dropping it"
            );
        }
        let log = JsonlLog::open_at(&path, good_len, bytes.len()).map_err(|e| io(&path, e))?;
        Ok(Journal { log, entries })
    }

    /// Reads the journal without creating, repairing or locking anything
    /// (for `status` while a daemon writes it); a torn tail is ignored.
    pub fn open_read_only(state_dir: &Path) -> Result<Vec<Entry>, JournalError> {
        let path = Self::path(state_dir);
        let bytes = fs::read(&path).map_err(|e| io(&path, e))?;
        Ok(parse(&path, &bytes)?.0)
    }

    /// Every record, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Records of one study.
    pub fn study(&self, study: &str) -> impl Iterator<Item = &Entry> {
        let study = study.to_string();
        self.entries.iter().filter(move |e| e.study == study)
    }

    /// Appends a record and fsyncs it; returns the stored entry.
    pub fn append(&mut self, study: &str, record: Record) -> Result<Entry, JournalError> {
        let entry = Entry {
            v: JOURNAL_FORMAT,
            study: study.to_string(),
            time: crate::timestamp::now_rfc3339(),
            record,
        };
        let path = self.log.path();
        let mut line = serde_json::to_vec(&entry).map_err(|e| io(path, e))?;
        // serde_json writes NaN as null: never journal what would not read back.
        if !entry.record.is_finite() || serde_json::from_slice::<Entry>(&line).is_err() {
            return Err(JournalError::Unreadable {
                path: path.to_path_buf(),
                what: String::from_utf8_lossy(&line).into_owned(),
            });
        }
        line.push(b'\n');
        crate::store::fault::point("journal.append");
        let written = self.log.append_line(&line);
        written.map_err(|e| io(self.log.path(), e))?;
        self.entries.push(entry.clone());
        Ok(entry)
    }
}

/// Parses journal bytes; returns the records and the length of the good prefix.
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<Entry>, usize), JournalError> {
    let mut entries = Vec::new();
    let mut offset = 0;
    let mut lines = bytes
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
        .peekable();
    while let Some((i, line)) = lines.next() {
        let last = lines.peek().is_none();
        let complete = line.ends_with(b"\n");
        if !complete {
            break; // a record without its newline: the append was cut short
        }
        let value = std::str::from_utf8(line)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).map_err(|e| e.to_string()));
        let corrupt = |what: String| JournalError::Corrupt {
            path: path.to_path_buf(),
            line: i + 1,
            what,
        };
        let value = match value {
            Ok(v) => v,
            Err(_) if last => break, // garbage after a crash: torn as well
            Err(what) => return Err(corrupt(what)),
        };
        let format = value["v"].as_u64().unwrap_or(0);
        if format != u64::from(JOURNAL_FORMAT) {
            return Err(corrupt(format!(
                "record format {format}; this build reads {JOURNAL_FORMAT}"
            )));
        }
        entries.push(serde_json::from_value::<Entry>(value).map_err(|e| corrupt(e.to_string()))?);
        offset += line.len();
    }
    Ok((entries, offset))
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
