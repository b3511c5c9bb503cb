//! PNG input for `predict`: the size checked in the header before any pixel
//! is decoded, the decoder's memory capped, colour converted to grey.

use std::io::{self, Read};
use std::path::Path;

use super::{input_err, open_err, PredictError};

/// What the PNG decoder may allocate besides the image (text chunks, ICC
/// profiles): a 28x28 image needs a few kilobytes.
const PNG_DECODER_BYTES: usize = 4 << 20;

/// The 8 bytes every PNG starts with.
pub(super) const PNG_MAGIC: [u8; 8] = *b"\x89PNG\r\n\x1a\n";

/// The 3 bytes every JPEG starts with (start of image, then a marker).
pub(super) const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// Reads a PNG of exactly `rows × cols` pixels as 8-bit grey, row-major. The
/// size is checked in the IHDR chunk before the decoder starts, and the
/// decoder may allocate little besides the image.
pub fn read_png(
    path: &Path,
    mut source: impl Read,
    (rows, cols): (usize, usize),
) -> Result<Vec<u8>, PredictError> {
    let bad = |what: String| input_err(path, format!("not a readable PNG: {what}"));
    // Signature (8), chunk length (4), "IHDR" (4), width (4), height (4).
    let mut head = [0u8; 24];
    let filled = crate::data::idx::read_up_to(&mut source, &mut head).map_err(open_err(path))?;
    if filled < head.len() || head[..8] != PNG_MAGIC || &head[12..16] != b"IHDR" {
        return Err(bad("no PNG header (IHDR) at its start".into()));
    }
    let width = u32::from_be_bytes([head[16], head[17], head[18], head[19]]) as usize;
    let height = u32::from_be_bytes([head[20], head[21], head[22], head[23]]) as usize;
    if (height, width) != (rows, cols) {
        return Err(input_err(
            path,
            format!(
                "is a {width}x{height} PNG; the model takes {cols}x{rows} images (no resizing): \
                 scale or crop it to {cols}x{rows} first"
            ),
        ));
    }
    let limits = png::Limits {
        bytes: PNG_DECODER_BYTES,
    };
    let mut decoder = png::Decoder::new_with_limits(io::Cursor::new(head).chain(source), limits);
    // Expand palettes and low bit depths to 8-bit; strip 16-bit to 8.
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| bad(e.to_string()))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(e.to_string()))?;
    let channels = info.color_type.samples();
    let bytes = &buf[..info.buffer_size()];
    match channels {
        1 | 2 => Ok(bytes.chunks(channels).map(|p| p[0]).collect()),
        3 | 4 => Ok(bytes
            .chunks(channels)
            .map(|p| {
                let luma =
                    0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]);
                luma.round().clamp(0.0, 255.0) as u8
            })
            .collect()),
        n => Err(input_err(
            path,
            format!("unsupported PNG with {n} channels"),
        )),
    }
}
