//! Tests of `idx`.

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
        msg.contains(
            "is truncated: its header promises 10×28×28 = 7840 bytes of data, the file holds 7839"
        ),
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
    body.extend(vec![0; (stream::TRAILING_COUNT_CAP + 10) as usize]);
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
