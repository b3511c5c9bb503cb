//! The image-folder layout: `train/<class>/*.{png,jpg,jpeg}` and optionally
//! `test/<class>/…`, listed, checked and fingerprinted without decoding.
//!
//! Decisions a reader of the numbers needs:
//! - **Classes** are the folder names under `train/`, sorted (byte order):
//!   label `i` is the `i`-th name. 2 to 256 classes. A class folder in `test/`
//!   that `train/` lacks is an error; one with no test images is not.
//! - **Files**: `.png`, `.jpg`, `.jpeg` (any case) directly in a class folder;
//!   hidden files and other names (a `.part` being copied, a README) are
//!   skipped; a folder inside a class folder, a file directly in `train/`, or
//!   a class folder without images is an error naming it.
//! - **Order**: by class, then file name: deterministic whatever the file system.
//! - **Fingerprint**: SHA-256 over every file's relative path, size and
//!   content SHA-256, training files then test files, plus `--image-size`
//!   when given (it changes the tensors).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::source::ImageSize;
use super::DataError;

/// Most image files a data set may list (the listing itself must stay bounded).
pub const MAX_FILES: usize = 4_000_000;
/// Most classes (labels are bytes).
pub const MAX_CLASSES: usize = 256;

/// One image file of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    /// Relative to the data dir, `/`-separated: `train/cat/001.png`.
    pub rel: String,
    pub label: u8,
    pub size: u64,
}

/// The listed data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub classes: Vec<String>,
    pub train: Vec<Entry>,
    /// `None` when the dir has no `test/`.
    pub test: Option<Vec<Entry>>,
}

/// Is `name` an image file of the set (by extension, not hidden)?
pub fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.starts_with('.')
        && [".png", ".jpg", ".jpeg"]
            .iter()
            .any(|e| lower.ends_with(e) && lower.len() > e.len())
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, PathBuf, fs::Metadata)>, DataError> {
    let read_err = |error| DataError::Read {
        path: dir.to_path_buf(),
        error,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(DataError::invalid(
                &path,
                "has a name that is not UTF-8; rename it",
            ));
        };
        if name.starts_with('.') {
            continue;
        }
        // Follows symlinks: a linked class folder or image counts as one.
        let meta = fs::metadata(&path).map_err(|error| DataError::Read {
            path: path.clone(),
            error,
        })?;
        out.push((name, path, meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The class folders of `split_dir` (`train/` or `test/`), sorted.
fn class_dirs(split_dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut classes = Vec::new();
    for (name, path, meta) in read_dir_sorted(split_dir)? {
        if meta.is_dir() {
            classes.push((name, path));
        } else if is_image_name(&name) {
            return Err(DataError::invalid(
                &path,
                format!(
                    "is an image directly in {}: images go in a folder per class, e.g. {}/<class>/{name}",
                    split_dir.display(),
                    split_dir.display()
                ),
            ));
        }
    }
    Ok(classes)
}

/// The images of one class folder, sorted; `budget` is how many more may be listed.
fn class_files(dir: &Path, rel: &str, label: u8, out: &mut Vec<Entry>) -> Result<(), DataError> {
    let before = out.len();
    for (name, path, meta) in read_dir_sorted(dir)? {
        if meta.is_dir() {
            return Err(DataError::invalid(
                &path,
                "is a folder inside a class folder, nested too deep: images go directly in \
                 <train|test>/<class>/; move them up, or remove the folder",
            ));
        }
        if !is_image_name(&name) || !meta.is_file() {
            tracing::debug!(file = %path.display(), "not an image file: skipped");
            continue;
        }
        if out.len() >= MAX_FILES {
            return Err(DataError::invalid(
                &path,
                format!(
                    "the data set holds more than {MAX_FILES} images, more than trainerd lists; \
                     use a subset"
                ),
            ));
        }
        out.push(Entry {
            rel: format!("{rel}/{name}"),
            path,
            label,
            size: meta.len(),
        });
    }
    if out.len() == before {
        return Err(DataError::invalid(
            dir,
            "is a class folder without images (.png, .jpg, .jpeg); add images, or remove the \
             folder",
        ));
    }
    Ok(())
}

/// Lists the data set in `dir` (see the module docs for the rules).
pub fn scan(dir: &Path) -> Result<Layout, DataError> {
    let train_dir = dir.join("train");
    if !train_dir.is_dir() {
        return Err(DataError::Missing {
            dir: dir.to_path_buf(),
            what: "holds no train/ folder: an image-folder data set is train/<class>/*.png|jpg \
                   (and optionally test/<class>/…); add one, or pass --data-format idx"
                .into(),
        });
    }
    let dirs = class_dirs(&train_dir)?;
    if dirs.len() < 2 || dirs.len() > MAX_CLASSES {
        return Err(DataError::invalid(
            &train_dir,
            format!(
                "holds {} class folders, but a classifier needs 2 to {MAX_CLASSES}; add a folder \
                 per class with its images",
                dirs.len()
            ),
        ));
    }
    let classes: Vec<String> = dirs.iter().map(|(n, _)| n.clone()).collect();
    let mut train = Vec::new();
    for (label, (name, path)) in dirs.iter().enumerate() {
        class_files(path, &format!("train/{name}"), label as u8, &mut train)?;
    }
    let test_dir = dir.join("test");
    let test = if test_dir.is_dir() {
        let mut test = Vec::new();
        for (name, path) in class_dirs(&test_dir)? {
            let Some(label) = classes.iter().position(|c| *c == name) else {
                return Err(DataError::invalid(
                    &path,
                    format!(
                        "is a class that train/ does not have (its classes: {}); add \
                         train/{name}/ with images, or remove this folder",
                        classes.join(", ")
                    ),
                ));
            };
            class_files(&path, &format!("test/{name}"), label as u8, &mut test)?;
        }
        Some(test)
    } else {
        None
    };
    Ok(Layout {
        classes,
        train,
        test,
    })
}

impl Layout {
    /// Every entry: training then test.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.train.iter().chain(self.test.iter().flatten())
    }
}

/// The fingerprint from the entries (in [`Layout::entries`] order) and their
/// content SHA-256s.
pub fn fingerprint<'a>(
    entries: impl Iterator<Item = (&'a Entry, &'a [u8; 32])>,
    image_size: Option<ImageSize>,
) -> String {
    let mut h = Sha256::new();
    h.update(b"trainerd image folders v1\n");
    for (e, sha) in entries {
        h.update(e.rel.as_bytes());
        h.update([0]);
        h.update(e.size.to_le_bytes());
        h.update(sha);
    }
    if let Some(s) = image_size {
        h.update(format!("image-size {}x{}", s.height, s.width).as_bytes());
    }
    hex::encode(h.finalize())
}

/// SHA-256 of a file's content and its last bytes, read in pieces (the
/// watcher's memory does not grow).
fn sha256_and_tail(path: &Path) -> Result<([u8; 32], Vec<u8>), DataError> {
    let read_err = |error| DataError::Read {
        path: path.to_path_buf(),
        error,
    };
    let mut f = fs::File::open(path).map_err(read_err)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut tail = Vec::new();
    loop {
        let n = f.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            return Ok((h.finalize().into(), tail));
        }
        h.update(&buf[..n]);
        tail.extend_from_slice(&buf[n.saturating_sub(TAIL)..n]);
        let cut = tail.len().saturating_sub(TAIL);
        tail.drain(..cut);
    }
}

/// Bytes kept of a file's end: a PNG's IEND chunk.
const TAIL: usize = 12;
const PNG_END: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// SHA-256 of a file's content.
pub fn file_sha256(path: &Path) -> Result<[u8; 32], DataError> {
    sha256_and_tail(path).map(|(sha, _)| sha)
}

/// SHA-256 of a file that ends as a complete PNG (IEND chunk) or JPEG (EOI
/// marker) does; a file being copied usually does not yet.
pub fn file_sha256_complete(path: &Path) -> Result<[u8; 32], DataError> {
    let (sha, tail) = sha256_and_tail(path)?;
    // JPEG writers may pad after the EOI marker: look for it in the last bytes.
    let jpeg_end = tail.windows(2).any(|w| w == [0xFF, 0xD9]);
    if tail != PNG_END && !jpeg_end {
        return Err(DataError::invalid(
            path,
            "does not end as a complete PNG or JPEG does (still being copied, or truncated); \
             finish copying it, or replace it",
        ));
    }
    Ok(sha)
}

/// The fingerprint [`super::Dataset::load`] gives the folders in `dir`,
/// hashing file by file (for the watcher).
pub fn fingerprint_dir(dir: &Path, image_size: Option<ImageSize>) -> Result<String, DataError> {
    let layout = scan(dir)?;
    let shas = layout
        .entries()
        .map(|e| file_sha256(&e.path))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fingerprint(layout.entries().zip(&shas), image_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, rel: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, rel.as_bytes()).unwrap();
    }

    #[test]
    fn classes_are_sorted_folder_names_and_files_sorted() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "train/b/2.png",
            "train/b/1.JPG",
            "train/a/x.jpeg",
            "train/a/.hidden.png",
        ] {
            touch(d.path(), f);
        }
        touch(d.path(), "train/a/notes.txt");
        touch(d.path(), "test/b/9.png");
        let l = scan(d.path()).unwrap();
        assert_eq!(l.classes, ["a", "b"]);
        let rels: Vec<_> = l.train.iter().map(|e| (e.rel.as_str(), e.label)).collect();
        assert_eq!(
            rels,
            [
                ("train/a/x.jpeg", 0),
                ("train/b/1.JPG", 1),
                ("train/b/2.png", 1)
            ]
        );
        assert_eq!(l.test.as_ref().unwrap()[0].label, 1);
        let fp = fingerprint_dir(d.path(), None).unwrap();
        assert_eq!(fp, fingerprint_dir(d.path(), None).unwrap());
        touch(d.path(), "train/a/y.png");
        assert_ne!(fp, fingerprint_dir(d.path(), None).unwrap());
    }

    #[test]
    fn bad_layouts_name_the_folder() {
        let cases: [(&[&str], &[&str], &str); 4] = [
            (
                &["train/a/1.png", "train/b/1.png", "test/c/1.png"],
                &[],
                "test/c",
            ),
            (&["train/a/1.png", "train/b/sub/1.png"], &[], "train/b/sub"),
            (&["train/a/1.png", "train/b/notes.txt"], &[], "train/b"),
            (
                &["train/a/1.png", "train/b/1.png"],
                &["train/x.png"],
                "train/x.png",
            ),
        ];
        for (files, loose, named) in cases {
            let d = tempfile::tempdir().unwrap();
            for f in files.iter().chain(loose) {
                touch(d.path(), f);
            }
            let e = scan(d.path()).unwrap_err();
            assert!(e.to_string().contains(named), "{named}: {e}");
            assert_eq!(crate::exit::ExitStatus::exit_code(&e), crate::exit::DATA);
        }
    }

    #[test]
    fn only_a_file_that_ends_as_a_png_or_jpeg_does_counts_as_complete() {
        let d = tempfile::tempdir().unwrap();
        let png = d.path().join("a.png");
        let mut bytes = b"\x89PNG\r\n\x1a\n some chunks".to_vec();
        fs::write(&png, &bytes).unwrap();
        let e = file_sha256_complete(&png).unwrap_err().to_string();
        assert!(
            e.contains("a.png") && e.contains("still being copied"),
            "{e}"
        );
        assert!(
            !e.contains("  ") && !e.contains('\n'),
            "one line, single spaces: {e:?}"
        );
        bytes.extend_from_slice(&PNG_END);
        fs::write(&png, &bytes).unwrap();
        assert_eq!(
            file_sha256_complete(&png).unwrap(),
            file_sha256(&png).unwrap()
        );
        let jpeg = d.path().join("b.jpg");
        fs::write(&jpeg, [0xFF, 0xD8, 1, 2, 0xFF, 0xD9, 0, 0]).unwrap();
        assert!(
            file_sha256_complete(&jpeg).is_ok(),
            "EOI followed by padding"
        );
    }
}
