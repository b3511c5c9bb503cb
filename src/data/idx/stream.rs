//! [`Stream`]: an IDX file's data read after its checked header, held to
//! exactly the length the header declares (a short stream is truncated, a
//! longer one corrupt), in one piece or many.

use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::header::read_header;
use super::{corrupt_gzip, read_up_to, wrong_rank, Header, Idx, MAX_FILE_BYTES, REFETCH};
use crate::data::DataError;

/// Bytes past the declared end that are counted for a message; beyond this
/// it says "more than" instead of decompressing a bomb to the end.
pub(super) const TRAILING_COUNT_CAP: u64 = 16 << 20;

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
                    crate::data::budget::human(h.body_len),
                    crate::data::budget::describe(limit)
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
                crate::data::budget::human(TRAILING_COUNT_CAP)
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
