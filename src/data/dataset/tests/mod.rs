//! Tests of `dataset`: what a good data set loads to (`loading`) and how
//! bad ones are refused (`refusals`). The fixtures they share are here.

mod loading;
mod refusals;

use super::*;
use crate::data::in_memory::Split;
use crate::data::synth::write_idx;

fn opts(val_size: usize, seed: u64) -> LoadOptions {
    LoadOptions {
        val_size: Some(val_size),
        seed,
        ..Default::default()
    }
}

/// Writes a tiny raw data set: images whose every pixel equals the record
/// index (so a record's identity survives normalisation), labels `i % k`.
fn tiny(dir: &Path, n_train: usize, n_test: usize, k: u8) {
    let px = |n: usize| -> Vec<u8> { (0..n).flat_map(|i| [i as u8; 4]).collect() };
    let lb = |n: usize| -> Vec<u8> { (0..n).map(|i| i as u8 % k).collect() };
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let images = dir.join(format!("{prefix}-images-idx3-ubyte"));
        write_idx(&images, &[n, 2, 2], &px(n), false).unwrap();
        write_labels(dir, &format!("{prefix}-labels-idx1-ubyte"), &lb(n));
    }
}

/// The record index behind each image of a split (undoing normalisation).
fn record_ids(s: &Split, norm: Normalisation) -> Vec<i64> {
    let first = s.images.select(1, 0).select(1, 0).select(1, 0);
    let raw = (first * norm[1] + norm[0]) * 255.0;
    Vec::<f32>::try_from(raw)
        .unwrap()
        .iter()
        .map(|v| v.round() as i64)
        .collect()
}

fn load_err(dir: &Path, o: LoadOptions) -> DataError {
    match Dataset::load(dir, &o) {
        Ok(_) => panic!("loaded"),
        Err(e) => e,
    }
}

fn write_labels(dir: &Path, name: &str, labels: &[u8]) {
    write_idx(&dir.join(name), &[labels.len()], labels, false).unwrap();
}
