//! Small, learnable image-folder data sets for tests: the patterns of
//! `super::synth` written as `train/<class>/*.png|jpg` (and `test/`).
//! Test code only, included like `synth.rs` (`common::synth_folders`, and
//! `data::synth_folders` under `#[cfg(test)]`).
//!
//! Gray sets are the 28×28 patterns as they are; RGB sets tint each class's
//! pattern with its own colour, so colour helps but the pattern alone still
//! separates the classes. Other sides are the pattern resized (triangle).

use std::io;
use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, RgbImage};

use super::rng::mix;
use super::synth::{synthetic_samples, SIDE};

/// The class folder names, deliberately not in sorted order.
pub const CLASS_NAMES: [&str; 10] = [
    "zebra", "apple", "moon", "kite", "boat", "drum", "fern", "lamp", "yak", "cup",
];

/// What to write.
#[derive(Debug, Clone, Copy)]
pub struct FolderSpec<'a> {
    pub n_train: usize,
    /// `0`: no `test/` folder.
    pub n_test: usize,
    pub seed: u64,
    pub rgb: bool,
    /// Side of the square images.
    pub side: u32,
    /// `png` or `jpg`.
    pub ext: &'a str,
}

fn tint(class: usize) -> [f32; 3] {
    let t = [
        [1.0, 0.3, 0.3],
        [0.3, 1.0, 0.3],
        [0.3, 0.3, 1.0],
        [1.0, 1.0, 0.3],
        [1.0, 0.3, 1.0],
        [0.3, 1.0, 1.0],
        [1.0, 0.6, 0.2],
        [0.6, 0.2, 1.0],
        [0.9, 0.9, 0.9],
        [0.5, 0.8, 0.5],
    ];
    t[class % t.len()]
}

fn image_of(pixels: &[u8], class: usize, spec: &FolderSpec) -> DynamicImage {
    let side = SIDE as u32;
    let gray = GrayImage::from_raw(side, side, pixels.to_vec()).unwrap_or_default();
    let img = if spec.rgb {
        let t = tint(class);
        DynamicImage::ImageRgb8(RgbImage::from_fn(side, side, |x, y| {
            let v = f32::from(gray.get_pixel(x, y)[0]);
            image::Rgb(t.map(|c| (v * c) as u8))
        }))
    } else {
        DynamicImage::ImageLuma8(gray)
    };
    if spec.side == side {
        img
    } else {
        img.resize_exact(spec.side, spec.side, FilterType::Triangle)
    }
}

fn write_split(dir: &Path, split: &str, n: usize, key: u64, spec: &FolderSpec) -> io::Result<()> {
    let (pixels, labels) = synthetic_samples(n, key);
    for (i, (px, &label)) in pixels.chunks_exact(SIDE * SIDE).zip(&labels).enumerate() {
        let class = usize::from(label);
        let folder = dir.join(split).join(CLASS_NAMES[class]);
        std::fs::create_dir_all(&folder)?;
        let path = folder.join(format!("{i:05}.{}", spec.ext));
        image_of(px, class, spec)
            .save(&path)
            .map_err(io::Error::other)?;
    }
    Ok(())
}

/// Writes the data set into `dir` (created). The same spec writes the same images.
pub fn write_synthetic_folders(dir: &Path, spec: &FolderSpec) -> io::Result<()> {
    write_split(dir, "train", spec.n_train, mix(spec.seed, 1), spec)?;
    if spec.n_test > 0 {
        write_split(dir, "test", spec.n_test, mix(spec.seed, 2), spec)?;
    }
    Ok(())
}
