//! IDX files (the MNIST container format): read, gunzip, and check against the header.
//!
//! An IDX file is a magic word `00 00 TT RR` (`TT` the element type, `RR` the
//! rank), `RR` big-endian `u32` dimensions, then the elements in row-major
//! order. trainerd reads unsigned-byte files (`TT = 0x08`): images of rank 3
//! (count × rows × columns) and labels of rank 1.
//!
//! Nothing is allocated on a header's word before it is checked: the header
//! is read first (through gzip when the content is gzip), its dimensions give
//! the exact size of the data, and that size is held against the caller's
//! limit (the memory budget) and [`MAX_FILE_BYTES`] before any of it is read.
//! Exactly that many bytes are then read: a stream that ends early is
//! truncated, one that goes on is corrupt, and neither is read further than it
//! takes to say so. [`Stream`] also hands the data out in pieces, so
//! `predict` classifies a file of any length in flat memory. Whether a file is
//! gzip is told by its content (`1f 8b`), not its name, so a misnamed file
//! still reads.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::DataError;

mod header;
mod stream;

pub use stream::Stream;

/// The largest (decompressed) IDX file trainerd reads: well above any MNIST-style
/// data set (EMNIST ByClass is 0.6 GB), and a bound on what a gzip bomb can cost
/// whatever the memory budget.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// Element type byte of unsigned-byte IDX data, the only one trainerd reads.
pub const TYPE_U8: u8 = 0x08;

/// How a re-download is suggested in messages about damaged files.
const REFETCH: &str = "re-download it or mount a complete copy";

/// What an IDX header declares, checked: unsigned bytes, rank at least 1, no
/// zero dimension, and a size that fits in 64 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The dimensions, outermost (the record count) first.
    pub dims: Vec<usize>,
    /// The header's own bytes (magic and dimensions): fingerprints hash them too.
    pub bytes: Vec<u8>,
    /// Bytes of data the dimensions promise: their product.
    pub body_len: u64,
}

impl Header {
    /// `60000×28×28`.
    pub fn shape(&self) -> String {
        shape(&self.dims)
    }

    /// Header and data together: the decompressed file's length.
    pub fn file_len(&self) -> u64 {
        self.bytes.len() as u64 + self.body_len
    }
}

/// One parsed IDX file: its dimensions and its (decompressed) bytes.
#[derive(Debug)]
pub struct Idx {
    path: PathBuf,
    dims: Vec<usize>,
    bytes: Vec<u8>,
    header_len: usize,
}

impl Idx {
    /// The file this was read from (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dimensions from the header, checked against the data length.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The elements, row-major; exactly the product of [`Idx::dims`] bytes.
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.header_len..]
    }

    /// The whole decompressed file, header included (what fingerprints hash).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A rank-3 unsigned-byte IDX file: `count` images of `rows × cols` pixels.
#[derive(Debug)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub idx: Idx,
}

impl Images {
    /// All pixels, image after image, row-major.
    pub fn pixels(&self) -> &[u8] {
        self.idx.body()
    }
}

/// A rank-1 unsigned-byte IDX file: one class label per record.
#[derive(Debug)]
pub struct Labels {
    pub count: usize,
    pub idx: Idx,
}

impl Labels {
    /// The labels in record order.
    pub fn values(&self) -> &[u8] {
        self.idx.body()
    }
}

/// What rank-3 files hold, for messages.
pub const IMAGES_RANK: (usize, &str) = (3, "images: count × rows × columns");
/// What rank-1 files hold, for messages.
pub const LABELS_RANK: (usize, &str) = (1, "labels: one per record");

/// Reads an images file (rank 3), of at most [`MAX_FILE_BYTES`].
pub fn read_images(path: &Path) -> Result<Images, DataError> {
    images(read(path, MAX_FILE_BYTES)?)
}

/// Reads a labels file (rank 1), of at most [`MAX_FILE_BYTES`].
pub fn read_labels(path: &Path) -> Result<Labels, DataError> {
    labels(read(path, MAX_FILE_BYTES)?)
}

/// An IDX file read whole as images (rank 3).
pub fn images(idx: Idx) -> Result<Images, DataError> {
    match *idx.dims() {
        [count, rows, cols] => Ok(Images {
            count,
            rows,
            cols,
            idx,
        }),
        _ => Err(wrong_rank(idx.path(), idx.dims(), IMAGES_RANK)),
    }
}

/// An IDX file read whole as labels (rank 1).
pub fn labels(idx: Idx) -> Result<Labels, DataError> {
    match *idx.dims() {
        [count] => Ok(Labels { count, idx }),
        _ => Err(wrong_rank(idx.path(), idx.dims(), LABELS_RANK)),
    }
}

fn wrong_rank(path: &Path, dims: &[usize], (want, meaning): (usize, &str)) -> DataError {
    DataError::invalid(
        path,
        format!(
            "has {} dimension(s) ({}), expected {want} ({meaning}); is it the right file?",
            dims.len(),
            shape(dims),
        ),
    )
}

/// Reads and validates any unsigned-byte IDX file whose data is at most
/// `limit` bytes (refused, unread, when its header declares more).
pub fn read(path: &Path, limit: u64) -> Result<Idx, DataError> {
    open(path)?.read_all(limit)
}

/// [`read`] for a file's content already in memory (raw or gzip); `path`
/// only names it in messages.
pub fn parse(path: &Path, content: &[u8], limit: u64) -> Result<Idx, DataError> {
    Stream::new(path, content, Some(content.len() as u64))?.read_all(limit)
}

/// Reads just the header of `path` (decompressing only its first bytes).
pub fn peek(path: &Path) -> Result<Header, DataError> {
    Ok(open(path)?.header().clone())
}

/// The header and SHA-256 of the whole decompressed file (what
/// [`Idx::bytes`] hashes to), read in pieces: memory flat in the file's size.
pub fn digest(path: &Path, rank: (usize, &str)) -> Result<(Header, [u8; 32]), DataError> {
    let mut stream = open(path)?;
    stream.expect_rank(rank)?;
    stream.check_size(MAX_FILE_BYTES)?;
    let header = stream.header().clone();
    let mut hasher = Sha256::new();
    hasher.update(&header.bytes);
    let mut buf = vec![0u8; 1 << 16];
    let mut left = header.body_len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        stream.read_data(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    stream.finish()?;
    Ok((header, hasher.finalize().into()))
}

/// Opens `path` as an IDX file: a regular file (a directory or anything else
/// in its place is named as such), its header read and checked.
pub fn open(path: &Path) -> Result<Stream<'static>, DataError> {
    let read_err = |error| DataError::Read {
        path: path.to_path_buf(),
        error,
    };
    let file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file"
        };
        return Err(DataError::invalid(
            path,
            format!("is {what}, not an IDX file: put the data file itself at this path"),
        ));
    }
    Stream::new(
        path,
        BufReader::with_capacity(1 << 16, file),
        Some(meta.len()),
    )
}

/// The first label `>= num_classes` as (record index, label), if any.
pub fn first_out_of_range(labels: &[u8], num_classes: usize) -> Option<(usize, u8)> {
    labels
        .iter()
        .position(|&l| usize::from(l) >= num_classes)
        .map(|i| (i, labels[i]))
}

/// `60000×28×28`.
fn shape(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

fn corrupt_gzip(path: &Path, error: &io::Error) -> DataError {
    DataError::invalid(
        path,
        format!("is corrupt or truncated gzip ({error}); {REFETCH}"),
    )
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
pub fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests;
