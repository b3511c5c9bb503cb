//! Which kind of data set a data dir holds, and how image folders are read.
//!
//! - [`DataFormat`]: `--data-format idx|folders|auto` / `TRAINERD_DATA_FORMAT`.
//!   `auto` (the default) picks image folders when the dir holds a `train/`
//!   directory, else IDX (the MNIST layout, downloaded into an empty dir).
//! - [`ImageSize`]: `--image-size HxW`, resize every image to H×W (else all
//!   images must already share one size).
//!
//! Both travel as [`SourceOptions`], inside [`super::LoadOptions`] for
//! [`super::Dataset::load`] and beside the data dir for the download step.

use std::path::Path;

/// The format of the data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataFormat {
    /// Folders when the dir holds `train/`, else IDX.
    #[default]
    Auto,
    /// The MNIST layout of four IDX files.
    Idx,
    /// `train/<class>/*.{png,jpg,jpeg}` and optionally `test/<class>/…`.
    Folders,
}

impl DataFormat {
    /// Parses `idx`, `folders` or `auto` (case ignored).
    pub fn parse(s: &str) -> Result<DataFormat, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(DataFormat::Auto),
            "idx" | "mnist" => Ok(DataFormat::Idx),
            "folders" | "folder" | "images" => Ok(DataFormat::Folders),
            _ => Err(format!(
                "{s:?} is not a data format: give idx, folders or auto"
            )),
        }
    }

    /// What `dir` is read as: `Auto` resolved by whether `dir/train` is a directory.
    pub fn resolve(self, dir: &Path) -> DataFormat {
        match self {
            DataFormat::Auto if dir.join("train").is_dir() => DataFormat::Folders,
            DataFormat::Auto => DataFormat::Idx,
            f => f,
        }
    }
}

/// `--image-size HxW`: height and width every image is resized to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    pub height: u32,
    pub width: u32,
}

/// Largest side `--image-size` accepts.
pub const MAX_SIDE: u32 = 4096;

impl ImageSize {
    /// Parses `32x32`, `28X28`, `64×48` (height first), each side 1..=4096.
    pub fn parse(s: &str) -> Result<ImageSize, String> {
        let bad = || {
            format!("{s:?} is not an image size such as 32x32 (height x width, 1 to {MAX_SIDE})")
        };
        let t = s.trim().to_ascii_lowercase().replace('×', "x");
        let (h, w) = t.split_once('x').ok_or_else(bad)?;
        let side = |v: &str| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_SIDE).contains(n))
                .ok_or_else(bad)
        };
        Ok(ImageSize {
            height: side(h)?,
            width: side(w)?,
        })
    }
}

/// The data-source options of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceOptions {
    pub format: DataFormat,
    pub image_size: Option<ImageSize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_sizes_parse() {
        assert_eq!(DataFormat::parse("IDX"), Ok(DataFormat::Idx));
        assert_eq!(DataFormat::parse("folders"), Ok(DataFormat::Folders));
        assert_eq!(DataFormat::parse("auto"), Ok(DataFormat::Auto));
        assert!(DataFormat::parse("csv").is_err());
        assert_eq!(
            ImageSize::parse("32x24"),
            Ok(ImageSize {
                height: 32,
                width: 24
            })
        );
        assert_eq!(ImageSize::parse("8×8").map(|s| s.width), Ok(8));
        for bad in ["", "32", "0x3", "x4", "5000x5", "axb"] {
            assert!(ImageSize::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn auto_picks_folders_when_there_is_a_train_dir() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(DataFormat::Auto.resolve(d.path()), DataFormat::Idx);
        std::fs::create_dir(d.path().join("train")).unwrap();
        assert_eq!(DataFormat::Auto.resolve(d.path()), DataFormat::Folders);
        assert_eq!(DataFormat::Idx.resolve(d.path()), DataFormat::Idx);
    }
}
