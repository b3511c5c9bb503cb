//! TFRecord framing, the container of TensorBoard event files: each record
//! is its length (u64 little-endian), the masked CRC-32C of those 8 bytes,
//! the data, and the masked CRC-32C of the data. Reading stops at the first
//! record that is short (torn by a crash) or whose checksums fail.

use std::io::{self, Read};

/// Added to the rotated CRC, as TensorFlow's `crc32c::Mask` does.
const MASK_DELTA: u32 = 0xa282_ead8;

/// The masked CRC-32C (Castagnoli) of `data`, as TFRecord stores it.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// `data` framed as one record, ready for one `write_all`.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// What the next bytes of a file hold.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// A whole record with good checksums: its data.
    Record(Vec<u8>),
    /// The file ends here, on a record boundary.
    End,
    /// A record that is cut short, declares more than `max_len` bytes, or
    /// fails a checksum: the file is good up to here only.
    Bad,
}

/// Reads the next record of `r`, whose data may be `max_len` bytes at most
/// (memory is bounded by that, not by what the file declares).
pub fn read_next(r: &mut impl Read, max_len: u64) -> io::Result<Next> {
    let mut head = [0u8; 12];
    match read_full(r, &mut head)? {
        0 => return Ok(Next::End),
        12 => {}
        _ => return Ok(Next::Bad),
    }
    let (len_bytes, crc_bytes) = head.split_at(8);
    let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or_default());
    let len_crc = u32::from_le_bytes(crc_bytes.try_into().unwrap_or_default());
    if masked_crc(len_bytes) != len_crc || len > max_len {
        return Ok(Next::Bad);
    }
    let mut data = vec![0u8; len as usize + 4];
    if read_full(r, &mut data)? != data.len() {
        return Ok(Next::Bad);
    }
    let tail = data.split_off(len as usize);
    let data_crc = u32::from_le_bytes(tail.as_slice().try_into().unwrap_or_default());
    Ok(if masked_crc(&data) == data_crc {
        Next::Record(data)
    } else {
        Next::Bad
    })
}

/// Fills `buf` as far as `r` goes; returns how many bytes it got.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_test_vectors() {
        // RFC 3720 B.4 and the CRC catalogue's check value.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let ascending: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c::crc32c(&ascending), 0x46dd_794e);
    }

    #[test]
    fn the_mask_rotates_and_adds_as_tensorflow_does() {
        let crc = crc32c::crc32c(b"123456789");
        // The format's own words (shifts and an or), against the rotation used.
        #[allow(clippy::manual_rotate)]
        let by_hand = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc(b"123456789"), by_hand);
        // The masked CRC of the length 0u64, as TensorBoard's own `masked_crc32c` gives it.
        assert_eq!(masked_crc(&0u64.to_le_bytes()), 0x0798_0329);
    }

    #[test]
    fn frames_read_back_then_end() {
        let mut bytes = frame(b"hello");
        bytes.extend(frame(b""));
        let mut r = bytes.as_slice();
        assert_eq!(
            read_next(&mut r, 64).unwrap(),
            Next::Record(b"hello".to_vec())
        );
        assert_eq!(read_next(&mut r, 64).unwrap(), Next::Record(vec![]));
        assert_eq!(read_next(&mut r, 64).unwrap(), Next::End);
    }

    #[test]
    fn every_cut_of_a_record_reads_as_bad() {
        let bytes = frame(b"some event bytes");
        for cut in 1..bytes.len() {
            let mut r = &bytes[..cut];
            assert_eq!(read_next(&mut r, 64).unwrap(), Next::Bad, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_or_a_huge_length_reads_as_bad() {
        let bytes = frame(b"some event bytes");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert_eq!(
                read_next(&mut bad.as_slice(), 64).unwrap(),
                Next::Bad,
                "byte {i}"
            );
        }
        assert_eq!(read_next(&mut bytes.as_slice(), 4).unwrap(), Next::Bad);
    }
}
