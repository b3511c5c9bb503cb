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
}

/// How to load: validation size and the seed that picks it.
pub struct LoadOptions {
    pub val_size: usize,
    pub seed: u64,
}

impl Dataset {
    pub fn load(_dir: &Path, _opts: &LoadOptions) -> Result<Dataset, DataError> {
        unimplemented!("data helper")
    }
}
