//! An image-folder data set ([`super::folders`]) -> the same [`Dataset`] the
//! IDX loader builds: `[N, C, H, W]` tensors, classes, fingerprint, normalisation.
//!
//! Order of work, so that nothing large is allocated for bad data: list the
//! files, read every header ([`decode::probe`]: size, colour), check sizes
//! and the memory budget, and only then decode the pixels (two threads).
//!
//! - **Test split**: `test/` when present; else a tenth of the training
//!   images (at most 5,000, at least five per class), stratified by class and
//!   keyed by the seed, is held out as the test set (logged).
//! - **Validation** as for IDX ([`super::dataset`]); **normalisation**: one
//!   mean and std per channel, over the training split's pixels (validation
//!   and test excluded).

use std::path::Path;

use tch::{Kind, TchError, Tensor};

use super::decode::{self, Probe, Target};
use super::folders::{self, Entry, Layout};
use super::in_memory::{histogram, split_tensors, Dataset, LoadOptions};
use super::source::ImageSize;
use super::{split, DataError};
use crate::model::Normalisation;

/// Mixed into the seed for the test split, so it differs from the validation split's draw.
const TEST_SPLIT_KEY: u64 = 0x7465_7374_5f73_706c;

/// Reads every header on two threads, in order.
fn probe_all(entries: &[Entry]) -> Result<Vec<Probe>, DataError> {
    let (a, b) = entries.split_at(entries.len().div_ceil(2));
    let run = |es: &[Entry]| -> Result<Vec<Probe>, DataError> {
        es.iter().map(|e| decode::probe(&e.path)).collect()
    };
    let (a, b) = std::thread::scope(|s| {
        let worker = s.spawn(|| run(b));
        let a = run(a);
        (a, worker.join().unwrap_or_else(|_| run(b)))
    });
    let mut out = a?;
    out.extend(b?);
    Ok(out)
}

/// The decoding target: gray when every image is, the size of `--image-size`
/// or of the first training image (every other image must match it).
fn target_of(
    entries: &[Entry],
    probes: &[Probe],
    size: Option<ImageSize>,
) -> Result<Target, DataError> {
    let channels = if probes.iter().all(|p| p.gray) { 1 } else { 3 };
    let first = probes.first().copied().unwrap_or(Probe {
        width: 1,
        height: 1,
        gray: true,
    });
    let target = Target {
        channels,
        height: size.map_or(first.height, |s| s.height),
        width: size.map_or(first.width, |s| s.width),
        resize: size.is_some(),
    };
    for (e, p) in entries.iter().zip(probes) {
        if p.width == 0 || p.height == 0 {
            return Err(DataError::invalid(
                &e.path,
                "is an empty (0-pixel) image; remove it",
            ));
        }
        if !target.resize && (p.height, p.width) != (target.height, target.width) {
            return Err(decode::wrong_size(&e.path, p.height, p.width, &target));
        }
    }
    Ok(target)
}

/// Bytes the set takes while it loads and trains (as [`super::dataset::memory_cost`]
/// for IDX): every pixel decoded (1), as uint8 (1) and float32 (4) tensors,
/// the padded training copy (bounded), labels, and the listing itself.
fn memory_cost(records: usize, target: &Target) -> u64 {
    let n = records as u64;
    let pixels = n.saturating_mul(target.image_len() as u64);
    let padded = n
        .saturating_mul(target.channels as u64)
        .saturating_mul(u64::from(target.height) + 4)
        .saturating_mul(u64::from(target.width) + 4)
        .saturating_mul(4)
        .min(super::augment::PAD_ONCE_LIMIT_BYTES as u64);
    pixels
        .saturating_mul(6)
        .saturating_add(padded)
        .saturating_add(n.saturating_mul(17 + 256))
}

fn check_budget(dir: &Path, records: usize, target: &Target, budget: u64) -> Result<(), DataError> {
    let cost = memory_cost(records, target);
    if cost <= budget {
        return Ok(());
    }
    Err(DataError::invalid(
        dir,
        format!(
            "holds {records} images of {}x{}x{} (channels x height x width), which as tensors \
             need about {}, more than {}; use fewer images or a smaller --image-size",
            target.channels,
            target.height,
            target.width,
            super::budget::human(cost),
            super::budget::describe(budget)
        ),
    ))
}

/// Decodes `entries` into a uint8 `[N, C, H, W]` tensor; also their SHA-256s
/// and the raw bytes' histogram source (the buffer itself).
fn decode_set(entries: &[Entry], target: &Target) -> Result<(Vec<u8>, Vec<[u8; 32]>), DataError> {
    let mut buf = vec![0u8; entries.len() * target.image_len()];
    let paths: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
    let shas = decode::decode_all(&paths, target, &mut buf)?;
    Ok((buf, shas))
}

fn u8_tensor(buf: &[u8], n: usize, t: &Target) -> Result<Tensor, TchError> {
    let shape = [
        n as i64,
        t.channels as i64,
        i64::from(t.height),
        i64::from(t.width),
    ];
    Tensor::f_from_slice(buf)?.f_view(shape)
}

fn labels_tensor(entries: &[Entry]) -> Result<Tensor, TchError> {
    let l: Vec<u8> = entries.iter().map(|e| e.label).collect();
    Tensor::f_from_slice(&l)?.f_to_kind(Kind::Int64)
}

/// Loads the image folders in `dir`.
pub fn load(dir: &Path, opts: &LoadOptions, size: Option<ImageSize>) -> Result<Dataset, DataError> {
    let Layout {
        classes,
        train,
        test,
    } = folders::scan(dir)?;
    let k = classes.len();
    let all: Vec<Entry> = train.iter().chain(test.iter().flatten()).cloned().collect();
    let started = std::time::Instant::now();
    let probes = probe_all(&all)?;
    let target = target_of(&all, &probes, size)?;
    check_budget(dir, all.len(), &target, opts.memory_budget)?;
    let (train_buf, train_shas) = decode_set(&train, &target)?;
    let (test_buf, test_shas) = decode_set(test.as_deref().unwrap_or(&[]), &target)?;
    let shas: Vec<_> = train_shas.iter().chain(&test_shas).collect();
    let fingerprint = folders::fingerprint(all.iter().zip(shas), size);

    let train_labels: Vec<u8> = train.iter().map(|e| e.label).collect();
    let Splits {
        held_test,
        val: val_idx,
        train: train_idx,
    } = split_indices(dir, &train_labels, test.is_some(), k, opts)?;

    let normalisation = channel_statistics(&train_buf, &train_idx, &target);
    let tensor_err = |e: TchError| DataError::Tensor {
        path: dir.to_path_buf(),
        what: e.to_string(),
    };
    let build = || -> Result<_, TchError> {
        let train_u8 = u8_tensor(&train_buf, train.len(), &target)?;
        let train_y = labels_tensor(&train)?;
        let tr = split_tensors(&train_u8, &train_y, &train_idx, normalisation)?;
        let va = split_tensors(&train_u8, &train_y, &val_idx, normalisation)?;
        let te = match &test {
            Some(t) => {
                let all_test: Vec<i64> = (0..t.len() as i64).collect();
                let x = u8_tensor(&test_buf, t.len(), &target)?;
                split_tensors(&x, &labels_tensor(t)?, &all_test, normalisation)?
            }
            None => split_tensors(&train_u8, &train_y, &held_test, normalisation)?,
        };
        Ok((tr, va, te))
    };
    let (train, val, test) = build().map_err(tensor_err)?;
    tracing::debug!(
        dir = %dir.display(),
        ms = started.elapsed().as_millis() as u64,
        images = all.len(),
        "data set loaded"
    );
    Ok(Dataset {
        train,
        val,
        test,
        num_classes: k as i64,
        fingerprint,
        normalisation,
        class_names: classes,
    })
}

/// Indices into the training folders, by the part of the data they go to.
struct Splits {
    /// Held out as the test set (none when `test/` exists).
    held_test: Vec<i64>,
    val: Vec<i64>,
    train: Vec<i64>,
}

/// Which records of the training folders are held out as the test set,
/// which form the validation split, and which train.
fn split_indices(
    dir: &Path,
    train_labels: &[u8],
    has_test: bool,
    k: usize,
    opts: &LoadOptions,
) -> Result<Splits, DataError> {
    // Indices into the training folders: the test records (when test/ is missing) and the rest.
    let (held_test, pool) = if has_test {
        (
            Vec::new(),
            (0..train_labels.len() as i64).collect::<Vec<_>>(),
        )
    } else {
        let size = split::auto_size(train_labels.len(), k, opts.target);
        let split = split::partition(train_labels, k, size, opts.seed ^ TEST_SPLIT_KEY);
        let split = split.map_err(|_| too_few(dir, "a test set"))?;
        tracing::info!(
            dir = %dir.display(),
            test = split.0.len(),
            "no test/ folder: {} training images held out as the test set (by the seed)",
            split.0.len()
        );
        split
    };
    let pool_labels: Vec<u8> = pool.iter().map(|&i| train_labels[i as usize]).collect();
    let val_size = opts
        .val_size
        .unwrap_or_else(|| split::auto_size(pool.len(), k, opts.target));
    let (val_at, train_at) = split::partition(&pool_labels, k, val_size, opts.seed)
        .map_err(|e| e.error(val_size, pool.len(), "images", dir))?;
    Ok(Splits {
        held_test,
        val: val_at.iter().map(|&i| pool[i as usize]).collect(),
        train: train_at.iter().map(|&i| pool[i as usize]).collect(),
    })
}

/// Per-channel mean and std over the images `idx` of `buf` (`[N, C, H, W]` bytes).
fn channel_statistics(buf: &[u8], idx: &[i64], target: &Target) -> Normalisation {
    let len = target.image_len();
    let plane = len / target.channels.max(1);
    let mut hists = vec![[0u64; 256]; target.channels];
    for &i in idx {
        let image = &buf[i as usize * len..(i as usize + 1) * len];
        for (hist, pixels) in hists.iter_mut().zip(image.chunks_exact(plane.max(1))) {
            for (h, c) in hist.iter_mut().zip(histogram(pixels)) {
                *h += c;
            }
        }
    }
    Normalisation::from_histograms(&hists)
}

fn too_few(dir: &Path, what: &str) -> DataError {
    DataError::invalid(
        dir.join("train"),
        format!(
            "has too few images to hold out {what}: add images (a few per class), or add a \
             test/ folder"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::source::{DataFormat, SourceOptions};
    use crate::data::synth_folders::{write_synthetic_folders, FolderSpec, CLASS_NAMES};

    fn spec(rgb: bool, side: u32, ext: &str, n_test: usize) -> FolderSpec<'_> {
        FolderSpec {
            n_train: 200,
            n_test,
            seed: 5,
            rgb,
            side,
            ext,
        }
    }

    fn load_dir(dir: &Path, size: Option<ImageSize>) -> Result<Dataset, DataError> {
        let src = SourceOptions {
            format: DataFormat::Auto,
            image_size: size,
        };
        Dataset::load(
            dir,
            &LoadOptions {
                source: src,
                ..LoadOptions::default()
            },
        )
    }

    #[test]
    fn gray_and_rgb_sets_load_with_sorted_class_names() {
        for (rgb, side, ext, c) in [(false, 28, "png", 1), (true, 20, "jpg", 3)] {
            let d = tempfile::tempdir().unwrap();
            write_synthetic_folders(d.path(), &spec(rgb, side, ext, 50)).unwrap();
            let ds = load_dir(d.path(), None).unwrap();
            assert_eq!(ds.image_shape(), [c, side as i64, side as i64]);
            let mut names = CLASS_NAMES.map(String::from).to_vec();
            names.sort();
            assert_eq!(ds.class_names, names);
            assert_eq!(ds.num_classes, 10);
            assert_eq!((ds.train.len() + ds.val.len(), ds.test.len()), (200, 50));
            let norm = ds.normalisation;
            assert_eq!(norm.mean().len(), c as usize, "one mean per channel");
            for (&mean, &std) in norm.mean().iter().zip(norm.std()) {
                assert!(mean > 0.0 && mean < 1.0 && std > 0.0, "{norm:?}");
            }
            let again = load_dir(d.path(), None).unwrap();
            assert_eq!(again.fingerprint, ds.fingerprint);
            let resized = load_dir(d.path(), ImageSize::parse("12x16").ok()).unwrap();
            assert_eq!(resized.image_shape(), [c, 12, 16]);
            assert_ne!(resized.fingerprint, ds.fingerprint);
        }
    }

    #[test]
    fn a_missing_test_folder_is_split_off_by_the_seed() {
        let d = tempfile::tempdir().unwrap();
        write_synthetic_folders(d.path(), &spec(false, 28, "png", 0)).unwrap();
        let ds = load_dir(d.path(), None).unwrap();
        assert_eq!(ds.test.len(), 50, "five per class of ten");
        assert_eq!(ds.train.len() + ds.val.len() + ds.test.len(), 200);
        let counts = ds.test.labels.bincount(None::<tch::Tensor>, 10);
        assert_eq!(counts.min().int64_value(&[]), 5, "stratified");
    }

    #[test]
    fn mixed_sizes_and_the_budget_are_refused_before_decoding() {
        let d = tempfile::tempdir().unwrap();
        write_synthetic_folders(d.path(), &spec(false, 28, "png", 0)).unwrap();
        let odd = d.path().join("train/cup/odd.png");
        image::GrayImage::new(30, 28).save(&odd).unwrap();
        let e = load_dir(d.path(), None).err().unwrap().to_string();
        assert!(
            e.contains("odd.png") && e.contains("--image-size 28x28"),
            "{e}"
        );
        std::fs::remove_file(&odd).unwrap();
        let opts = LoadOptions {
            memory_budget: 100_000,
            source: SourceOptions {
                format: DataFormat::Folders,
                image_size: None,
            },
            ..LoadOptions::default()
        };
        let e = Dataset::load(d.path(), &opts).err().unwrap().to_string();
        assert!(
            e.contains("memory budget") && e.contains("200 images"),
            "{e}"
        );
    }
}
