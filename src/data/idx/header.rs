//! An IDX header read and checked: the magic word (unsigned bytes, a rank of
//! at least 1), the dimensions (none zero), and a data size that fits in 64
//! bits, each fault told in its own words.

use std::io::{self, Read};
use std::path::Path;

use super::{corrupt_gzip, read_up_to, shape, Header, REFETCH, TYPE_U8};
use crate::data::DataError;

/// Reads and checks the magic word and dimensions.
pub(super) fn read_header(path: &Path, r: &mut dyn Read, gzip: bool) -> Result<Header, DataError> {
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
