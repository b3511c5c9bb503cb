//! What each pipeline event asks of MLflow, as queueable operations with a
//! stable key (the same event always gives the same keys, so a replayed
//! event is recognised and never logged twice).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event_kind::EventKind;
use crate::pipeline::events::Event;

/// MLflow's longest parameter value (MLflow 3: 6000 characters).
const MAX_PARAM_VALUE: usize = 6000;
/// MLflow's longest parameter or tag key.
const MAX_KEY: usize = 250;

/// One metric point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub key: String,
    pub value: f64,
    pub step: i64,
}

/// One thing to tell MLflow; `study` and `trial` name the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The trial's run, created (tags) with its params.
    StartRun {
        study: String,
        trial: u32,
        time_ms: i64,
        tags: BTreeMap<String, String>,
        params: BTreeMap<String, String>,
    },
    /// Its metrics per epoch, end tags and final status.
    EndRun {
        study: String,
        trial: u32,
        time_ms: i64,
        status: String,
        tags: BTreeMap<String, String>,
        metrics: Vec<Point>,
    },
    /// A promotion: the champion's files as artifacts, a new model version, alias `champion`.
    Register {
        study: String,
        trial: u32,
        time_ms: i64,
    },
    /// `champion` moved (back) to the version of this trial (rollback).
    Alias { study: String, trial: u32 },
}

/// A queued operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    pub key: String,
    #[serde(flatten)]
    pub op: Op,
}

/// The tag every run carries: finds it again after a crash.
pub const KEY_TAG: &str = "trainerd.key";

/// The model-version tag naming the kept version N (`versions/N/`) the
/// version's files came from: `trainerd rollback --to N` serves it again.
pub const VERSION_TAG: &str = "trainerd.version";

/// The run's identity: `<study>:t<trial>`.
pub fn run_key(study: &str, trial: u32) -> String {
    format!("{study}:t{trial}")
}

/// Milliseconds since the epoch of an RFC 3339 time (0 when unreadable).
pub fn millis(time: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time).map_or(0, |t| t.timestamp_millis())
}

/// The operations `ev` implies; `commit` is the workspace's commit.
pub fn ops_for(ev: &Event, commit: Option<&str>) -> Vec<Queued> {
    let Some(trial) = ev.trial else {
        return vec![];
    };
    let run = run_key(&ev.study, trial);
    let (study, time_ms) = (ev.study.clone(), millis(&ev.time));
    let op = match ev.kind {
        EventKind::TrialStarted => start_run(ev, trial, time_ms, commit),
        EventKind::TrialFinished => end_run(ev, trial, time_ms),
        EventKind::StudySuperseded => Op::EndRun {
            study,
            trial,
            time_ms,
            status: "KILLED".into(),
            tags: BTreeMap::from([("trainerd.superseded".into(), "true".into())]),
            metrics: vec![],
        },
        EventKind::NewBest => Op::Register {
            study,
            trial,
            time_ms,
        },
        _ => return vec![],
    };
    let what = match &op {
        Op::StartRun { .. } => "run",
        Op::EndRun { .. } => "end",
        Op::Register { .. } => "version",
        Op::Alias { .. } => "alias",
    };
    vec![Queued {
        key: format!("{run}:{what}"),
        op,
    }]
}

fn start_run(ev: &Event, trial: u32, time_ms: i64, commit: Option<&str>) -> Op {
    let d = &ev.data;
    let rung = d.get("rung").filter(|r| !r.is_null());
    let mut tags = BTreeMap::from([
        ("trainerd.study".to_string(), ev.study.clone()),
        ("trainerd.trial".to_string(), trial.to_string()),
        (
            "trainerd.rung".to_string(),
            rung.map_or("none".into(), scalar),
        ),
        (KEY_TAG.to_string(), run_key(&ev.study, trial)),
    ]);
    if let Some(c) = commit {
        tags.insert("trainerd.commit".into(), c.to_string());
    }
    let mut params = BTreeMap::new();
    if let Some(spec) = d.get("spec") {
        flatten("", spec, &mut params);
    }
    for k in ["move", "rung", "reason"] {
        if let Some(v) = d.get(k).filter(|v| !v.is_null()) {
            flatten(k, v, &mut params);
        }
    }
    Op::StartRun {
        study: ev.study.clone(),
        trial,
        time_ms,
        tags,
        params,
    }
}

fn end_run(ev: &Event, trial: u32, time_ms: i64) -> Op {
    let d = &ev.data;
    let flag = |k: &str| d.get(k).and_then(Value::as_bool).unwrap_or(false);
    let mut metrics = Vec::new();
    let history = d.get("history").and_then(Value::as_array);
    for rec in history.into_iter().flatten() {
        let step = rec.get("epoch").and_then(Value::as_i64).unwrap_or(0);
        for key in [
            "val_accuracy",
            "val_loss",
            "train_loss",
            "lr",
            "train_seconds",
        ] {
            if let Some(value) = rec.get(key).and_then(Value::as_f64) {
                metrics.push(Point {
                    key: key.into(),
                    value,
                    step,
                });
            }
        }
    }
    // No test accuracy: trials are never measured on the test split (the
    // champion's is in its card, uploaded with the registered version).
    let tags = BTreeMap::from([
        ("trainerd.pruned".to_string(), flag("pruned").to_string()),
        (
            "trainerd.diverged".to_string(),
            flag("diverged").to_string(),
        ),
    ]);
    Op::EndRun {
        study: ev.study.clone(),
        trial,
        time_ms,
        status: if flag("diverged") {
            "FAILED"
        } else {
            "FINISHED"
        }
        .into(),
        tags,
        metrics,
    }
}

/// A JSON scalar as a parameter value (strings without quotes).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Objects become dotted keys; arrays and scalars one value each (cut to MLflow's limits).
pub fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    if let Value::Object(map) = v {
        for (k, child) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            flatten(&key, child, out);
        }
        return;
    }
    if prefix.is_empty() || prefix.len() > MAX_KEY {
        return;
    }
    let mut value = scalar(v);
    cut(&mut value, MAX_PARAM_VALUE);
    out.insert(prefix.to_string(), value);
}

/// Shortens `s` to at most `max` bytes, on a character boundary.
pub fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let end = (0..=max)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.truncate(end);
    }
}
