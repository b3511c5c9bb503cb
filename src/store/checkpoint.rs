//! Checkpoint files and the directory of one trial's checkpoints: the file
//! format, the atomic commit, retention, and quarantine of corrupt files.
//!
//! # File format (version 1; integers little-endian)
//!
//! | bytes | content |
//! | ----- | ------- |
//! | 8     | magic `TRNDCKPT` |
//! | 4     | format version, `u32` |
//! | 8     | header length `n`, `u64` |
//! | `n`   | header JSON: `step`, `score`, tensor names in order, caller's `meta` |
//! | ...   | the tensors, safetensors encoding (raw bytes: bit-exact) |
//! | 32    | SHA-256 of every byte before it |
//!
//! The checksum is verified before anything else is trusted, on every load.
//!
//! # Commit protocol
//!
//! `ckpt-<step>.tch.tmp` is written and fsynced, renamed to `ckpt-<step>.tch`,
//! and the directory is fsynced. A crash at any point leaves either the old
//! set of checkpoints or the old set plus the new one; a leftover temp file
//! is removed by the next [`CheckpointDir::open`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

use super::policy::{self, Entry};
use super::{fault, StoreError};

/// First bytes of every checkpoint file.
pub const MAGIC: &[u8; 8] = b"TRNDCKPT";
/// The format this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Magic, version, header length.
const PREFIX_LEN: usize = 8 + 4 + 8;
const DIGEST_LEN: usize = 32;
/// A header larger than this is corruption, not a real header.
const MAX_HEADER_LEN: u64 = 64 << 20;
const NAME_PREFIX: &str = "ckpt-";
const NAME_SUFFIX: &str = ".tch";
const TMP_SUFFIX: &str = ".tmp";
/// Subdirectory where corrupt checkpoints are moved, by default beside them
/// (trainers put it outside the trial's folder, see [`CheckpointDir::quarantine_into`]).
pub const QUARANTINE_DIR: &str = "quarantine";

/// A verified checkpoint read back from disk.
#[derive(Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub step: u64,
    /// The score given when it was saved (validation accuracy, if known).
    pub score: Option<f64>,
    /// Caller-defined JSON (trial, epoch, position, spec, fingerprint, ...).
    pub meta: serde_json::Value,
    /// In the order they were saved, with their kind and shape.
    pub tensors: Vec<(String, Tensor)>,
}

/// The header as written.
#[derive(Serialize)]
struct HeaderOut<'a> {
    step: u64,
    score: Option<f64>,
    tensors: Vec<&'a str>,
    meta: &'a serde_json::Value,
}

/// The header as read back.
#[derive(Deserialize)]
struct HeaderIn {
    step: u64,
    score: Option<f64>,
    tensors: Vec<String>,
    meta: serde_json::Value,
}

/// Just the fields retention needs, read without verifying the file.
#[derive(Deserialize)]
struct HeaderScore {
    score: Option<f64>,
}

/// One tensor's bytes, copied off the device, ready for safetensors.
struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        _ => return None,
    })
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

fn raw(name: &str, t: &Tensor) -> Result<RawTensor, String> {
    let kind = t.f_kind().map_err(|e| format!("tensor {name}: {e}"))?;
    let dtype =
        dtype_of(kind).ok_or_else(|| format!("tensor {name}: kind {kind:?} not supported"))?;
    let shape = t
        .size()
        .iter()
        .map(|d| usize::try_from(*d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| format!("tensor {name}: bad shape {:?}", t.size()))?;
    let numel: usize = shape.iter().product();
    let mut bytes = vec![0u8; numel * kind.elt_size_in_bytes()];
    if numel > 0 {
        // Copies through a contiguous CPU view: plain memcpy, so NaN
        // payloads and signed zeros survive.
        t.detach()
            .f_copy_data_u8(&mut bytes, numel)
            .map_err(|e| format!("tensor {name}: {e}"))?;
    }
    Ok(RawTensor {
        dtype,
        shape,
        bytes,
    })
}

/// Serialises one checkpoint into the bytes of a file.
fn encode(
    step: u64,
    score: Option<f64>,
    meta: &serde_json::Value,
    tensors: &[(String, Tensor)],
) -> Result<Vec<u8>, String> {
    let mut raws: HashMap<&str, RawTensor> = HashMap::with_capacity(tensors.len());
    for (name, t) in tensors {
        if raws.insert(name.as_str(), raw(name, t)?).is_some() {
            return Err(format!("tensor name {name:?} appears twice"));
        }
    }
    let body = safetensors::tensor::serialize(raws.iter().map(|(n, r)| (*n, r)), &None)
        .map_err(|e| format!("safetensors: {e:?}"))?;
    let header = HeaderOut {
        step,
        score: score.filter(|s| s.is_finite()),
        tensors: tensors.iter().map(|(n, _)| n.as_str()).collect(),
        meta,
    };
    let header = serde_json::to_vec(&header).map_err(|e| format!("meta: {e}"))?;
    let mut out = Vec::with_capacity(PREFIX_LEN + header.len() + body.len() + DIGEST_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&body);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(out)
}

fn check_prefix(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < PREFIX_LEN {
        return Err(format!("too short ({} bytes)", bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err("not a trainerd checkpoint (bad magic)".into());
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(version);
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}, this build reads {FORMAT_VERSION}"
        ));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[12..PREFIX_LEN]);
    Ok(u64::from_le_bytes(n))
}

/// Verifies and decodes a file's bytes; `Err` says what is wrong with it.
fn decode(
    bytes: &[u8],
    expected_step: Option<u64>,
) -> Result<(HeaderIn, Vec<(String, Tensor)>), String> {
    if bytes.len() < PREFIX_LEN + DIGEST_LEN {
        return Err(format!("truncated: {} bytes", bytes.len()));
    }
    let header_len = check_prefix(bytes)?;
    let (content, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
    if Sha256::digest(content).as_slice() != digest {
        return Err(format!(
            "checksum mismatch ({} bytes; truncated or damaged)",
            bytes.len()
        ));
    }
    let header_end = usize::try_from(header_len)
        .ok()
        .and_then(|n| n.checked_add(PREFIX_LEN))
        .filter(|end| *end <= content.len())
        .ok_or_else(|| format!("header length {header_len} past the end"))?;
    let header: HeaderIn = serde_json::from_slice(&content[PREFIX_LEN..header_end])
        .map_err(|e| format!("header: {e}"))?;
    if let Some(step) = expected_step {
        if header.step != step {
            return Err(format!(
                "holds step {} but is named for step {step}",
                header.step
            ));
        }
    }
    let st =
        SafeTensors::deserialize(&content[header_end..]).map_err(|e| format!("tensors: {e:?}"))?;
    if st.len() != header.tensors.len() {
        return Err(format!(
            "{} tensors, header lists {}",
            st.len(),
            header.tensors.len()
        ));
    }
    let mut tensors = Vec::with_capacity(header.tensors.len());
    for name in &header.tensors {
        let view = st
            .tensor(name)
            .map_err(|e| format!("tensor {name}: {e:?}"))?;
        let kind = kind_of(view.dtype())
            .ok_or_else(|| format!("tensor {name}: dtype {:?} not supported", view.dtype()))?;
        let shape: Vec<i64> = view.shape().iter().map(|d| *d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| format!("tensor {name}: {e}"))?;
        tensors.push((name.clone(), t));
    }
    Ok((header, tensors))
}

/// Reads and verifies one checkpoint file (for tools; a directory's loader
/// uses [`CheckpointDir::load_newest_valid`]).
pub fn read_file(path: &Path) -> Result<Checkpoint, StoreError> {
    let bytes = fs::read(path).map_err(|source| StoreError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (header, tensors) = decode(&bytes, None).map_err(|why| StoreError::Corrupt {
        path: path.to_path_buf(),
        why,
    })?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        step: header.step,
        score: header.score,
        meta: header.meta,
        tensors,
    })
}

/// Reads only the score from a file's header, unverified (for retention).
fn read_score(path: &Path) -> Option<f64> {
    let mut file = File::open(path).ok()?;
    let mut prefix = [0u8; PREFIX_LEN];
    file.read_exact(&mut prefix).ok()?;
    let n = check_prefix(&prefix)
        .ok()
        .filter(|n| *n <= MAX_HEADER_LEN)?;
    let mut header = vec![0u8; usize::try_from(n).ok()?];
    file.read_exact(&mut header).ok()?;
    serde_json::from_slice::<HeaderScore>(&header).ok()?.score
}

/// Why one file could not be loaded.
enum LoadFail {
    /// Vanished between listing and reading.
    Gone,
    /// Reading failed for a reason that says nothing about the file.
    Io(io::Error),
    /// The file is bad: quarantine it.
    Corrupt(String),
}

fn load(path: &Path, step: u64) -> Result<Checkpoint, LoadFail> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LoadFail::Gone),
        // EIO is the medium failing under this file: treat it as corrupt so
        // that a restart can use the one before instead of failing forever.
        Err(e) if e.raw_os_error() == Some(libc::EIO) => {
            return Err(LoadFail::Corrupt(format!("read error: {e}")))
        }
        Err(e) => return Err(LoadFail::Io(e)),
    };
    let (header, tensors) = decode(&bytes, Some(step)).map_err(LoadFail::Corrupt)?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        step,
        score: header.score,
        meta: header.meta,
        tensors,
    })
}

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

/// The tensor saved under `key`, if it has the shape and dtype of `like`
/// (the live tensor it will be copied into); `what` names it in the error.
pub fn saved_like<'a>(
    saved: &'a HashMap<String, Tensor>,
    key: &str,
    like: &Tensor,
    what: &str,
) -> Result<&'a Tensor, String> {
    let src = saved.get(key).ok_or_else(|| format!("{what} missing"))?;
    if src.size() != like.size() || src.kind() != like.kind() {
        return Err(format!(
            "{what} has shape {:?} ({:?}), expected {:?} ({:?})",
            src.size(),
            src.kind(),
            like.size(),
            like.kind()
        ));
    }
    Ok(src)
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
#[path = "checkpoint_tests.rs"]
mod tests;
