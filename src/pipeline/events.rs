//! Pipeline events: every step of the job chain as a line in
//! `state_dir/events.jsonl`, a log line, and a message to the notifier.
//!
//! Events are a pure function of journal records ([`events_for`]): the chain
//! journals a step, then emits what the record implies. Each event has a
//! deterministic id (study, kind, trial or sequence number), and the log
//! skips ids it already holds, so replaying the journal after a crash emits
//! exactly the events the crash swallowed, and a restart never emits one twice.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc::UnboundedSender;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::jsonl::{self, JsonlLog};
use crate::confidence::Goal;
pub use crate::event_kind::{EventKind, KINDS};
use crate::search::journal::{Entry, Outcome, Record};

/// Version of the event lines.
pub const EVENT_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("{path}: {what}")]
    Io { path: PathBuf, what: String },
}

impl crate::exit::ExitStatus for EventError {
    fn exit_code(&self) -> u8 {
        crate::exit::IO
    }
}

/// One line of `events.jsonl` (also the webhook body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    /// Deterministic: `<study>:<kind>[:<trial or seq>]`; the webhook's idempotency key.
    pub id: String,
    pub kind: EventKind,
    pub study: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial: Option<u32>,
    /// Time of the journal record the event derives from.
    pub time: String,
    pub message: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

fn event(e: &Entry, kind: EventKind, suffix: Option<String>, trial: Option<u32>) -> Event {
    let id = match suffix {
        Some(s) => format!("{}:{kind}:{s}", e.study),
        None => format!("{}:{kind}", e.study),
    };
    Event {
        v: EVENT_FORMAT,
        id,
        kind,
        study: e.study.clone(),
        trial,
        time: e.time.clone(),
        message: String::new(),
        data: json!({}),
    }
}

fn with(mut ev: Event, message: String, data: serde_json::Value) -> Event {
    ev.message = message;
    ev.data = data;
    ev
}

/// The events a journal record implies. `target` is the study's target.
pub fn events_for(e: &Entry, goal: impl Into<Goal>) -> Vec<Event> {
    let goal = goal.into();
    let target = goal.target;
    let t = |trial: u32| Some(format!("t{trial}"));
    match &e.record {
        Record::StudyStarted { target, .. } => vec![with(
            event(e, EventKind::StudyStarted, None, None),
            format!("study {} started (target {target})", e.study),
            e.record.study_started_fields().unwrap_or_default(),
        )],
        Record::Resumed { seq, trial } => vec![with(
            event(e, EventKind::Resumed, Some(format!("r{seq}")), *trial),
            format!("study {} resumed after a restart", e.study),
            json!({"seq": seq}),
        )],
        Record::TrialStarted {
            trial,
            spec,
            mv,
            rung,
            reason,
            architecture_changed,
        } => {
            let mut out = vec![with(
                event(e, EventKind::TrialStarted, t(*trial), Some(*trial)),
                format!("trial {trial} started: {} ({reason})", spec.preset),
                json!({"spec": spec, "move": mv, "rung": rung, "reason": reason}),
            )];
            if *architecture_changed {
                out.push(with(
                    event(e, EventKind::ArchitectureChanged, t(*trial), Some(*trial)),
                    format!("trial {trial} changes the architecture to {}", spec.preset),
                    json!({"preset": spec.preset, "arch": spec.arch}),
                ));
            }
            out
        }
        Record::TrialPruned {
            trial,
            history,
            reason,
        } => vec![with(
            event(e, EventKind::TrialPruned, t(*trial), Some(*trial)),
            format!(
                "trial {trial} pruned after {} epochs: {reason}",
                history.len()
            ),
            json!({"epochs": history.len(), "val_accuracy": history.last().map(|h| h.val_accuracy),
                   "reason": reason}),
        )],
        Record::TrialFinished {
            trial,
            val_accuracy,
            promoted,
            study_best,
            pruned,
            train_seconds,
            history,
            ..
        } => {
            let mut out = vec![with(
                event(e, EventKind::TrialFinished, t(*trial), Some(*trial)),
                format!("trial {trial} finished: validation accuracy {val_accuracy:.4}"),
                json!({"val_accuracy": val_accuracy, "pruned": pruned,
                       "train_seconds": train_seconds, "history": history}),
            )];
            if *promoted {
                out.push(with(
                    event(e, EventKind::NewBest, t(*trial), Some(*trial)),
                    format!(
                        "trial {trial} is the new champion: validation accuracy {val_accuracy:.4}"
                    ),
                    json!({"val_accuracy": val_accuracy}),
                ));
            }
            out.extend(below_target(e, *trial, *study_best, goal));
            out
        }
        Record::TrialDiverged {
            trial,
            epoch,
            step,
            reason,
            train_seconds,
            study_best,
            history,
        } => {
            let mut out = vec![
                with(
                    event(e, EventKind::TrialDiverged, t(*trial), Some(*trial)),
                    format!("trial {trial} diverged in epoch {epoch} and was stopped: {reason}"),
                    json!({"epoch": epoch, "step": step, "reason": reason}),
                ),
                with(
                    event(e, EventKind::TrialFinished, t(*trial), Some(*trial)),
                    format!("trial {trial} finished: diverged, never promoted"),
                    json!({"val_accuracy": null, "pruned": false,
                           "diverged": true, "train_seconds": train_seconds, "history": history}),
                ),
            ];
            out.extend(below_target(e, *trial, *study_best, goal));
            out
        }
        Record::Stopped { seq, trial, step } => vec![with(
            event(e, EventKind::Stopped, Some(format!("s{seq}")), *trial),
            format!("stopped on request at step {step}"),
            json!({"step": step}),
        )],
        Record::Superseded {
            trial,
            step,
            reason,
            commit,
        } => vec![with(
            event(e, EventKind::StudySuperseded, None, *trial),
            format!("superseded at step {step}: {reason}"),
            json!({"step": step, "reason": reason, "commit": commit}),
        )],
        Record::StudyFinished {
            outcome,
            best_trial,
            best_val_accuracy,
            reason,
        } => {
            let kind = match outcome {
                Outcome::TargetReached => EventKind::TargetReached,
                Outcome::BudgetExhausted => EventKind::BudgetExhausted,
            };
            vec![with(
                event(e, kind.clone(), None, *best_trial),
                format!("study {} finished: {kind} ({reason})", e.study),
                json!({"best_trial": best_trial, "best_val_accuracy": best_val_accuracy,
                       "target": target, "reason": reason}),
            )]
        }
    }
}

/// The `below_target` event that follows a finished trial while the study's
/// best is still short of its target (its 95% lower bound is below it);
/// none once the target is met.
fn below_target(e: &Entry, trial: u32, study_best: f64, goal: Goal) -> Option<Event> {
    let target = goal.target;
    (!goal.reached(study_best)).then(|| {
        with(
            event(
                e,
                EventKind::BelowTarget,
                Some(format!("t{trial}")),
                Some(trial),
            ),
            format!(
                "best so far {} is below the target {target}",
                crate::confidence::show(study_best, goal.val_n)
            ),
            json!({"study_best": study_best, "target": target, "val_n": goal.val_n}),
        )
    })
}

/// The append-only event log, with the ids it already holds.
pub struct EventLog {
    log: JsonlLog,
    seen: HashSet<String>,
    notify: Option<UnboundedSender<Event>>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> EventError {
    EventError::Io {
        path: path.to_path_buf(),
        what: e.to_string(),
    }
}

impl EventLog {
    pub fn path(state_dir: &Path) -> PathBuf {
        crate::state_dir::events(state_dir)
    }

    /// Opens the log; a torn last line (crash mid-append) is cut off.
    /// `notify` receives every newly emitted event (the webhook sink).
    pub fn open(
        state_dir: &Path,
        notify: Option<UnboundedSender<Event>>,
    ) -> Result<EventLog, EventError> {
        let path = Self::path(state_dir);
        let (log, events) = JsonlLog::open::<Event>(&path).map_err(|e| io_err(&path, e))?;
        Ok(EventLog {
            seen: events.into_iter().map(|e| e.id).collect(),
            log,
            notify,
        })
    }

    /// Appends, logs and forwards `ev` unless its id was emitted before.
    pub fn emit(&mut self, ev: Event) -> Result<bool, EventError> {
        if self.seen.contains(&ev.id) {
            return Ok(false);
        }
        self.log
            .append(&ev)
            .map_err(|e| io_err(self.log.path(), e))?;
        tracing::info!(event = %ev.kind, id = %ev.id, study = %ev.study, trial = ev.trial, "{}", ev.message);
        self.seen.insert(ev.id.clone());
        if let Some(tx) = &self.notify {
            // A gone notifier only means no webhooks; the event is logged.
            let _ = tx.send(ev);
        }
        Ok(true)
    }
}

/// Reads the events in `events.jsonl` (unreadable lines skipped).
pub fn read_events(path: &Path) -> std::io::Result<Vec<Event>> {
    Ok(jsonl::read::<Event>(path)?
        .0
        .into_iter()
        .filter(|e| e.v == EVENT_FORMAT)
        .collect())
}

#[cfg(test)]
mod tests;
