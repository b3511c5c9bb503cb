//! The MNIST layout's four files ([`Part`]): their accepted names (raw or
//! `.gz`, dash or dot spelling), and [`locate`], which finds all four in a
//! directory or names what is missing.

use std::path::{Path, PathBuf};

use super::DataError;

/// One of the four files of the MNIST layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    TrainImages,
    TrainLabels,
    TestImages,
    TestLabels,
}

impl Part {
    /// All four, in fingerprint order.
    pub const ALL: [Part; 4] = [
        Part::TrainImages,
        Part::TrainLabels,
        Part::TestImages,
        Part::TestLabels,
    ];

    /// The canonical (uncompressed) file name, e.g. `train-images-idx3-ubyte`.
    pub fn file_name(self) -> &'static str {
        match self {
            Part::TrainImages => "train-images-idx3-ubyte",
            Part::TrainLabels => "train-labels-idx1-ubyte",
            Part::TestImages => "t10k-images-idx3-ubyte",
            Part::TestLabels => "t10k-labels-idx1-ubyte",
        }
    }

    /// Names accepted for this part, in order of preference: raw before gzip
    /// (no decompression), the canonical dash spelling before the dot one.
    pub fn candidates(self) -> [String; 4] {
        let dash = self.file_name();
        let dot = dash.replacen("-idx", ".idx", 1);
        [
            dash.to_string(),
            format!("{dash}.gz"),
            dot.clone(),
            format!("{dot}.gz"),
        ]
    }

    /// The first accepted name that is a file in `dir`; else the first that
    /// exists as anything (a directory, a broken link, a symlink loop), so
    /// that reading it names what is in the way instead of another file.
    pub fn find(self, dir: &Path) -> Option<PathBuf> {
        let paths = self.candidates().map(|n| dir.join(n));
        paths
            .iter()
            .find(|p| p.is_file())
            .or_else(|| paths.iter().find(|p| p.symlink_metadata().is_ok()))
            .cloned()
    }
}

/// The four files' paths, or an error naming what is missing.
pub fn locate(dir: &Path) -> Result<[PathBuf; 4], DataError> {
    let found = Part::ALL.map(|p| p.find(dir));
    if let [Some(a), Some(b), Some(c), Some(d)] = &found {
        return Ok([a.clone(), b.clone(), c.clone(), d.clone()]);
    }
    let layout = Part::ALL
        .iter()
        .map(|p| format!("{}[.gz]", p.file_name()))
        .collect::<Vec<_>>()
        .join(", ");
    let what = if !dir.is_dir() {
        format!(
            "the data directory does not exist; mount a data set in the MNIST layout \
             ({layout}) there, or let trainerd download MNIST into it"
        )
    } else if found.iter().all(Option::is_none) {
        format!(
            "holds no data set: expected the MNIST layout ({layout}); mount one there, or let \
             trainerd download MNIST into it"
        )
    } else {
        let missing = Part::ALL
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(p, _)| format!("{}[.gz]", p.file_name()))
            .collect::<Vec<_>>()
            .join(", ");
        format!("the data set is incomplete: missing {missing} (MNIST layout: {layout})")
    };
    Err(DataError::Missing {
        dir: dir.to_path_buf(),
        what,
    })
}
