//! The data set in memory, as both loaders ([`super::dataset`] for IDX,
//! [`super::images`] for image folders) deliver it: the three [`Split`]s as
//! tensors, how a load is asked for ([`LoadOptions`]), and the two steps both
//! loaders share: the byte histogram normalisation is computed from, and a
//! split's tensors built from the raw bytes of its records.

use tch::{Device, Kind, TchError, Tensor};

use super::source::SourceOptions;
use crate::model::norm::Normalisation;

/// One split, all in memory: images normalised float32 `[N, 1, H, W]`, labels int64 `[N]`.
pub struct Split {
    pub images: Tensor,
    pub labels: Tensor,
}

impl Split {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.labels.size().first().map_or(0, |&n| n as usize)
    }

    /// True when the split holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records at `indices` (int64, on the split's device): `(images, labels)`.
    pub fn batch(&self, indices: &Tensor) -> (Tensor, Tensor) {
        (
            self.images.index_select(0, indices),
            self.labels.index_select(0, indices),
        )
    }
}

/// The records of `split` at `indices`: `(images, labels)`. See [`Split::batch`].
pub fn batch(split: &Split, indices: &Tensor) -> (Tensor, Tensor) {
    split.batch(indices)
}

/// A loaded data set with train/validation/test splits.
pub struct Dataset {
    pub train: Split,
    pub val: Split,
    pub test: Split,
    /// Largest training label + 1: the width of the model's output layer.
    pub num_classes: i64,
    /// Hex SHA-256 identifying the data version (see the module docs); a
    /// checkpoint of other data must not be resumed on this one.
    pub fingerprint: String,
    /// Per-channel mean and std of `pixel/255` over the training split: what
    /// `predict` must apply to new images, `(p/255 − mean[c]) / std[c]`.
    pub normalisation: Normalisation,
    /// The classes' names, label `i` is `class_names[i]`: the folder names of
    /// an image-folder set, `"0"`..`"K-1"` for IDX.
    pub class_names: Vec<String>,
}

/// The target a load without one sizes its validation split for (the
/// `--target-accuracy` default).
pub const DEFAULT_TARGET: f64 = 0.99;

/// How to load: validation size and the seed that picks it, the memory
/// budget, the number of classes.
pub struct LoadOptions {
    /// Training records held out for validation: `None` for the default
    /// ([`super::split::auto_size`]); every class must keep a training record.
    pub val_size: Option<usize>,
    /// The study's target accuracy: the default validation size is what
    /// certifying it takes ([`crate::confidence::val_size_for`]).
    pub target: f64,
    /// Picks which records are held out.
    pub seed: u64,
    /// Bytes the data set may take in memory ([`super::dataset::memory_cost`]); more is refused unread.
    pub memory_budget: u64,
    /// `--classes K`: labels are `0..K-1`, not all need appear. `None`: the
    /// largest training label + 1, every class present.
    pub classes: Option<usize>,
    /// Which format the data dir is read as, and `--image-size`.
    pub source: SourceOptions,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            val_size: None,
            target: DEFAULT_TARGET,
            seed: 0,
            memory_budget: super::budget::default_budget(),
            classes: None,
            source: SourceOptions::default(),
        }
    }
}

/// Counts of each byte value, with four sub-histograms so that runs of equal
/// bytes (most of MNIST is 0) do not serialise on one counter.
pub(super) fn histogram(bytes: &[u8]) -> [u64; 256] {
    let mut h = [[0u64; 256]; 4];
    let mut chunks = bytes.chunks_exact(4);
    for c in &mut chunks {
        h[0][usize::from(c[0])] += 1;
        h[1][usize::from(c[1])] += 1;
        h[2][usize::from(c[2])] += 1;
        h[3][usize::from(c[3])] += 1;
    }
    for &b in chunks.remainder() {
        h[0][usize::from(b)] += 1;
    }
    let mut out = [0u64; 256];
    for (v, o) in out.iter_mut().enumerate() {
        *o = h[0][v] + h[1][v] + h[2][v] + h[3][v];
    }
    out
}

/// Float images `[len(idx), C, H, W]` of `all` (uint8 `[N, C, H, W]`), normalised per channel.
fn images_tensor(all: &Tensor, idx: &Tensor, norm: Normalisation) -> Result<Tensor, TchError> {
    let mut x = all.f_index_select(0, idx)?.f_to_kind(Kind::Float)?;
    norm.apply255_(&mut x)?;
    Ok(x)
}

/// Builds a split's tensors from the raw bytes of its records.
pub(super) fn split_tensors(
    all_images: &Tensor,
    all_labels: &Tensor,
    idx: &[i64],
    norm: Normalisation,
) -> Result<Split, TchError> {
    let idx = Tensor::f_from_slice(idx)?;
    Ok(Split {
        images: images_tensor(all_images, &idx, norm)?,
        labels: all_labels.f_index_select(0, &idx)?,
    })
}

impl Dataset {
    /// `[channels, height, width]` of one image.
    pub fn image_shape(&self) -> [i64; 3] {
        match self.train.images.size()[..] {
            [_, c, h, w] => [c, h, w],
            _ => [0, 0, 0],
        }
    }

    /// Moves every split to `device` once (the trainer then indexes in place).
    pub fn to_device(self, device: Device) -> Dataset {
        let mv = |s: Split| Split {
            images: s.images.to_device(device),
            labels: s.labels.to_device(device),
        };
        Dataset {
            train: mv(self.train),
            val: mv(self.val),
            test: mv(self.test),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::norm::mean_std;

    #[test]
    fn histogram_and_mean_std_are_exact() {
        let bytes: Vec<u8> = (0..=255u8).chain([0, 0, 255]).collect();
        let h = histogram(&bytes);
        assert_eq!(h[0], 3);
        assert_eq!(h[255], 2);
        assert_eq!(h.iter().sum::<u64>(), 259);
        let [m, s] = mean_std(&h);
        let xs: Vec<f64> = bytes.iter().map(|&b| f64::from(b) / 255.0).collect();
        let mm = xs.iter().sum::<f64>() / xs.len() as f64;
        let ss = (xs.iter().map(|x| (x - mm).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
        assert!((m - mm).abs() < 1e-12 && (s - ss).abs() < 1e-12);
    }
}
