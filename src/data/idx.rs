//! IDX files (the MNIST container format): read, gunzip, and check against the header.
//!
//! An IDX file is a magic word `00 00 TT RR` (`TT` the element type, `RR` the
//! rank), `RR` big-endian `u32` dimensions, then the elements in row-major
//! order. trainerd reads unsigned-byte files (`TT = 0x08`): images of rank 3
//! (count × rows × columns) and labels of rank 1.
//!
//! Nothing is allocated on a header's word: the whole file is read first
//! (under [`MAX_FILE_BYTES`], gzip or not), and the header is then checked
//! against the bytes that are actually there. Whether a file is gzip is told
//! by its content (`1f 8b`), not its name, so a misnamed file still reads.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::DataError;

/// The largest (decompressed) IDX file trainerd reads: well above any MNIST-style
/// data set (EMNIST ByClass is 0.6 GB), and a bound on what a gzip bomb can cost.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// Element type byte of unsigned-byte IDX data, the only one trainerd reads.
pub const TYPE_U8: u8 = 0x08;

/// How a re-download is suggested in messages about damaged files.
const REFETCH: &str = "re-download it or mount a complete copy";

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

/// Reads an images file (rank 3).
pub fn read_images(path: &Path) -> Result<Images, DataError> {
    let idx = read(path)?;
    match *idx.dims() {
        [count, rows, cols] => Ok(Images {
            count,
            rows,
            cols,
            idx,
        }),
        _ => Err(wrong_rank(&idx, 3, "images: count × rows × columns")),
    }
}

/// Reads a labels file (rank 1).
pub fn read_labels(path: &Path) -> Result<Labels, DataError> {
    let idx = read(path)?;
    match *idx.dims() {
        [count] => Ok(Labels { count, idx }),
        _ => Err(wrong_rank(&idx, 1, "labels: one per record")),
    }
}

fn wrong_rank(idx: &Idx, want: usize, meaning: &str) -> DataError {
    DataError::invalid(
        idx.path(),
        format!(
            "has {} dimension(s) ({}), expected {want} ({meaning}); is it the right file?",
            idx.dims().len(),
            shape(idx.dims()),
        ),
    )
}

/// Reads and validates any unsigned-byte IDX file.
pub fn read(path: &Path) -> Result<Idx, DataError> {
    let bytes = read_decompressed(path)?;
    parse(path, bytes)
}

/// Reads a file whole, gunzipping it when its content is gzip.
pub fn read_decompressed(path: &Path) -> Result<Vec<u8>, DataError> {
    let read_err = |source| DataError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    if len > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    let mut raw = Vec::with_capacity(len as usize);
    file.read_to_end(&mut raw).map_err(read_err)?;
    decompress(path, raw)
}

/// Gunzips `raw` when it starts with the gzip magic, else returns it as is.
/// `path` only names the source in messages.
pub fn decompress(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, DataError> {
    if raw.is_empty() {
        return Err(DataError::invalid(
            path,
            format!("is empty (0 bytes); {REFETCH}"),
        ));
    }
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    // gzip's trailer holds the uncompressed size mod 2^32: a capacity hint
    // only, capped by deflate's maximum ratio so a forged trailer costs nothing.
    let hint = match raw.len().checked_sub(4).and_then(|at| raw.get(at..)) {
        Some(t) => u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize,
        None => 0,
    };
    let cap = hint
        .min(raw.len().saturating_mul(1032))
        .min(MAX_FILE_BYTES as usize);
    let mut out = Vec::with_capacity(cap);
    let mut dec = MultiGzDecoder::new(&raw[..]).take(MAX_FILE_BYTES + 1);
    dec.read_to_end(&mut out).map_err(|e| {
        DataError::invalid(
            path,
            format!("is corrupt or truncated gzip ({e}); {REFETCH}"),
        )
    })?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path));
    }
    Ok(out)
}

fn too_large(path: &Path) -> DataError {
    DataError::invalid(
        path,
        format!(
            "is larger than {} GiB (decompressed), the most trainerd reads; is it the right file?",
            MAX_FILE_BYTES >> 30
        ),
    )
}

/// Checks `bytes` (a whole decompressed file) as unsigned-byte IDX data.
pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Idx, DataError> {
    let bad = |what: String| Err(DataError::invalid(path, what));
    if bytes.is_empty() {
        return bad(format!("is empty (0 bytes); {REFETCH}"));
    }
    if bytes.len() < 4 {
        return bad(format!(
            "is truncated: {} byte(s), shorter than the 4-byte IDX magic; {REFETCH}",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        let looks_text = bytes[..4]
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ');
        let hint = if looks_text {
            " (it looks like text, e.g. an error page saved by a failed download)"
        } else {
            ""
        };
        return bad(format!(
            "is not an IDX file: it starts with {}, an IDX file starts with 00 00 <type> <rank>{hint}; \
             is it the right file?",
            hex_bytes(&bytes[..4])
        ));
    }
    let (dtype, rank) = (bytes[2], usize::from(bytes[3]));
    if dtype != TYPE_U8 {
        return bad(format!(
            "holds IDX elements of type 0x{dtype:02X} ({}); trainerd reads unsigned-byte (0x08) \
             IDX files only: convert the data to 8-bit pixels and labels",
            type_name(dtype)
        ));
    }
    if rank == 0 {
        return bad("declares rank 0 (no dimensions): the header is corrupt".into());
    }
    let header_len = 4 + 4 * rank;
    if bytes.len() < header_len {
        return bad(format!(
            "is truncated in its header: rank {rank} needs {header_len} header bytes, the file \
             has {}; {REFETCH}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    if dims[0] == 0 {
        return bad(format!(
            "holds no records (its header says {}); a data set needs at least one",
            shape(&dims)
        ));
    }
    if dims.contains(&0) {
        return bad(format!(
            "declares a zero dimension ({}): the header is corrupt",
            shape(&dims)
        ));
    }
    let expected = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let actual = (bytes.len() - header_len) as u64;
    match expected {
        Some(e) if e == actual => {}
        Some(e) if e > actual => {
            return bad(format!(
                "is truncated: its header promises {} = {e} bytes of data, the file holds \
                 {actual}; {REFETCH}",
                shape(&dims)
            ))
        }
        Some(e) => {
            return bad(format!(
                "has {} byte(s) after the {e} its header ({}) describes: the file is corrupt or \
                 its header is wrong; {REFETCH}",
                actual - e,
                shape(&dims)
            ))
        }
        None => {
            return bad(format!(
                "declares dimensions {} whose product overflows: the header is corrupt",
                shape(&dims)
            ))
        }
    }
    Ok(Idx {
        path: path.to_path_buf(),
        dims,
        bytes,
        header_len,
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
        assert!(msg.contains("is truncated"), "{msg}");
    }

    #[test]
    fn corrupt_gzip() {
        let mut gz = gzip(&idx_bytes(&[4, 2, 2], &[7; 16]));
        let mid = gz.len() / 2;
        gz[mid] ^= 0xFF;
        gz[mid + 1] ^= 0x55;
        let msg = images_err(&gz);
        assert!(msg.contains("is corrupt or truncated gzip"), "{msg}");
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
    fn out_of_range_labels_are_found() {
        assert_eq!(first_out_of_range(&[0, 1, 9, 3], 10), None);
        assert_eq!(first_out_of_range(&[0, 1, 10, 12], 10), Some((2, 10)));
    }
}
