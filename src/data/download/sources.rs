//! What a download fetches: the MNIST mirrors (the defaults, the
//! `TRAINERD_MNIST_MIRRORS` list) and the four files pinned by length and
//! SHA-256 of their decompressed content.

use crate::data::layout::Part;

/// Where MNIST is fetched from unless configured otherwise (torchvision's and
/// TensorFlow's mirrors of the original files).
pub const DEFAULT_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// The environment variable that overrides the mirror list (named in messages).
pub const MIRRORS_ENV: &str = "TRAINERD_MNIST_MIRRORS";

/// What a file must decompress to.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Which file of the layout (fetched as `<file_name>.gz`).
    pub part: Part,
    /// Decompressed length in bytes.
    pub len: u64,
    /// Hex SHA-256 of the decompressed bytes.
    pub sha256: String,
}

/// The four MNIST files (SHA-256 of the decompressed files; their MD5s match
/// the published 6bbc9ace…, a25bea73…, 2646ac64…, 27ae3e4e…).
pub fn mnist_files() -> [Expected; 4] {
    let e = |part, len, sha256: &str| Expected {
        part,
        len,
        sha256: sha256.to_string(),
    };
    [
        e(
            Part::TrainImages,
            47_040_016,
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        e(
            Part::TrainLabels,
            60_008,
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        e(
            Part::TestImages,
            7_840_016,
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        e(
            Part::TestLabels,
            10_008,
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ]
}

/// The default mirrors as owned strings.
pub fn default_mirrors() -> Vec<String> {
    DEFAULT_MIRRORS.iter().map(|s| s.to_string()).collect()
}

/// Parses a comma-separated mirror list (as in [`MIRRORS_ENV`]); blanks are dropped.
pub fn parse_mirrors(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
