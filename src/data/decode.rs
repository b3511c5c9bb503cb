//! Image files -> pixels: the header probe (size, colour) that runs before
//! any pixel is decoded, and the decoding of a whole image folder set into
//! one `[N, C, H, W]` byte buffer on two threads.
//!
//! Decisions a reader of the numbers needs:
//! - **Colour**: a set is grayscale (1 channel) when every image is gray
//!   (with or without alpha), else RGB (3 channels; gray images are copied
//!   into all three). 16-bit images are scaled to 8 bits.
//! - **Alpha** is composited on **black**: a pixel becomes `value × alpha / 255`
//!   (transparent is background, as MNIST's black).
//! - **Resizing** (`--image-size`) uses the triangle (bilinear) filter, after
//!   the alpha is composited; without it every image must have the first
//!   training image's size.
//! - Each file is read whole (at most [`MAX_FILE_BYTES`]) and hashed with
//!   SHA-256 as it is decoded, for the data set's fingerprint.

use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader};
use sha2::{Digest, Sha256};

use super::DataError;

/// Largest image file read (a compressed image this big is not a training sample).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// What an image's header says, before its pixels are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub width: u32,
    pub height: u32,
    /// No colour channels (gray or gray+alpha).
    pub gray: bool,
}

fn undecodable(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::invalid(
        path,
        format!(
            "is not a readable PNG or JPEG image ({e}); replace it with a complete image, or \
             remove it"
        ),
    )
}

/// The header of the image at `path`: dimensions and colour, no pixels decoded.
pub fn probe(path: &Path) -> Result<Probe, DataError> {
    let file = std::fs::File::open(path).map_err(|error| DataError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| undecodable(path, e))?;
    let decoder = reader.into_decoder().map_err(|e| undecodable(path, e))?;
    let (width, height) = decoder.dimensions();
    let gray = !decoder.color_type().has_color();
    Ok(Probe {
        width,
        height,
        gray,
    })
}

/// The target of decoding: channels (1 or 3) and size of every image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub channels: usize,
    pub height: u32,
    pub width: u32,
    /// Resize images of another size (`--image-size`), else refuse them.
    pub resize: bool,
}

impl Target {
    /// Bytes of one decoded image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height as usize * self.width as usize
    }
}

/// Reads `path` whole (bounded), returning its bytes.
fn read_bounded(path: &Path) -> Result<Vec<u8>, DataError> {
    let read_err = |error| DataError::Read {
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DataError::invalid(
            path,
            format!(
                "is larger than {} MiB, too large for a training image; shrink it or remove it",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}

/// Composites alpha on black and flattens to `channels` 8-bit channels, row-major, interleaved.
fn flatten(img: DynamicImage, channels: usize) -> DynamicImage {
    let has_alpha = img.color().has_alpha();
    if channels == 1 {
        let mut la = img.into_luma_alpha8();
        if has_alpha {
            for p in la.pixels_mut() {
                p[0] = (u16::from(p[0]) * u16::from(p[1]) / 255) as u8;
            }
        }
        DynamicImage::ImageLuma8(DynamicImage::ImageLumaA8(la).into_luma8())
    } else {
        let mut rgba = img.into_rgba8();
        if has_alpha {
            for p in rgba.pixels_mut() {
                let a = u16::from(p[3]);
                for c in 0..3 {
                    p[c] = (u16::from(p[c]) * a / 255) as u8;
                }
            }
        }
        DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba).into_rgb8())
    }
}

/// Decodes one image into `out` (`target.image_len()` bytes, channels first);
/// returns the SHA-256 of the file's bytes.
pub fn decode_into(path: &Path, target: &Target, out: &mut [u8]) -> Result<[u8; 32], DataError> {
    let bytes = read_bounded(path)?;
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let img = ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| undecodable(path, e))?
        .decode()
        .map_err(|e| undecodable(path, e))?;
    if img.color().has_color() && target.channels == 1 {
        return Err(DataError::invalid(
            path,
            "became a colour image while the data set was read (its header said gray); try \
             again once it is written completely",
        ));
    }
    let (w, h) = (img.width(), img.height());
    let mut img = flatten(img, target.channels);
    if (h, w) != (target.height, target.width) {
        if !target.resize {
            return Err(wrong_size(path, h, w, target));
        }
        img = img.resize_exact(target.width, target.height, FilterType::Triangle);
    }
    let interleaved = img.as_bytes();
    let plane = target.height as usize * target.width as usize;
    for (i, px) in interleaved.chunks_exact(target.channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out[c * plane + i] = v;
        }
    }
    Ok(sha256)
}

/// One image for a model taking `target`'s shape (`trainerd predict`), as
/// channels-first bytes: PNG or JPEG, of exactly the model's size (checked
/// in the header, before any pixel is decoded; no resizing), alpha
/// composited on black as in training; a colour image for a gray model
/// becomes gray, a gray one for an RGB model is copied into all three.
pub fn decode_for_model(path: &Path, target: &Target) -> Result<Vec<u8>, DataError> {
    let p = probe(path)?;
    if (p.height, p.width) != (target.height, target.width) {
        return Err(model_size(path, p.height, p.width, target));
    }
    let bytes = read_bounded(path)?;
    let img = ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| undecodable(path, e))?
        .decode()
        .map_err(|e| undecodable(path, e))?;
    if (img.height(), img.width()) != (target.height, target.width) {
        return Err(model_size(path, img.height(), img.width(), target));
    }
    let img = flatten(img, target.channels);
    let mut out = vec![0u8; target.image_len()];
    let plane = target.height as usize * target.width as usize;
    for (i, px) in img.as_bytes().chunks_exact(target.channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out[c * plane + i] = v;
        }
    }
    Ok(out)
}

/// An image of another size than the model takes.
fn model_size(path: &Path, h: u32, w: u32, target: &Target) -> DataError {
    DataError::invalid(
        path,
        format!(
            "is {h}x{w} (height x width) but the model takes {}x{} images (no resizing): scale \
             or crop it to {}x{} first",
            target.height, target.width, target.height, target.width
        ),
    )
}

/// The error for an image of another size than the set's, without `--image-size`.
pub fn wrong_size(path: &Path, h: u32, w: u32, target: &Target) -> DataError {
    DataError::invalid(
        path,
        format!(
            "is {h}x{w} (height x width) but the data set's images are {}x{}; pass \
             --image-size {}x{} to resize every image, or replace this one",
            target.height, target.width, target.height, target.width
        ),
    )
}

/// Decodes `paths` into `out` (`paths.len() × target.image_len()` bytes) on
/// two threads; returns each file's SHA-256 in order, or the error of the
/// first file (in order) that failed.
pub fn decode_all(
    paths: &[PathBuf],
    target: &Target,
    out: &mut [u8],
) -> Result<Vec<[u8; 32]>, DataError> {
    let len = target.image_len();
    let half = paths.len().div_ceil(2);
    let (first_out, second_out) = out.split_at_mut((half * len).min(out.len()));
    let (first, second) = paths.split_at(half);
    let run = |paths: &[PathBuf], out: &mut [u8]| -> Result<Vec<[u8; 32]>, DataError> {
        paths
            .iter()
            .zip(out.chunks_exact_mut(len))
            .map(|(p, o)| decode_into(p, target, o))
            .collect()
    };
    let (a, b) = std::thread::scope(|s| {
        let worker = s.spawn(|| run(second, second_out));
        let a = run(first, first_out);
        let b = worker.join().unwrap_or_else(|_| {
            Err(DataError::invalid(
                second.first().cloned().unwrap_or_default(),
                "decoding failed unexpectedly (worker thread panicked)",
            ))
        });
        (a, b)
    });
    let mut shas = a?;
    shas.extend(b?);
    Ok(shas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgba, RgbaImage};

    #[test]
    fn probe_reads_the_header_and_decode_composites_on_black() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.png");
        let mut img = RgbaImage::new(3, 2);
        img.put_pixel(0, 0, Rgba([200, 100, 50, 255]));
        img.put_pixel(1, 0, Rgba([200, 100, 50, 0]));
        img.put_pixel(2, 0, Rgba([255, 255, 255, 128]));
        img.save(&p).unwrap();
        let probe = probe(&p).unwrap();
        assert_eq!((probe.width, probe.height, probe.gray), (3, 2, false));
        let t = Target {
            channels: 3,
            height: 2,
            width: 3,
            resize: false,
        };
        let mut out = vec![0u8; t.image_len()];
        decode_into(&p, &t, &mut out).unwrap();
        // Channel planes of 6 pixels: red plane first.
        assert_eq!(&out[0..3], &[200, 0, 128]);
        assert_eq!(&out[6..9], &[100, 0, 128]);
    }

    #[test]
    fn wrong_sizes_are_refused_or_resized() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("g.png");
        GrayImage::from_pixel(4, 4, Luma([90])).save(&p).unwrap();
        let mut t = Target {
            channels: 1,
            height: 2,
            width: 2,
            resize: false,
        };
        let mut out = vec![0u8; t.image_len()];
        let e = decode_into(&p, &t, &mut out).unwrap_err().to_string();
        assert!(e.contains("g.png") && e.contains("--image-size 2x2"), "{e}");
        t.resize = true;
        decode_into(&p, &t, &mut out).unwrap();
        assert_eq!(out, [90; 4]);
    }

    #[test]
    fn truncated_and_garbage_files_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.png");
        GrayImage::from_pixel(16, 16, Luma([7])).save(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        let t = Target {
            channels: 1,
            height: 16,
            width: 16,
            resize: false,
        };
        let mut out = vec![0u8; t.image_len()];
        let e = decode_into(&p, &t, &mut out).unwrap_err().to_string();
        assert!(e.contains("t.png") && e.contains("not a readable"), "{e}");
        let g = d.path().join("g.jpg");
        std::fs::write(&g, b"hello").unwrap();
        assert!(probe(&g).unwrap_err().to_string().contains("g.jpg"));
    }
}
