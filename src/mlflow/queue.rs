//! The bounded on-disk queue of MLflow operations: `queue.jsonl` holds every
//! operation appended (fsynced before it counts as queued), `sent.jsonl` the
//! key of each one done or given up on. Pending = queued minus settled, in
//! order; a key is queued at most once, so a replayed event is a no-op.
//! Past [`MAX_PENDING`] the oldest pending operation is dropped (recorded as
//! such, with a warning); the queue file is rewritten with only the pending
//! ones when settled lines dominate it.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ops::Queued;
use crate::store::jsonl::{self, JsonlLog};

/// Most operations kept waiting (a study logs about four per trial).
pub const MAX_PENDING: usize = 10_000;

/// One line of `sent.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settled {
    pub key: String,
    /// `sent`, `refused` (the server said no: not retried) or `dropped` (queue full).
    pub outcome: String,
    #[serde(default)]
    pub detail: Option<String>,
    pub time: String,
}

/// The queue, open for appending.
pub struct DiskQueue {
    queue: JsonlLog,
    sent: JsonlLog,
    pending: VecDeque<Queued>,
    /// Every key queued or settled: never queued again.
    known: HashSet<String>,
    cap: usize,
}

pub fn queue_path(state_dir: &Path) -> PathBuf {
    crate::state_dir::mlflow(state_dir).join("queue.jsonl")
}

pub fn sent_path(state_dir: &Path) -> PathBuf {
    crate::state_dir::mlflow(state_dir).join("sent.jsonl")
}

impl DiskQueue {
    /// Opens (creating) the queue under `state_dir/mlflow/`.
    pub fn open(state_dir: &Path, cap: usize) -> std::io::Result<DiskQueue> {
        let (sent, settled) = JsonlLog::open::<Settled>(&sent_path(state_dir))?;
        let path = queue_path(state_dir);
        let (queue, queued) = JsonlLog::open::<Queued>(&path)?;
        let mut known: HashSet<String> = settled.into_iter().map(|s| s.key).collect();
        let lines = queued.len();
        let mut pending = VecDeque::new();
        for q in queued {
            if known.insert(q.key.clone()) {
                pending.push_back(q);
            }
        }
        let mut me = DiskQueue {
            queue,
            sent,
            pending,
            known,
            cap: cap.max(1),
        };
        if lines > 2 * me.pending.len() + 64 {
            me.compact(&path)?;
        }
        while me.pending.len() > me.cap {
            me.drop_oldest();
        }
        Ok(me)
    }

    /// Rewrites `queue.jsonl` with the pending operations only (atomic rename).
    fn compact(&mut self, path: &Path) -> std::io::Result<()> {
        let mut text = Vec::new();
        for q in &self.pending {
            serde_json::to_writer(&mut text, q).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        crate::store::write_bytes_atomic(path, &text).map_err(std::io::Error::other)?;
        let (_, good, total) = jsonl::read::<Queued>(path)?;
        self.queue = JsonlLog::open_at(path, good, total)?;
        Ok(())
    }

    /// Queues `q` unless its key was queued or settled before; true when queued.
    pub fn push(&mut self, q: Queued) -> std::io::Result<bool> {
        if self.known.contains(&q.key) {
            return Ok(false);
        }
        self.queue.append(&q)?;
        self.known.insert(q.key.clone());
        self.pending.push_back(q);
        if self.pending.len() > self.cap {
            self.drop_oldest();
        }
        Ok(true)
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.pending.pop_front() {
            tracing::warn!(key = %old.key, cap = self.cap, "MLflow queue full: dropping its oldest operation");
            self.record(&old.key, "dropped", Some("queue full".into()));
        }
    }

    /// The next operation to send.
    pub fn front(&self) -> Option<&Queued> {
        self.pending.front()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Marks the operation `key` settled (`outcome`): recorded, then out of the queue.
    pub fn settle(&mut self, key: &str, outcome: &str, detail: Option<String>) {
        self.record(key, outcome, detail);
        if let Some(i) = self.pending.iter().position(|q| q.key == key) {
            self.pending.remove(i);
        }
    }

    fn record(&mut self, key: &str, outcome: &str, detail: Option<String>) {
        let line = Settled {
            key: key.to_string(),
            outcome: outcome.into(),
            detail,
            time: crate::timestamp::now_rfc3339(),
        };
        if let Err(e) = self.sent.append(&line) {
            tracing::warn!(path = %self.sent.path().display(), "cannot record a settled MLflow operation (it may be re-sent, and is found again on the server): {e}");
        }
    }
}
