//! The directory of one trial's checkpoints: the atomic commit, retention,
//! and quarantine of corrupt files. The file format is
//! [`super::checkpoint_file`].
//!
//! # Commit protocol
//!
//! `ckpt-<step>.tch.tmp` is written and fsynced, renamed to `ckpt-<step>.tch`,
//! and the directory is fsynced. A crash at any point leaves either the old
//! set of checkpoints or the old set plus the new one; a leftover temp file
//! is removed by the next [`CheckpointDir::open`].

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tch::Tensor;

use super::checkpoint_file::{encode, load, read_score, Checkpoint, LoadFail};
use super::policy::{self, Entry};
use super::{fault, StoreError};

const NAME_PREFIX: &str = "ckpt-";
const NAME_SUFFIX: &str = ".tch";
const TMP_SUFFIX: &str = ".tmp";
/// Subdirectory where corrupt checkpoints are moved, by default beside them
/// (trainers put it outside the trial's folder, see [`CheckpointDir::quarantine_into`]).
pub const QUARANTINE_DIR: &str = "quarantine";

/// Where checkpoint bytes are written: a file in production; tests inject
/// sinks that fail like a full or broken disk.
trait Sink: Write {
    fn sync(&mut self) -> io::Result<()>;
}

impl Sink for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

type SinkFactory = Box<dyn Fn(&Path) -> io::Result<Box<dyn Sink>> + Send + Sync>;

fn file_sink(path: &Path) -> io::Result<Box<dyn Sink>> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    Ok(Box::new(file))
}

fn step_of(file_name: &str) -> Option<u64> {
    let digits = file_name
        .strip_prefix(NAME_PREFIX)?
        .strip_suffix(NAME_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// One directory of checkpoints for one trial, with a retention policy.
pub struct CheckpointDir {
    pub dir: PathBuf,
    /// How many of the newest checkpoints to keep (at least 1); the best
    /// scored one is kept besides.
    pub keep_last: usize,
    /// Scores of the checkpoints on disk, read from their headers once.
    scores: HashMap<u64, Option<f64>>,
    sink: SinkFactory,
    /// Where set-aside checkpoints go. Outside the trial's folder in a state
    /// dir, because a finished trial's folder is removed and quarantined
    /// files are never deleted.
    quarantine_dir: PathBuf,
}

impl CheckpointDir {
    /// Creates the directory if needed and removes leftover temp files.
    pub fn open(dir: &Path, keep_last: usize) -> Result<Self, StoreError> {
        let io_err = |what: &str, e: io::Error| StoreError::Io {
            path: dir.to_path_buf(),
            what: format!("{what}: {e}"),
        };
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|e| io_err("cannot create checkpoint directory", e))?;
            // Make the new directory's own entry durable too.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent).map_err(|e| io_err("cannot sync parent directory", e))?;
            }
        }
        let entries =
            fs::read_dir(dir).map_err(|e| io_err("cannot list checkpoint directory", e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TMP_SUFFIX) && entry.file_type().is_ok_and(|t| t.is_file()) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::info!(path = %entry.path().display(), "removed a leftover temp file of an interrupted save")
                    }
                    Err(e) => {
                        tracing::warn!(path = %entry.path().display(), "cannot remove leftover temp file: {e}")
                    }
                }
            }
        }
        let mut this = CheckpointDir {
            dir: dir.to_path_buf(),
            keep_last: keep_last.max(1),
            scores: HashMap::new(),
            sink: Box::new(file_sink),
            quarantine_dir: dir.join(QUARANTINE_DIR),
        };
        for (step, path) in this.list()? {
            this.scores.insert(step, read_score(&path));
        }
        Ok(this)
    }

    /// Moves set-aside checkpoints to `dir` instead of `quarantine/` beside them.
    pub fn quarantine_into(mut self, dir: PathBuf) -> Self {
        self.quarantine_dir = dir;
        self
    }

    /// Where set-aside checkpoints go.
    pub fn quarantine_dir(&self) -> &Path {
        &self.quarantine_dir
    }

    /// The file name a checkpoint of `step` gets.
    pub fn path_for(&self, step: u64) -> PathBuf {
        self.dir
            .join(format!("{NAME_PREFIX}{step:012}{NAME_SUFFIX}"))
    }

    /// The committed checkpoint files, oldest step first (unverified).
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| StoreError::Read {
            path: self.dir.clone(),
            source,
        })?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::Read {
                path: self.dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            if let Some(step) = name.to_str().and_then(step_of) {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    found.push((step, entry.path()));
                }
            }
        }
        found.sort_by_key(|(step, _)| *step);
        Ok(found)
    }

    /// Atomically writes a checkpoint for `step`, then applies retention.
    /// `score` (validation accuracy, when known) lets retention keep the best.
    ///
    /// On error nothing committed before is touched except files retention
    /// would have deleted after this save anyway (never the newest), and no
    /// temp file is left behind.
    pub fn save(
        &mut self,
        step: u64,
        score: Option<f64>,
        meta: &serde_json::Value,
        tensors: &[(String, Tensor)],
    ) -> Result<PathBuf, StoreError> {
        let score = score.filter(|s| s.is_finite());
        let bytes =
            encode(step, score, meta, tensors).map_err(|what| StoreError::Encode { step, what })?;
        let existing: Vec<Entry> = self
            .list()?
            .into_iter()
            .map(|(s, path)| Entry {
                step: s,
                score: *self.scores.entry(s).or_insert_with(|| read_score(&path)),
            })
            .collect();
        if let Some(newest) = existing.last().filter(|e| e.step > step) {
            tracing::warn!(step, newest = newest.step, dir = %self.dir.display(), "saving a checkpoint older than the newest one on disk; a resume would pick the newer one");
        }
        let plan = policy::plan(&existing, self.keep_last, Entry { step, score });
        self.delete(&plan.before);
        let path = self.path_for(step);
        self.commit(&path, step, &bytes)?;
        self.scores.insert(step, score);
        self.delete(&plan.after);
        tracing::debug!(step, bytes = bytes.len(), path = %path.display(), "checkpoint saved");
        Ok(path)
    }

    /// The commit protocol: temp file, fsync, rename, directory fsync.
    fn commit(&self, path: &Path, step: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let fail = |source: io::Error| StoreError::Save {
            path: path.to_path_buf(),
            step,
            source,
        };
        let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", path.display()));
        let written = (|| -> io::Result<()> {
            let mut sink = (self.sink)(&tmp)?;
            let (first, second) = bytes.split_at(bytes.len() / 2);
            sink.write_all(first)?;
            fault::point("ckpt.mid_write");
            sink.write_all(second)?;
            sink.flush()?;
            fault::point("ckpt.after_write");
            sink.sync()?;
            fault::point("ckpt.after_fsync");
            drop(sink);
            fs::rename(&tmp, path)
        })();
        if let Err(e) = written {
            if let Err(rm) = fs::remove_file(&tmp) {
                if rm.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %tmp.display(), "cannot remove the temp file of a failed save: {rm}");
                }
            }
            tracing::warn!(step, path = %path.display(), "checkpoint save failed, previous checkpoints kept: {e}");
            return Err(fail(e));
        }
        fault::point("ckpt.after_rename");
        sync_dir(&self.dir).map_err(fail)?;
        fault::point("ckpt.after_dir_fsync");
        Ok(())
    }

    /// Deletes the checkpoints of `steps`; failures are logged, not fatal
    /// (the save they follow or precede is what matters).
    fn delete(&mut self, steps: &[u64]) {
        for &step in steps {
            let path = self.path_for(step);
            match fs::remove_file(&path) {
                Ok(()) => tracing::debug!(step, path = %path.display(), "old checkpoint removed"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(step, path = %path.display(), "cannot remove old checkpoint: {e}")
                }
            }
            self.scores.remove(&step);
        }
    }

    /// Newest checkpoint that verifies; corrupt ones are quarantined with a warning.
    pub fn load_newest_valid(&self) -> Result<Option<Checkpoint>, StoreError> {
        let mut found = self.list()?;
        while let Some((step, path)) = found.pop() {
            match load(&path, step) {
                Ok(ckpt) => return Ok(Some(ckpt)),
                Err(LoadFail::Gone) => continue,
                Err(LoadFail::Io(source)) => return Err(StoreError::Read { path, source }),
                Err(LoadFail::Corrupt(why)) => {
                    let moved = self.quarantine(&path, &why)?;
                    tracing::warn!(
                        path = %path.display(),
                        quarantined = %moved.display(),
                        "corrupt checkpoint moved to quarantine: {why}; falling back to the one before it"
                    );
                }
            }
        }
        Ok(None)
    }

    /// Moves a checkpoint into `quarantine/` (never deleted), with a
    /// `.reason` file beside it; returns where it went. Also for callers
    /// that find a verified checkpoint unusable (wrong model, ...).
    pub fn quarantine(&self, path: &Path, why: &str) -> Result<PathBuf, StoreError> {
        let fail = |source: io::Error| StoreError::Quarantine {
            path: path.to_path_buf(),
            source,
        };
        let qdir = self.quarantine_dir.clone();
        fs::create_dir_all(&qdir).map_err(fail)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "checkpoint".into());
        let mut dest = qdir.join(&name);
        let mut n = 1u32;
        while dest.exists() {
            dest = qdir.join(format!("{name}.{n}"));
            n += 1;
        }
        fs::rename(path, &dest).map_err(fail)?;
        let reason = PathBuf::from(format!("{}.reason", dest.display()));
        if let Err(e) = fs::write(&reason, format!("{why}\n")) {
            tracing::warn!(path = %reason.display(), "cannot write quarantine reason: {e}");
        }
        // Best effort: if the move is lost in a crash, the next load finds
        // the file corrupt again and moves it again.
        let _ = sync_dir(&qdir).and_then(|_| sync_dir(&self.dir));
        Ok(dest)
    }
}

#[cfg(test)]
mod tests;
