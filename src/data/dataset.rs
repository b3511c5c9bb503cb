//! The MNIST layout in a directory -> train / validation / test splits as tensors in memory.
//!
//! Files: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each raw or `.gz`
//! (the `train-images.idx3-ubyte` spelling is accepted too).
//!
//! Decisions a reader of the numbers needs:
//! - **Classes**: labels are the classes `0..K-1`. Without `--classes K`, K is
//!   the largest training label + 1 and every class must appear in training
//!   (a stray 255 among digits is an error, not a 256-class model); with it,
//!   every label must be below K. A test label that is not a class is an
//!   error, since a model could never predict it. MNIST and Fashion-MNIST give 10.
//! - **Memory**: the four headers are read and checked against each other
//!   and against the memory budget ([`memory_cost`]: the tensors the data
//!   becomes, not just its bytes) before any data is read.
//! - **Validation**: `--val-size` training records, or by default a tenth
//!   (at most 5,000), stratified by class and keyed by the seed
//!   ([`super::split`]); both splits keep file order.
//! - **Normalisation**: pixel `p` of channel `c` becomes `(p/255 − mean[c]) / std[c]`, with mean
//!   and std of `p/255` over the training split (validation excluded),
//!   computed exactly from a byte histogram. MNIST gives ≈ 0.1307 / 0.3081.
//! - **Fingerprint**: SHA-256 over the SHA-256s of the four *decompressed*
//!   files in the order above, so re-compressing a file leaves it unchanged.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tch::{Kind, TchError, Tensor};

use super::idx::{self, Header, Images, Labels};
use super::in_memory::{histogram, split_tensors, Dataset, LoadOptions};
use super::layout::locate;
use super::source::DataFormat;
use super::{split, DataError};
use crate::model::norm::Normalisation;

/// Checks a `--classes` value: 2 to 256 (labels are bytes).
pub fn check_classes_option(k: usize) -> Result<usize, String> {
    if (2..=256).contains(&k) {
        Ok(k)
    } else {
        Err(format!(
            "{k} is outside 2..=256: a classifier needs two classes, and IDX labels are bytes"
        ))
    }
}

/// Bytes a data set takes in memory while it loads and trains, from its
/// headers: every pixel as read (1 byte), as a uint8 tensor (1) and as a
/// float32 tensor (4); the training images once more as the padded float copy
/// shift augmentation reads (±2 pixels, at most [`PAD_ONCE_LIMIT_BYTES`]);
/// every label as read (1) and twice as int64 (16).
///
/// [`PAD_ONCE_LIMIT_BYTES`]: super::augment::PAD_ONCE_LIMIT_BYTES
pub fn memory_cost(train: &Header, test: &Header) -> u64 {
    let pixels = train.body_len.saturating_add(test.body_len);
    let records = (train.dims[0] as u64).saturating_add(test.dims[0] as u64);
    let padded = match train.dims[..] {
        [n, h, w] => (n as u64)
            .saturating_mul(h as u64 + 4)
            .saturating_mul(w as u64 + 4)
            .saturating_mul(4),
        _ => 0,
    };
    let limit = super::augment::PAD_ONCE_LIMIT_BYTES as u64;
    pixels
        .saturating_mul(6)
        .saturating_add(padded.min(limit))
        .saturating_add(records.saturating_mul(17))
}

/// A file read and hashed (on a worker thread for the big one).
struct Loaded<T> {
    data: T,
    sha256: [u8; 32],
}

/// Reads `path` whole, requiring the header [`check_headers`] saw (a file
/// replaced in between could otherwise bring any size).
fn read_as(path: &Path, expected: &Header) -> Result<idx::Idx, DataError> {
    let stream = idx::open(path)?;
    if stream.header() != expected {
        return Err(DataError::invalid(
            path,
            "changed while it was being read (its header differs from a moment ago); try again \
             once it is written completely",
        ));
    }
    stream.read_all(expected.body_len)
}

fn load_images(path: &Path, expected: &Header) -> Result<Loaded<Images>, DataError> {
    let data = idx::images(read_as(path, expected)?)?;
    let sha256 = Sha256::digest(data.idx.bytes()).into();
    Ok(Loaded { data, sha256 })
}

fn load_labels(path: &Path, expected: &Header) -> Result<Loaded<Labels>, DataError> {
    let data = idx::labels(read_as(path, expected)?)?;
    let sha256 = Sha256::digest(data.idx.bytes()).into();
    Ok(Loaded { data, sha256 })
}

/// The header of `path`, which must have the given rank.
fn header_of(path: &Path, rank: (usize, &str)) -> Result<Header, DataError> {
    let stream = idx::open(path)?;
    stream.expect_rank(rank)?;
    Ok(stream.header().clone())
}

/// The four headers, checked against each other and against the memory
/// budget before any data is read.
fn check_headers(paths: &[PathBuf; 4], budget: u64) -> Result<[Header; 4], DataError> {
    let headers = [
        header_of(&paths[0], idx::IMAGES_RANK)?,
        header_of(&paths[1], idx::LABELS_RANK)?,
        header_of(&paths[2], idx::IMAGES_RANK)?,
        header_of(&paths[3], idx::LABELS_RANK)?,
    ];
    for (x, y) in [(0, 1), (2, 3)] {
        let (n, m) = (headers[x].dims[0], headers[y].dims[0]);
        if n != m {
            return Err(DataError::invalid(
                &paths[y],
                format!(
                    "holds {m} labels but {} holds {n} images; the two files do not belong \
                     together",
                    paths[x].display()
                ),
            ));
        }
    }
    let (tx, ex) = (&headers[0].dims, &headers[2].dims);
    if tx[1..] != ex[1..] {
        return Err(DataError::invalid(
            &paths[2],
            format!(
                "holds {}×{} images but the training images ({}) are {}×{}; the files do \
                 not belong together",
                ex[1],
                ex[2],
                paths[0].display(),
                tx[1],
                tx[2]
            ),
        ));
    }
    let cost = memory_cost(&headers[0], &headers[2]);
    if cost > budget {
        return Err(DataError::invalid(
            &paths[0],
            format!(
                "its header declares {} images (with {} test images), which as tensors need \
                 about {}, more than {}; is it the right file?",
                headers[0].shape(),
                ex[0],
                super::budget::human(cost),
                super::budget::describe(budget)
            ),
        ));
    }
    Ok(headers)
}

/// The number of classes (see the module docs), or the first label that breaks the rule.
fn check_labels(train: &Labels, test: &Labels, classes: Option<usize>) -> Result<usize, DataError> {
    let k = match classes {
        Some(k) => {
            for l in [train, test] {
                if let Some((i, v)) = idx::first_out_of_range(l.values(), k) {
                    return Err(DataError::invalid(
                        l.idx.path(),
                        format!(
                            "label {v} at record {i} is outside the classes 0..={} that \
                             --classes {k} declares; fix that label, or raise --classes",
                            k - 1
                        ),
                    ));
                }
            }
            return Ok(k);
        }
        None => training_classes(train)?,
    };
    if let Some((i, l)) = idx::first_out_of_range(test.values(), k) {
        return Err(DataError::invalid(
            test.idx.path(),
            format!(
                "label {l} at record {i} is not a training class (the training labels span \
                 0..={}); the test set does not belong with this training set",
                k - 1
            ),
        ));
    }
    Ok(k)
}

/// K when the training labels are exactly the classes `0..K-1`, K >= 2;
/// else an error naming the first label past a class no record has.
fn training_classes(train: &Labels) -> Result<usize, DataError> {
    let bad = |what: String| Err(DataError::invalid(train.idx.path(), what));
    let mut present = [false; 256];
    for &l in train.values() {
        present[usize::from(l)] = true;
    }
    let max = present.iter().rposition(|&p| p).unwrap_or(0);
    if let Some(gap) = (0..max).find(|&c| !present[c]) {
        let next = (gap..=max).find(|&c| present[c]).unwrap_or(max);
        let (i, v) = train
            .values()
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) > gap)
            .map_or((0, 0), |(i, &l)| (i, l));
        let empty = if next - 1 > gap {
            format!("classes {gap}..={} are", next - 1)
        } else {
            format!("class {gap} is")
        };
        return bad(format!(
            "label {v} at record {i} is not a class: {empty} empty, and labels must be the \
             classes 0..K-1 with every class present in training; fix that label, or pass \
             --classes K if the data set really has K classes"
        ));
    }
    if max == 0 {
        return bad(
            "holds only label 0: a classifier needs at least two classes (pass \
             --classes K if the data set has K classes)"
                .into(),
        );
    }
    Ok(max + 1)
}

fn u8_tensors(images: &Images, labels: &Labels) -> Result<(Tensor, Tensor), TchError> {
    let shape = [images.count, 1, images.rows, images.cols].map(|d| d as i64);
    let x = Tensor::f_from_slice(images.pixels())?.f_view(shape)?;
    let y = Tensor::f_from_slice(labels.values())?.f_to_kind(Kind::Int64)?;
    Ok((x, y))
}

/// The four files as checked headers promise them.
type Files = (
    Loaded<Images>,
    [u64; 256],
    Loaded<Labels>,
    Loaded<Images>,
    Loaded<Labels>,
);

/// Reads the four files; the training images (most of the bytes) are read,
/// gunzipped, hashed and counted on a second thread meanwhile.
fn read_files(paths: &[PathBuf; 4], headers: &[Header; 4]) -> Result<Files, DataError> {
    let (big, rest) = std::thread::scope(|s| {
        let big = s.spawn(|| {
            load_images(&paths[0], &headers[0]).map(|l| {
                let hist = histogram(l.data.pixels());
                (l, hist)
            })
        });
        let rest = (|| {
            Ok::<_, DataError>((
                load_labels(&paths[1], &headers[1])?,
                load_images(&paths[2], &headers[2])?,
                load_labels(&paths[3], &headers[3])?,
            ))
        })();
        let big = big.join().unwrap_or_else(|_| {
            Err(DataError::invalid(
                &paths[0],
                "reading it failed unexpectedly (worker thread panicked)",
            ))
        });
        (big, rest)
    });
    let (train_x, hist) = big?;
    let (train_y, test_x, test_y) = rest?;
    Ok((train_x, hist, train_y, test_x, test_y))
}

/// SHA-256 over the four files' SHA-256s, in [`Part::ALL`](super::layout::Part::ALL) order.
fn fingerprint(images: [&Loaded<Images>; 2], labels: [&Loaded<Labels>; 2]) -> String {
    let mut h = Sha256::new();
    for d in [
        &images[0].sha256,
        &labels[0].sha256,
        &images[1].sha256,
        &labels[1].sha256,
    ] {
        h.update(d);
    }
    hex::encode(h.finalize())
}

/// The training records held out for validation and those kept for
/// training, by index: `opts.val_size` of them (by default
/// [`split::auto_size`]), stratified and keyed by the seed.
fn validation_split(
    labels: &Labels,
    num_classes: usize,
    opts: &LoadOptions,
    images_path: &Path,
) -> Result<(Vec<i64>, Vec<i64>), DataError> {
    let n_train = labels.count;
    let val_size = opts
        .val_size
        .unwrap_or_else(|| split::auto_size(n_train, num_classes, opts.target));
    split::partition(labels.values(), num_classes, val_size, opts.seed)
        .map_err(|e| e.error(val_size, n_train, "records", images_path))
}

/// Takes the pixels of the `held_out` images out of `hist`, the training
/// images' byte histogram, so normalisation sees the training split only.
fn remove_from_histogram(hist: &mut [u64; 256], images: &Images, held_out: &[i64]) {
    let image_len = images.rows * images.cols;
    for &i in held_out {
        let at = i as usize * image_len;
        for &b in &images.pixels()[at..at + image_len] {
            hist[usize::from(b)] -= 1;
        }
    }
}

impl Dataset {
    /// Loads and checks the data set in `dir` into CPU tensors, in the
    /// format and with the image size `opts.source` gives.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
        let src = &opts.source;
        match src.format.resolve(dir) {
            DataFormat::Folders => super::images::load(dir, opts, src.image_size),
            _ => Self::load_idx(dir, opts),
        }
    }

    /// Loads and checks the data set in `dir` (MNIST layout) into CPU tensors.
    pub fn load_idx(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
        let paths = locate(dir)?;
        let headers = check_headers(&paths, opts.memory_budget)?;
        let started = std::time::Instant::now();
        let (train_x, mut hist, train_y, test_x, test_y) = read_files(&paths, &headers)?;
        let num_classes = check_labels(&train_y.data, &test_y.data, opts.classes)?;
        let (tx, ex) = (&train_x.data, &test_x.data);
        let (val_idx, train_idx) = validation_split(&train_y.data, num_classes, opts, &paths[0])?;
        remove_from_histogram(&mut hist, tx, &val_idx);
        let normalisation = Normalisation::from_histograms(&[hist]);
        let fingerprint = fingerprint([&train_x, &test_x], [&train_y, &test_y]);

        let tensor_err = |e: TchError| DataError::Tensor {
            path: dir.to_path_buf(),
            what: e.to_string(),
        };
        let (train_u8, train_labels) = u8_tensors(tx, &train_y.data).map_err(tensor_err)?;
        let (test_u8, test_labels) = u8_tensors(ex, &test_y.data).map_err(tensor_err)?;
        let all_test: Vec<i64> = (0..ex.count as i64).collect();
        // The bytes as read are in the tensors now: free them before the float copies.
        drop((train_x, train_y, test_x, test_y));
        let train = split_tensors(&train_u8, &train_labels, &train_idx, normalisation)
            .map_err(tensor_err)?;
        let val =
            split_tensors(&train_u8, &train_labels, &val_idx, normalisation).map_err(tensor_err)?;
        let test =
            split_tensors(&test_u8, &test_labels, &all_test, normalisation).map_err(tensor_err)?;
        tracing::debug!(
            dir = %dir.display(),
            ms = started.elapsed().as_millis() as u64,
            "data set loaded"
        );
        Ok(Dataset {
            train,
            val,
            test,
            num_classes: num_classes as i64,
            fingerprint,
            normalisation,
            class_names: (0..num_classes).map(|c| c.to_string()).collect(),
        })
    }
}

#[cfg(test)]
mod tests;
