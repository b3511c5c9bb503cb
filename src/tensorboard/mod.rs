//! TensorBoard event files of a trial's scalars, under
//! `tensorboard/<study>/<trial>/` of the state dir: TFRecord framing
//! (`record.rs`) of `Event` protobufs (`event.rs`), one `write` per record
//! so a SIGKILL loses at most the record in flight, fsynced at epoch ends.
//! A resumed trial first cuts what its checkpoint does not cover
//! (`scan.rs`), then appends. Writing is best effort: the first I/O error
//! is logged once and the trial trains on without TensorBoard files.

mod event;
mod record;
mod scan;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

pub use event::{Event, Summary, Value, What, FILE_VERSION};
pub use record::{frame, masked_crc, read_next, Next};
pub use scan::{cut_after, event_files, Kept, MAX_RECORD};

/// How every event file's name starts, as TensorBoard looks for it.
pub const FILE_PREFIX: &str = "events.out.tfevents.";

/// Most bytes of a trial's event files read back on resume (a trial's
/// scalars take a few kilobytes per thousand epochs).
pub const MAX_SCAN_BYTES: u64 = 64 << 20;

/// Why a trial's TensorBoard files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TensorBoardError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> TensorBoardError + '_ {
    move |source| TensorBoardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The open event file of one trial, and the newest step on file per tag.
struct Open {
    path: PathBuf,
    file: File,
    last_step: HashMap<String, i64>,
}

/// One trial's scalar writer; off (writes nothing) when disabled or after
/// its first I/O error.
pub struct Scalars {
    open: Option<Open>,
    trial: u32,
}

impl Scalars {
    /// Writes nothing.
    pub fn off(trial: u32) -> Scalars {
        Scalars { open: None, trial }
    }

    /// Opens `dir` for a trial resuming at `resume_step` (0: from the
    /// start): cuts what lies after that step, then appends to the newest
    /// file (or a new one). An error is logged and leaves the writer off.
    pub fn open(dir: &Path, trial: u32, resume_step: u64) -> Scalars {
        match open_dir(dir, resume_step) {
            Ok(open) => Scalars {
                open: Some(open),
                trial,
            },
            Err(e) => {
                warn_off(trial, &e);
                Scalars::off(trial)
            }
        }
    }

    /// Whether the writer still writes.
    pub fn is_on(&self) -> bool {
        self.open.is_some()
    }

    /// Appends `tag = value` at `step`, unless the file has that tag at
    /// this step or a later one already.
    pub fn scalar(&mut self, tag: &str, step: u64, value: f64) {
        let Some(open) = &mut self.open else { return };
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        if open.last_step.get(tag).is_some_and(|&at| at >= step) {
            return;
        }
        let event = Event::scalar(now_secs(), step, tag, value as f32);
        match append(open, &event) {
            Ok(()) => {
                open.last_step.insert(tag.to_string(), step);
            }
            Err(e) => self.fail(&e),
        }
    }

    /// Makes what is written durable (epoch ends, checkpoints, the end).
    pub fn sync(&mut self) {
        let Some(open) = &self.open else { return };
        if let Err(e) = open.file.sync_data().map_err(io_at(&open.path)) {
            self.fail(&e);
        }
    }

    fn fail(&mut self, e: &TensorBoardError) {
        warn_off(self.trial, e);
        self.open = None;
    }
}

fn warn_off(trial: u32, e: &TensorBoardError) {
    tracing::warn!(
        trial,
        "TensorBoard files are not written for this trial from here on (training goes on): {e}"
    );
}

/// Cuts `dir`'s files after `resume_step` and opens the newest for appending.
fn open_dir(dir: &Path, resume_step: u64) -> Result<Open, TensorBoardError> {
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let files = event_files(dir).map_err(io_at(dir))?;
    let resume = i64::try_from(resume_step).unwrap_or(i64::MAX);
    let kept = cut_after(&files, resume, MAX_SCAN_BYTES).map_err(io_at(dir))?;
    if kept.cut > 0 {
        tracing::info!(
            dir = %dir.display(),
            bytes = kept.cut,
            resume_step,
            "TensorBoard: cut events written after the checkpoint resumed from"
        );
    }
    let newest = files
        .last()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0));
    if let Some(path) = newest {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_at(path))?;
        return Ok(Open {
            path: path.clone(),
            file,
            last_step: kept.last_step,
        });
    }
    let path = dir.join(file_name());
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_at(&path))?;
    let mut open = Open {
        path,
        file,
        last_step: kept.last_step,
    };
    append(&mut open, &Event::header(now_secs()))?;
    open.file.sync_all().map_err(io_at(&open.path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))?;
    Ok(open)
}

/// One record in one `write`: a crash leaves it whole or torn at the end.
fn append(open: &mut Open, event: &Event) -> Result<(), TensorBoardError> {
    let bytes = frame(&event.encode_to_vec());
    open.file.write_all(&bytes).map_err(io_at(&open.path))
}

/// `events.out.tfevents.<unix secs>.<hostname>.<pid>.<n>`, as TensorFlow's writers name them.
fn file_name() -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let secs = now_secs() as u64;
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    format!(
        "{FILE_PREFIX}{secs:010}.{}.{}.{n}",
        hostname(),
        std::process::id()
    )
}

/// This host's name, limited to characters that keep the file name plain.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name: String = String::from_utf8_lossy(&buf[..end])
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .collect();
    if rc != 0 || name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests;
