//! Small, learnable IDX data sets for tests: writes the MNIST layout to a directory.
//! Test code only: integration tests include it as `common::synth`, the
//! library's unit tests as `data::synth` (`#[cfg(test)]`); either includer
//! provides the `layout` and `rng` modules it names through `super::`.
//!
//! Each of the ten classes is a fixed coarse pattern (a 7×7 grid of 4×4-pixel
//! cells, about 40% lit) on a 28×28 canvas; every sample jitters it (shift by
//! up to 2 pixels, a few cells dropped, brightness, speckle noise). Classes are
//! far apart, so a small model learns them to well above 90% in a few epochs,
//! but no two samples are equal, so a model must generalise a little.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::layout::Part;
use super::rng::{mix, SplitMix64};

/// Side of the synthetic images (as MNIST).
pub const SIDE: usize = 28;
/// Number of classes written (labels 0..=9).
pub const CLASSES: usize = 10;

const CELL: usize = 4;
const GRID: usize = SIDE / CELL;
/// Fixed, so that the classes look the same whatever the seed.
const TEMPLATE_KEY: u64 = 0x7379_6e74_6821_2121;

/// An IDX file's bytes: unsigned-byte magic, `dims` big-endian, then `data`.
/// Does not check that `data` matches `dims`, so tests can build broken files.
pub fn idx_bytes(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 * dims.len() + data.len());
    out.extend([0, 0, 0x08, dims.len() as u8]);
    for &d in dims {
        out.extend((d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Writes an IDX file (gzip-compressed when `gz`).
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8], gz: bool) -> io::Result<()> {
    let bytes = idx_bytes(dims, data);
    let mut f = BufWriter::new(File::create(path)?);
    if gz {
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        enc.write_all(&bytes)?;
        f = enc.finish()?;
    } else {
        f.write_all(&bytes)?;
    }
    f.flush()
}

/// The lit cells of class `c`'s pattern, `GRID × GRID`.
fn template(c: usize) -> [[bool; GRID]; GRID] {
    let mut rng = SplitMix64::new(mix(TEMPLATE_KEY, c as u64));
    let mut t = [[false; GRID]; GRID];
    for row in t.iter_mut() {
        for cell in row.iter_mut() {
            *cell = rng.next_f64() < 0.4;
        }
    }
    t
}

/// `n` samples (pixels, labels) drawn from the stream `key`; labels balanced.
pub fn synthetic_samples(n: usize, key: u64) -> (Vec<u8>, Vec<u8>) {
    let templates: Vec<_> = (0..CLASSES).map(template).collect();
    let mut rng = SplitMix64::new(key);
    let mut labels: Vec<u8> = (0..n).map(|i| (i % CLASSES) as u8).collect();
    for i in (1..n).rev() {
        labels.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut pixels = vec![0u8; n * SIDE * SIDE];
    for (img, &label) in pixels.chunks_exact_mut(SIDE * SIDE).zip(&labels) {
        let t = &templates[usize::from(label)];
        let dy = rng.below(5) as isize - 2;
        let dx = rng.below(5) as isize - 2;
        let level = 150.0 + 105.0 * rng.next_f64();
        for (gy, row) in t.iter().enumerate() {
            for (gx, &lit) in row.iter().enumerate() {
                if !lit || rng.next_f64() < 0.1 {
                    continue;
                }
                for y in 0..CELL {
                    for x in 0..CELL {
                        let py = (gy * CELL + y) as isize + dy;
                        let px = (gx * CELL + x) as isize + dx;
                        if (0..SIDE as isize).contains(&py) && (0..SIDE as isize).contains(&px) {
                            let v = level * (0.85 + 0.15 * rng.next_f64());
                            img[py as usize * SIDE + px as usize] = v as u8;
                        }
                    }
                }
            }
        }
        for p in img.iter_mut() {
            if rng.next_f64() < 0.03 {
                *p = p.saturating_add((rng.next_f64() * 120.0) as u8);
            }
        }
    }
    (pixels, labels)
}

/// Writes a synthetic data set in the MNIST layout (gzip-compressed files)
/// into `dir`: `n_train` training and `n_test` test images of 28×28, labels
/// 0–9, balanced (all ten classes appear when a split has at least ten
/// records). The same arguments always write the same bytes.
pub fn write_synthetic_mnist(
    dir: &Path,
    n_train: usize,
    n_test: usize,
    seed: u64,
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let (train_x, train_y) = synthetic_samples(n_train, mix(seed, 1));
    let (test_x, test_y) = synthetic_samples(n_test, mix(seed, 2));
    let files = [
        (Part::TrainImages, vec![n_train, SIDE, SIDE], train_x),
        (Part::TrainLabels, vec![n_train], train_y),
        (Part::TestImages, vec![n_test, SIDE, SIDE], test_x),
        (Part::TestLabels, vec![n_test], test_y),
    ];
    for (part, dims, data) in files {
        let path = dir.join(format!("{}.gz", part.file_name()));
        write_idx(&path, &dims, &data, true)?;
    }
    Ok(())
}
