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
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};

use super::DataError;

/// The largest (decompressed) IDX file trainerd reads: well above any MNIST-style
/// data set (EMNIST ByClass is 0.6 GB), and a bound on what a gzip bomb can cost
/// whatever the memory budget.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// Element type byte of unsigned-byte IDX data, the only one trainerd reads.
pub const TYPE_U8: u8 = 0x08;

/// How a re-download is suggested in messages about damaged files.
const REFETCH: &str = "re-download it or mount a complete copy";

/// Bytes past the declared end that are counted for a message; beyond this
/// it says "more than" instead of decompressing a bomb to the end.
const TRAILING_COUNT_CAP: u64 = 16 << 20;

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
    Ok(open(path)?.header)
}

/// The header and SHA-256 of the whole decompressed file (what
/// [`Idx::bytes`] hashes to), read in pieces: memory flat in the file's size.
pub fn digest(path: &Path, rank: (usize, &str)) -> Result<(Header, [u8; 32]), DataError> {
    let mut stream = open(path)?;
    stream.expect_rank(rank)?;
    stream.check_size(MAX_FILE_BYTES)?;
    let mut hasher = Sha256::new();
    hasher.update(&stream.header.bytes);
    let mut buf = vec![0u8; 1 << 16];
    let mut left = stream.header.body_len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        stream.read_data(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    let header = stream.header.clone();
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

/// An IDX file being read: its header checked, its data next.
pub struct Stream<'a> {
    /// Names the file in messages.
    path: PathBuf,
    /// What the file declares; every read is held to it.
    header: Header,
    /// The content after the header, decompressed when it is gzip.
    reader: Box<dyn Read + 'a>,
    /// Reader errors then mean a damaged stream, not an I/O failure.
    gzip: bool,
    /// Length of the content as stored, when known: for an uncompressed file
    /// it tells what follows the data without reading it.
    stored_len: Option<u64>,
    /// Data bytes read so far.
    consumed: u64,
}

impl<'a> Stream<'a> {
    /// Starts reading IDX content (raw or gzip) from `source`, whose stored
    /// length is `stored_len` when known; `path` names it in messages.
    pub fn new(
        path: &Path,
        mut source: impl BufRead + 'a,
        stored_len: Option<u64>,
    ) -> Result<Self, DataError> {
        let gzip = source
            .fill_buf()
            .map_err(|error| DataError::Read {
                path: path.to_path_buf(),
                error,
            })?
            .starts_with(&[0x1f, 0x8b]);
        let mut reader: Box<dyn Read + 'a> = if gzip {
            Box::new(MultiGzDecoder::new(source))
        } else {
            Box::new(source)
        };
        let header = read_header(path, &mut reader, gzip)?;
        Ok(Stream {
            path: path.to_path_buf(),
            header,
            reader,
            gzip,
            stored_len,
            consumed: 0,
        })
    }

    /// The checked header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fails unless the header has rank `want` (what the file must hold: `meaning`).
    pub fn expect_rank(&self, (want, meaning): (usize, &str)) -> Result<(), DataError> {
        if self.header.dims.len() == want {
            return Ok(());
        }
        Err(wrong_rank(&self.path, &self.header.dims, (want, meaning)))
    }

    /// Refuses data larger than `limit` (or [`MAX_FILE_BYTES`]) before any is read.
    pub fn check_size(&self, limit: u64) -> Result<(), DataError> {
        let h = &self.header;
        if h.file_len() > MAX_FILE_BYTES {
            return Err(DataError::invalid(
                &self.path,
                format!(
                    "declares {} = {} bytes of data, more than the {} GiB (decompressed) \
                     trainerd reads; is it the right file?",
                    h.shape(),
                    h.body_len,
                    MAX_FILE_BYTES >> 30
                ),
            ));
        }
        if h.body_len > limit {
            return Err(DataError::invalid(
                &self.path,
                format!(
                    "declares {} = {} of data, more than {}; is it the right file?",
                    h.shape(),
                    super::budget::human(h.body_len),
                    super::budget::describe(limit)
                ),
            ));
        }
        Ok(())
    }

    /// Fills `buf` with the next data bytes; the data ending first is an
    /// error (truncated), as is reading past the declared end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<(), DataError> {
        let left = self.header.body_len - self.consumed;
        if buf.len() as u64 > left {
            return Err(DataError::invalid(
                &self.path,
                format!(
                    "holds {} data bytes ({}); {} more were asked for",
                    self.header.body_len,
                    self.header.shape(),
                    buf.len() as u64 - left
                ),
            ));
        }
        let n = read_up_to(&mut self.reader, buf).map_err(|e| self.stream_err(e))?;
        self.consumed += n as u64;
        if n < buf.len() {
            return Err(self.truncated(self.consumed));
        }
        Ok(())
    }

    /// Reads all the data, after checking its size against `limit` (see
    /// [`Stream::check_size`]), and checks that the file ends there.
    pub fn read_all(mut self, limit: u64) -> Result<Idx, DataError> {
        self.check_size(limit)?;
        let header_len = self.header.bytes.len();
        // The one allocation: exactly what the checked header declares.
        let mut bytes = vec![0u8; header_len + self.header.body_len as usize];
        bytes[..header_len].copy_from_slice(&self.header.bytes);
        self.read_data(&mut bytes[header_len..])?;
        let (path, dims) = (self.path.clone(), self.header.dims.clone());
        self.finish()?;
        Ok(Idx {
            path,
            dims,
            bytes,
            header_len,
        })
    }

    /// Checks the rest of the file without keeping it: the data the header
    /// promises is all there (skipped unread in an uncompressed file) and
    /// nothing follows it; for gzip, that the checksums hold.
    pub fn finish(mut self) -> Result<(), DataError> {
        let header_len = self.header.bytes.len() as u64;
        let body_len = self.header.body_len;
        if let (false, Some(stored)) = (self.gzip, self.stored_len) {
            let on_disk = stored.saturating_sub(header_len);
            if on_disk < body_len {
                return Err(self.truncated(on_disk));
            }
            return match on_disk - body_len {
                0 => Ok(()),
                extra => Err(self.trailing(format!("{extra} byte(s)"))),
            };
        }
        let left = body_len - self.consumed;
        let skipped = io::copy(&mut (&mut self.reader).take(left), &mut io::sink())
            .map_err(|e| self.stream_err(e))?;
        self.consumed += skipped;
        if self.consumed < body_len {
            return Err(self.truncated(self.consumed));
        }
        let extra = io::copy(
            &mut (&mut self.reader).take(TRAILING_COUNT_CAP + 1),
            &mut io::sink(),
        )
        .map_err(|e| self.stream_err(e))?;
        match extra {
            0 => Ok(()),
            n if n > TRAILING_COUNT_CAP => Err(self.trailing(format!(
                "more than {}",
                super::budget::human(TRAILING_COUNT_CAP)
            ))),
            n => Err(self.trailing(format!("{n} byte(s)"))),
        }
    }

    fn stream_err(&self, error: io::Error) -> DataError {
        if self.gzip {
            corrupt_gzip(&self.path, &error)
        } else {
            DataError::Read {
                path: self.path.clone(),
                error,
            }
        }
    }

    fn truncated(&self, actual: u64) -> DataError {
        DataError::invalid(
            &self.path,
            format!(
                "is truncated: its header promises {} = {} bytes of data, the file holds \
                 {actual}; {REFETCH}",
                self.header.shape(),
                self.header.body_len
            ),
        )
    }

    fn trailing(&self, extra: String) -> DataError {
        DataError::invalid(
            &self.path,
            format!(
                "has {extra} after the {} data bytes its header ({}) describes: the file is \
                 corrupt or its header is wrong; {REFETCH}",
                self.header.body_len,
                self.header.shape()
            ),
        )
    }
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

/// Reads and checks the magic word and dimensions.
fn read_header(path: &Path, r: &mut dyn Read, gzip: bool) -> Result<Header, DataError> {
    let bad = |what: String| DataError::invalid(path, what);
    let io_err = |error: io::Error| {
        if gzip {
            corrupt_gzip(path, &error)
        } else {
            DataError::Read {
                path: path.to_path_buf(),
                error,
            }
        }
    };
    let mut magic = [0u8; 4];
    let n = read_up_to(r, &mut magic).map_err(io_err)?;
    let rank = rank_of_magic(&magic, n).map_err(bad)?;
    let header_len = 4 + 4 * rank;
    let mut bytes = vec![0u8; header_len];
    bytes[..4].copy_from_slice(&magic);
    let n = read_up_to(r, &mut bytes[4..]).map_err(io_err)?;
    if n < 4 * rank {
        return Err(bad(format!(
            "is truncated in its header: rank {rank} needs {header_len} header bytes, the file \
             has {}; {REFETCH}",
            4 + n
        )));
    }
    let dims: Vec<usize> = bytes[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let body_len = body_len_of(&dims).map_err(bad)?;
    Ok(Header {
        dims,
        bytes,
        body_len,
    })
}

/// The rank a magic word declares (`n` of its 4 bytes were read), or what is
/// wrong with it.
fn rank_of_magic(magic: &[u8; 4], n: usize) -> Result<usize, String> {
    if n == 0 {
        return Err(format!("is empty (0 bytes); {REFETCH}"));
    }
    if n < 4 {
        return Err(format!(
            "is truncated: {n} byte(s), shorter than the 4-byte IDX magic; {REFETCH}"
        ));
    }
    if magic[0] != 0 || magic[1] != 0 {
        let looks_text = magic.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
        let hint = if looks_text {
            " (it looks like text, e.g. an error page saved by a failed download)"
        } else {
            ""
        };
        return Err(format!(
            "is not an IDX file: it starts with {}, an IDX file starts with 00 00 <type> <rank>{hint}; \
             is it the right file?",
            hex_bytes(magic)
        ));
    }
    let (dtype, rank) = (magic[2], usize::from(magic[3]));
    if dtype != TYPE_U8 {
        return Err(format!(
            "holds IDX elements of type 0x{dtype:02X} ({}); trainerd reads unsigned-byte (0x08) \
             IDX files only: convert the data to 8-bit pixels and labels",
            type_name(dtype)
        ));
    }
    if rank == 0 {
        return Err("declares rank 0 (no dimensions): the header is corrupt".into());
    }
    Ok(rank)
}

/// The number of data bytes `dims` declare, or what is wrong with them.
fn body_len_of(dims: &[usize]) -> Result<u64, String> {
    if dims.first() == Some(&0) {
        return Err(format!(
            "holds no records (its header says {}); a data set needs at least one",
            shape(dims)
        ));
    }
    if dims.contains(&0) {
        return Err(format!(
            "declares a zero dimension ({}): the header is corrupt",
            shape(dims)
        ));
    }
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or_else(|| {
            format!(
                "declares dimensions {} whose product overflows: the header is corrupt",
                shape(dims)
            )
        })
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

fn hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn type_name(t: u8) -> &'static str {
    match t {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "int16",
        0x0C => "int32",
        0x0D => "float32",
        0x0E => "float64",
        _ => "not an IDX type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::{idx_bytes, write_idx};
    use std::io::Write;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// Writes raw bytes and parses them as an images file; returns the error text.
    fn images_err(bytes: &[u8]) -> String {
        let d = tmp();
        let p = d.path().join("train-images-idx3-ubyte");
        std::fs::write(&p, bytes).unwrap();
        let e = read_images(&p).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(&p.display().to_string()), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
        msg
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn reads_raw_and_gzip_alike() {
        let d = tmp();
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        for gz in [false, true] {
            let p = d.path().join(format!("img{gz}"));
            write_idx(&p, &[2, 3, 4], &pixels, gz).unwrap();
            let im = read_images(&p).unwrap();
            assert_eq!((im.count, im.rows, im.cols), (2, 3, 4));
            assert_eq!(im.pixels(), &pixels[..]);
            assert_eq!(im.idx.bytes(), &idx_bytes(&[2, 3, 4], &pixels)[..]);
        }
    }

    #[test]
    fn gzip_is_detected_by_content_not_name() {
        let d = tmp();
        let p = d.path().join("labels-without-gz-suffix");
        std::fs::write(&p, gzip(&idx_bytes(&[3], &[1, 2, 3]))).unwrap();
        assert_eq!(read_labels(&p).unwrap().values(), &[1, 2, 3]);
        let q = d.path().join("raw-labels.gz");
        std::fs::write(&q, idx_bytes(&[3], &[4, 5, 6])).unwrap();
        assert_eq!(read_labels(&q).unwrap().values(), &[4, 5, 6]);
    }

    #[test]
    fn concatenated_gzip_members_are_read_whole() {
        let whole = idx_bytes(&[4], &[1, 2, 3, 4]);
        let mut two = gzip(&whole[..6]);
        two.extend(gzip(&whole[6..]));
        let d = tmp();
        let p = d.path().join("l.gz");
        std::fs::write(&p, two).unwrap();
        assert_eq!(read_labels(&p).unwrap().values(), &[1, 2, 3, 4]);
    }

    #[test]
    fn empty_file() {
        assert!(images_err(&[]).contains("is empty"));
    }

    #[test]
    fn missing_file() {
        let d = tmp();
        let p = d.path().join("nope");
        let e = read_images(&p).unwrap_err();
        assert!(matches!(e, DataError::Read { .. }));
        assert!(e.to_string().contains("nope"));
    }

    #[test]
    fn shorter_than_magic() {
        assert!(images_err(&[0, 0]).contains("shorter than the 4-byte IDX magic"));
    }

    #[test]
    fn bad_magic() {
        let mut b = idx_bytes(&[1, 2, 2], &[0; 4]);
        b[0] = 0x12;
        assert!(images_err(&b).contains("is not an IDX file: it starts with 12 00 08 03"));
    }

    #[test]
    fn html_page_instead_of_data() {
        let msg = images_err(b"<!DOCTYPE html><html>Not Found</html>");
        assert!(msg.contains("looks like text"), "{msg}");
    }

    #[test]
    fn wrong_dtype() {
        for (t, name) in [(0x0D, "float32"), (0x0C, "int32"), (0x09, "signed byte")] {
            let mut b = idx_bytes(&[1, 1, 1], &[0; 4]);
            b[2] = t;
            let msg = images_err(&b);
            assert!(msg.contains(&format!("type 0x{t:02X} ({name})")), "{msg}");
        }
        let mut b = idx_bytes(&[1, 1, 1], &[0]);
        b[2] = 0x42;
        assert!(images_err(&b).contains("not an IDX type"));
    }

    #[test]
    fn wrong_rank() {
        // A labels file where images are expected, and a 2-D "images" file.
        let msg = images_err(&idx_bytes(&[3], &[1, 2, 3]));
        assert!(msg.contains("has 1 dimension(s) (3), expected 3"), "{msg}");
        let msg = images_err(&idx_bytes(&[2, 4], &[0; 8]));
        assert!(
            msg.contains("has 2 dimension(s) (2×4), expected 3"),
            "{msg}"
        );
        let d = tmp();
        let p = d.path().join("l");
        write_idx(&p, &[1, 2, 2], &[0; 4], false).unwrap();
        let msg = read_labels(&p).unwrap_err().to_string();
        assert!(msg.contains("expected 1 (labels"), "{msg}");
    }

    #[test]
    fn rank_zero() {
        assert!(images_err(&[0, 0, 8, 0]).contains("rank 0"));
    }

    #[test]
    fn truncated_header() {
        let b = idx_bytes(&[10, 28, 28], &[0; 7840]);
        let msg = images_err(&b[..9]);
        assert!(msg.contains("truncated in its header"), "{msg}");
        assert!(msg.contains("re-download"), "{msg}");
    }

    #[test]
    fn truncated_body() {
        let b = idx_bytes(&[10, 28, 28], &[0; 7840]);
        let msg = images_err(&b[..b.len() - 1]);
        assert!(
            msg.contains("is truncated: its header promises 10×28×28 = 7840 bytes of data, the file holds 7839"),
            "{msg}"
        );
    }

    #[test]
    fn trailing_bytes() {
        let mut b = idx_bytes(&[2, 2, 2], &[0; 8]);
        b.extend([1, 2, 3]);
        let msg = images_err(&b);
        assert!(msg.contains("has 3 byte(s) after the 8"), "{msg}");
    }

    #[test]
    fn zero_records_and_zero_dimension() {
        let msg = images_err(&idx_bytes(&[0, 28, 28], &[]));
        assert!(msg.contains("holds no records"), "{msg}");
        let msg = images_err(&idx_bytes(&[5, 0, 28], &[]));
        assert!(msg.contains("zero dimension (5×0×28)"), "{msg}");
    }

    #[test]
    fn lying_header_with_huge_dims_allocates_nothing() {
        // 4e9 × 4e9 × 4e9 overflows u64; 4e9 × 65536 × 1 does not but is far beyond the body.
        let huge = u32::MAX as usize;
        let msg = images_err(&idx_bytes(&[huge, huge, huge], &[0; 16]));
        assert!(msg.contains("overflows"), "{msg}");
        let msg = images_err(&idx_bytes(&[huge, 65536, 1], &[0; 16]));
        assert!(msg.contains("more than the 2 GiB"), "{msg}");
        // Under the file cap but over the caller's limit: refused before reading.
        let d = tmp();
        let p = d.path().join("i");
        std::fs::write(&p, idx_bytes(&[1000, 28, 28], &[0; 16])).unwrap();
        let msg = read(&p, 1 << 10).unwrap_err().to_string();
        assert!(msg.contains("1000×28×28 = 766 KiB of data"), "{msg}");
        assert!(msg.contains("memory budget of 1.0 KiB"), "{msg}");
    }

    #[test]
    fn corrupt_gzip() {
        // A damaged checksum is found once the data is read.
        let mut gz = gzip(&idx_bytes(&[4, 2, 2], &[7; 16]));
        let crc = gz.len() - 8;
        gz[crc] ^= 0xFF;
        let msg = images_err(&gz);
        assert!(msg.contains("is corrupt or truncated gzip"), "{msg}");
        // Damage inside the deflate stream may decode to any header first,
        // but is always an error naming the file (images_err checks that).
        let mut gz = gzip(&idx_bytes(&[4, 2, 2], &[7; 16]));
        let mid = gz.len() / 2;
        gz[mid] ^= 0xFF;
        gz[mid + 1] ^= 0x55;
        images_err(&gz);
    }

    #[test]
    fn truncated_gzip() {
        let gz = gzip(&idx_bytes(&[4, 2, 2], &[7; 16]));
        let msg = images_err(&gz[..gz.len() - 6]);
        assert!(msg.contains("is corrupt or truncated gzip"), "{msg}");
    }

    #[test]
    fn gzip_with_trailing_garbage() {
        let mut gz = gzip(&idx_bytes(&[1, 2, 2], &[7; 4]));
        gz.extend(b"garbage!");
        assert!(images_err(&gz).contains("is corrupt or truncated gzip"));
    }

    #[test]
    fn gzip_with_forged_size_trailer() {
        // The trailer's size field is only a hint; a forged one must neither
        // allocate 4 GiB nor pass the CRC/length check.
        let mut gz = gzip(&idx_bytes(&[1, 2, 2], &[7; 4]));
        let n = gz.len();
        gz[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(images_err(&gz).contains("is corrupt or truncated gzip"));
    }

    #[test]
    fn gzip_content_longer_or_shorter_than_its_header_is_named() {
        let mut body = idx_bytes(&[2, 2, 2], &[1; 8]);
        body.extend([9; 5]);
        let msg = images_err(&gzip(&body));
        assert!(msg.contains("has 5 byte(s) after the 8"), "{msg}");
        let body = idx_bytes(&[3, 2, 2], &[1; 8]);
        let msg = images_err(&gzip(&body));
        assert!(
            msg.contains("promises 3×2×2 = 12 bytes of data, the file holds 8"),
            "{msg}"
        );
        // A bomb after the data is not decompressed to its end to be counted.
        let mut body = idx_bytes(&[1, 1, 1], &[1]);
        body.extend(vec![0; (TRAILING_COUNT_CAP + 10) as usize]);
        let msg = images_err(&gzip(&body));
        assert!(
            msg.contains("has more than 16.0 MiB after the 1 data bytes"),
            "{msg}"
        );
    }

    #[test]
    fn a_stream_hands_out_data_in_pieces_and_checks_the_end() {
        let pixels: Vec<u8> = (0..60).collect();
        let content = gzip(&idx_bytes(&[5, 3, 4], &pixels));
        let mut s = Stream::new(Path::new("f"), &content[..], None).unwrap();
        assert_eq!(s.header().dims, [5, 3, 4]);
        let mut got = vec![0u8; 24];
        s.read_data(&mut got).unwrap();
        assert_eq!(got, pixels[..24]);
        s.read_data(&mut got[..12]).unwrap();
        assert_eq!(got[..12], pixels[24..36]);
        assert!(
            s.read_data(&mut [0u8; 25]).is_err(),
            "past the declared end"
        );
        s.finish().unwrap();
        // finish() on a fresh stream skips the data and still checks the end.
        let mut short = idx_bytes(&[5, 3, 4], &pixels);
        short.pop();
        let e = Stream::new(Path::new("f"), &short[..], Some(short.len() as u64))
            .unwrap()
            .finish()
            .unwrap_err();
        assert!(e.to_string().contains("the file holds 59"), "{e}");
    }

    #[test]
    fn digest_hashes_the_decompressed_file_in_pieces() {
        let d = tmp();
        let p = d.path().join("l.gz");
        let bytes = idx_bytes(&[70_000], &vec![3; 70_000]);
        std::fs::write(&p, gzip(&bytes)).unwrap();
        let (h, sha) = digest(&p, LABELS_RANK).unwrap();
        assert_eq!(h.dims, [70_000]);
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&bytes)));
        let e = digest(&p, IMAGES_RANK).unwrap_err();
        assert!(e.to_string().contains("expected 3"), "{e}");
    }

    #[test]
    fn a_directory_is_not_an_idx_file() {
        let d = tmp();
        let e = read_images(d.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory, not an IDX file"), "{e}");
    }

    #[test]
    fn out_of_range_labels_are_found() {
        assert_eq!(first_out_of_range(&[0, 1, 9, 3], 10), None);
        assert_eq!(first_out_of_range(&[0, 1, 10, 12], 10), Some((2, 10)));
    }
}
