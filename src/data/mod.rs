//! Data: IDX files on disk -> a validated, in-memory [`Dataset`] of tensors.
//!
//! STUB: the data helper replaces this file (and adds idx.rs, dataset.rs,
//! download.rs). The public surface below is what the trainer relies on.

use std::path::{Path, PathBuf};
use tch::Tensor;

/// Everything that can be wrong with a data directory; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

impl crate::exit::ExitStatus for DataError {
    fn exit_code(&self) -> u8 {
        65
    }
}

/// One split, all in memory: images normalised float32 `[N, 1, H, W]`, labels int64 `[N]`.
pub struct Split {
    pub images: Tensor,
    pub labels: Tensor,
}

/// A loaded data set with train/validation/test splits.
pub struct Dataset {
    pub train: Split,
    pub val: Split,
    pub test: Split,
    pub num_classes: i64,
    /// Hex digest over the four files' contents: identifies the data version.
    pub fingerprint: String,
    /// Mean and std the images were normalised with.
    pub normalisation: [f64; 2],
}

impl Dataset {
    /// Moves every split to `device` once (the trainer then indexes in place).
    pub fn to_device(self, device: tch::Device) -> Dataset {
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

/// How to load: validation size and the seed that picks it.
pub struct LoadOptions {
    pub val_size: usize,
    pub seed: u64,
}

impl Dataset {
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
        use std::io::Read;
        let read = |name: &str| -> Result<Vec<u8>, DataError> {
            let path = dir.join(format!("{name}.gz"));
            let f = std::fs::File::open(&path).map_err(|e| DataError::Invalid {
                path: path.clone(),
                what: e.to_string(),
            })?;
            let mut v = Vec::new();
            flate2::read::GzDecoder::new(f)
                .read_to_end(&mut v)
                .map_err(|e| DataError::Invalid {
                    path: path.clone(),
                    what: e.to_string(),
                })?;
            Ok(v)
        };
        let imgs = |name: &str| -> Result<Tensor, DataError> {
            let v = read(name)?;
            let n = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) as i64;
            Ok(Tensor::from_slice(&v[16..])
                .view([n, 1, 28, 28])
                .to_kind(tch::Kind::Float)
                / 255.0)
        };
        let labels = |name: &str| -> Result<Tensor, DataError> {
            let v = read(name)?;
            Ok(Tensor::from_slice(&v[8..]).to_kind(tch::Kind::Int64))
        };
        let norm = |t: Tensor| (t - 0.1307) / 0.3081;
        let tx = norm(imgs("train-images-idx3-ubyte")?);
        let ty = labels("train-labels-idx1-ubyte")?;
        let n = ty.size()[0] as usize;
        let perm = Tensor::from_slice(&rng::permutation(n, opts.seed));
        let vi = perm.narrow(0, 0, opts.val_size as i64);
        let ti = perm.narrow(0, opts.val_size as i64, (n - opts.val_size) as i64);
        Ok(Dataset {
            train: Split {
                images: tx.index_select(0, &ti),
                labels: ty.index_select(0, &ti),
            },
            val: Split {
                images: tx.index_select(0, &vi),
                labels: ty.index_select(0, &vi),
            },
            test: Split {
                images: norm(imgs("t10k-images-idx3-ubyte")?),
                labels: labels("t10k-labels-idx1-ubyte")?,
            },
            num_classes: 10,
            fingerprint: "tmpfingerprint".into(),
            normalisation: [0.1307, 0.3081],
        })
    }
}

/// STUB (data helper replaces): deterministic random streams.
pub mod rng {
    /// Mixes two words into a well-spread one (splitmix64 finaliser).
    pub fn mix(a: u64, b: u64) -> u64 {
        let mut z = a ^ b
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A permutation of 0..n determined by `key`.
    pub fn permutation(n: usize, key: u64) -> Vec<i64> {
        let mut v: Vec<i64> = (0..n as i64).collect();
        let mut s = key;
        for i in (1..n).rev() {
            s = mix(s, i as u64);
            v.swap(i, (s % (i as u64 + 1)) as usize);
        }
        v
    }
}

/// STUB (data helper replaces): random shifts.
pub fn augment_shift(images: &Tensor, _max_shift: i64) -> Tensor {
    images.shallow_clone()
}
