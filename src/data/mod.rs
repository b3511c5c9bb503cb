//! Data: IDX files or image folders on disk -> a validated, in-memory [`Dataset`] of tensors.
//!
//! - [`source`]: which format a data dir holds (`--data-format`), `--image-size`
//! - [`idx`]: reads one IDX file (raw or gzip) and checks it against its header
//! - [`folders`]: lists and fingerprints `train/<class>/*.png|jpg` (and `test/`)
//! - [`decode`]: image headers and pixels (the `image` crate), on two threads
//! - [`images`]: image folders -> the same [`Dataset`] as IDX
//! - [`budget`]: the memory budget input data is held to before it is allocated
//! - [`in_memory`]: the loaded [`Dataset`] both loaders deliver: splits as
//!   tensors, [`LoadOptions`], the histogram and split building they share
//! - [`layout`]: the MNIST layout's four files and their accepted names, [`layout::locate`]
//! - [`dataset`]: the MNIST data set in a directory, the validation split,
//!   normalisation, the fingerprint; [`Dataset::load`] picks the loader
//! - [`augment`]: random-shift augmentation and the trainer's batch source (libtorch's RNG)
//! - [`download`]: fetches MNIST from mirrors into an empty data dir, verified
//! - [`split`]: the validation split: its default size, stratified by class
//! - [`rng`]: the deterministic Rust-side random streams (split, epoch order)
//! - `synth` (tests only, `tests/common/synth.rs`): writes small learnable IDX data sets
//! - `synth_folders` (tests only, `tests/common/synth_folders.rs`): the same
//!   patterns as image folders (PNG/JPEG, gray/RGB)
//!
//! Every malformed input becomes a [`DataError`] whose one-line message names
//! the file, what is wrong with it and, where there is one, the fix.

use std::path::PathBuf;

pub mod augment;
pub mod budget;
pub mod dataset;
pub mod decode;
pub mod download;
pub mod folders;
pub mod idx;
pub mod images;
pub mod in_memory;
pub mod layout;
pub mod rng;
pub mod source;
pub mod split;
#[cfg(test)]
#[path = "../../tests/common/synth.rs"]
pub(crate) mod synth;
#[cfg(test)]
#[path = "../../tests/common/synth_folders.rs"]
pub(crate) mod synth_folders;
#[cfg(test)]
mod synth_tests;

pub use augment::{augment_shift, BatchSource};
pub use download::ensure_mnist;
pub use in_memory::{batch, Dataset, LoadOptions, Split, DEFAULT_TARGET};

/// Everything that can be wrong with a data directory; always names the file
/// (or directory, or config key) at fault.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file exists but cannot be read (permissions, EIO). The OS error is
    /// part of the message, not a `source`: the binary prints error chains,
    /// and would print it twice.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file's content is malformed or inconsistent with the rest of the set.
    #[error("{}: {what}", path.display())]
    Invalid { path: PathBuf, what: String },
    /// The directory lacks files of the MNIST layout (or a `train/` folder).
    #[error("{}: {what}", dir.display())]
    Missing { dir: PathBuf, what: String },
    /// A loading option does not fit the data (e.g. `val_size` too large).
    #[error("{key}: {what}")]
    Option { key: &'static str, what: String },
    /// Writing a downloaded file failed (disk full, read-only mount).
    #[error("{}: cannot write: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    /// No mirror delivered a verified copy of a file.
    #[error("{}: {what}", dir.display())]
    Download { dir: PathBuf, what: String },
    /// SIGTERM/SIGINT arrived while MNIST was downloading: exit 143, nothing partial kept.
    #[error("{}: stopped by a signal while downloading MNIST; nothing partial was kept, the next start downloads again", dir.display())]
    Stopped { dir: PathBuf },
    /// libtorch could not build the tensors (usually: out of memory).
    #[error("{}: cannot build tensors: {what}", path.display())]
    Tensor { path: PathBuf, what: String },
}

impl crate::exit::ExitStatus for DataError {
    fn exit_code(&self) -> u8 {
        match self {
            DataError::Option { .. } => crate::exit::CONFIG,
            DataError::Write { .. } => crate::exit::IO,
            DataError::Tensor { .. } => 1,
            DataError::Stopped { .. } => crate::exit::STOPPED,
            DataError::Read { .. }
            | DataError::Invalid { .. }
            | DataError::Missing { .. }
            | DataError::Download { .. } => crate::exit::DATA,
        }
    }
}

impl DataError {
    /// Shorthand for [`DataError::Invalid`].
    pub(crate) fn invalid(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.into(),
            what: what.into(),
        }
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::PathBuf;

    /// The shared real MNIST copy (`../shared/data/mnist` from the project
    /// root, or any ancestor's `shared/data/mnist`, or `$TRAINERD_TEST_MNIST_DIR`).
    pub fn shared_mnist() -> Option<PathBuf> {
        if let Some(d) = std::env::var_os("TRAINERD_TEST_MNIST_DIR") {
            return Some(PathBuf::from(d));
        }
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|a| a.join("shared/data/mnist"))
            .find(|d| d.join("train-images-idx3-ubyte.gz").is_file())
    }
}
