//! One checkpoint file: its format, and encoding, verifying and decoding it.
//! The directory that holds a trial's checkpoints is [`super::checkpoint`].
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

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, View};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

use super::StoreError;

/// First bytes of every checkpoint file.
pub const MAGIC: &[u8; 8] = b"TRNDCKPT";
/// The format this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Magic, version, header length.
const PREFIX_LEN: usize = 8 + 4 + 8;
pub(super) const DIGEST_LEN: usize = 32;
/// A header larger than this is corruption, not a real header.
const MAX_HEADER_LEN: u64 = 64 << 20;

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
pub(super) fn encode(
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
/// uses [`super::CheckpointDir::load_newest_valid`]).
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
pub(super) fn read_score(path: &Path) -> Option<f64> {
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
pub(super) enum LoadFail {
    /// Vanished between listing and reading.
    Gone,
    /// Reading failed for a reason that says nothing about the file.
    Io(io::Error),
    /// The file is bad: quarantine it.
    Corrupt(String),
}

pub(super) fn load(path: &Path, step: u64) -> Result<Checkpoint, LoadFail> {
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
