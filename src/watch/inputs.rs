//! What the watcher looks at: the data files (IDX consistency, content
//! fingerprint), the config file (parses?), and cheap stat signatures that
//! say whether either may have changed since the last look.
//!
//! The data checks use the data module's IDX reader and image-folder lister (the checks training
//! makes, short of building tensors), so what the watcher accepts loads.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::data::layout::locate;
use crate::data::source::{self, SourceOptions};
use crate::data::{folders, idx};

/// Is `name` one of the data set's files (`train-images-idx3-ubyte[.gz]` …)?
/// Hidden names and anything not ending in `ubyte`/`ubyte.gz` (a temp file
/// being copied, a README) are not data.
pub fn is_data_file(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with("ubyte") || name.ends_with("ubyte.gz"))
}

/// The data files in `dir`, sorted by name.
pub fn data_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(is_data_file))
        .map(|e| e.path())
        .collect();
    files.sort();
    Ok(files)
}

/// Size, mtime (ns), inode and device of a path (following symlinks); changes
/// whenever the file is rewritten or replaced.
pub type StatSig = (u64, i64, u64, u64);

fn stat_sig(path: &Path) -> Option<StatSig> {
    let m = fs::metadata(path).ok()?;
    Some((
        m.len(),
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.ino(),
        m.dev(),
    ))
}

/// Cheap signature of the data dir: every data file's [`StatSig`] (for image
/// folders: every class folder and image file under `train/` and `test/`).
pub fn data_signature(dir: &Path, src: &SourceOptions) -> BTreeMap<PathBuf, Option<StatSig>> {
    let mut files = data_files(dir).unwrap_or_default();
    if is_folders(dir, src) {
        folder_files(dir, &mut files);
    }
    files
        .into_iter()
        .map(|p| {
            let sig = stat_sig(&p);
            (p, sig)
        })
        .collect()
}

/// Is `dir` read as image folders (with `--data-format` as `src` gives)?
pub fn is_folders(dir: &Path, src: &SourceOptions) -> bool {
    src.format.resolve(dir) == source::DataFormat::Folders
}

/// The class folders and image files under `dir/train` and `dir/test`
/// (bounded by [`folders::MAX_FILES`]).
fn folder_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let list = |d: &Path| -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(d) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        v.sort();
        v
    };
    for split in ["train", "test"] {
        for class in list(&dir.join(split)).into_iter().filter(|p| p.is_dir()) {
            for f in list(&class) {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if (folders::is_image_name(name) || f.is_dir()) && out.len() < folders::MAX_FILES {
                    out.push(f);
                }
            }
            out.push(class);
        }
    }
}

/// Cheap signature of one file (the config).
pub fn file_signature(path: &Path) -> Option<StatSig> {
    stat_sig(path)
}

/// Checks the data set's four files (each a complete IDX file whose header
/// matches its size; images and labels counts agree) and returns its
/// fingerprint — the same digest [`Dataset::load`] records, so it can be
/// compared with a model card's `data_fingerprint`; or the problems.
///
/// [`Dataset::load`]: crate::data::Dataset::load
pub fn inspect_data(dir: &Path, src: &SourceOptions) -> Result<String, Vec<String>> {
    if is_folders(dir, src) {
        return inspect_folders(dir, src.image_size);
    }
    let [train_x, train_y, test_x, test_y] = locate(dir).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    let mut hasher = Sha256::new();
    let mut counts = Vec::new();
    for (path, rank) in [(&train_x, 3), (&train_y, 1), (&test_x, 3), (&test_y, 1)] {
        // Hashed in pieces: the watcher's memory does not grow with the data.
        let shape = if rank == 3 {
            idx::IMAGES_RANK
        } else {
            idx::LABELS_RANK
        };
        match idx::digest(path, shape) {
            Ok((header, digest)) => {
                hasher.update(digest);
                counts.push(Some(header.dims[0]));
            }
            Err(e) => {
                problems.push(e.to_string());
                counts.push(None);
            }
        }
    }
    for (x, y, labels) in [(0, 1, &train_y), (2, 3, &test_y)] {
        if let (Some(n), Some(m)) = (counts[x], counts[y]) {
            if n != m {
                problems.push(format!(
                    "{}: holds {m} labels but the images file holds {n} (one of them not updated yet?)",
                    labels.display()
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(hex::encode(hasher.finalize()))
    } else {
        Err(problems)
    }
}

/// Image folders: the layout's rules, every image's header, and that every
/// file ends as a complete PNG or JPEG does (a half-copied file is a
/// problem, looked at again); the fingerprint [`Dataset::load`] records.
///
/// [`Dataset::load`]: crate::data::Dataset::load
fn inspect_folders(dir: &Path, size: Option<source::ImageSize>) -> Result<String, Vec<String>> {
    let layout = folders::scan(dir).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    let mut shas = Vec::new();
    for e in layout.entries() {
        let checked = folders::file_sha256_complete(&e.path)
            .and_then(|sha| crate::data::decode::probe(&e.path).map(|_| sha));
        match checked {
            Ok(sha) => shas.push(sha),
            Err(err) => {
                problems.push(err.to_string());
                shas.push([0; 32]);
            }
        }
        if problems.len() >= 10 {
            break;
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(folders::fingerprint(layout.entries().zip(&shas), size))
}

/// Reads the config file and checks that it parses as trainerd's TOML
/// config; returns a hash of its contents.
pub fn inspect_config(path: &Path) -> Result<String, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    crate::config::Options::parse_file(&text)?;
    Ok(hex::encode(Sha256::digest(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTO: SourceOptions = SourceOptions {
        format: source::DataFormat::Auto,
        image_size: None,
    };
    use crate::data::synth::write_synthetic_mnist;

    #[test]
    fn fingerprint_is_the_datasets_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        write_synthetic_mnist(p, 60, 20, 3).unwrap();
        let fp = inspect_data(p, &AUTO).unwrap();
        let opts = crate::data::LoadOptions {
            val_size: Some(10),
            ..Default::default()
        };
        let loaded = crate::data::Dataset::load(p, &opts).unwrap();
        assert_eq!(fp, loaded.fingerprint, "the watcher and the trainer agree");
        fs::write(p.join("README"), "not data").unwrap();
        assert_eq!(inspect_data(p, &AUTO).unwrap(), fp);
        write_synthetic_mnist(p, 60, 20, 4).unwrap();
        assert_ne!(inspect_data(p, &AUTO).unwrap(), fp);
    }

    #[test]
    fn truncated_and_mismatched_files_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        write_synthetic_mnist(p, 60, 20, 3).unwrap();
        let name = |part: crate::data::layout::Part| part.find(p).unwrap();
        let images = name(crate::data::layout::Part::TrainImages);
        let full = fs::read(&images).unwrap();
        fs::write(&images, &full[..full.len() / 2]).unwrap();
        let err = inspect_data(p, &AUTO).unwrap_err().join("\n");
        assert!(err.contains(&images.display().to_string()), "{err}");
        fs::write(&images, &full).unwrap();
        inspect_data(p, &AUTO).unwrap();
        // New training images, old labels: a pair caught half-updated.
        let other = tempfile::tempdir().unwrap();
        write_synthetic_mnist(other.path(), 70, 20, 3).unwrap();
        let new_images = crate::data::layout::Part::TrainImages
            .find(other.path())
            .unwrap();
        fs::copy(&new_images, &images).unwrap();
        let err = inspect_data(p, &AUTO).unwrap_err().join("\n");
        assert!(err.contains("60 labels") && err.contains("70"), "{err}");
        fs::remove_file(&images).unwrap();
        assert!(
            inspect_data(p, &AUTO).is_err(),
            "a missing file is a problem"
        );
    }

    #[test]
    fn an_image_added_or_removed_is_a_new_data_version_and_a_half_copy_is_not_one() {
        use crate::data::synth_folders::{write_synthetic_folders, FolderSpec};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let spec = FolderSpec {
            n_train: 40,
            n_test: 10,
            seed: 1,
            rgb: false,
            side: 12,
            ext: "png",
        };
        write_synthetic_folders(p, &spec).unwrap();
        assert!(is_folders(p, &AUTO));
        let fp = inspect_data(p, &AUTO).unwrap();
        let opts = crate::data::LoadOptions {
            val_size: Some(10),
            ..Default::default()
        };
        let loaded = crate::data::Dataset::load(p, &opts).unwrap();
        assert_eq!(fp, loaded.fingerprint, "the watcher and the trainer agree");
        let sig = data_signature(p, &AUTO);
        let extra = p.join("train/cup/new.png");
        let bytes = fs::read(
            p.join("train/cup")
                .read_dir()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap();
        fs::write(&extra, &bytes[..bytes.len() - 20]).unwrap();
        assert_ne!(
            data_signature(p, &AUTO),
            sig,
            "the stat signature sees the new file"
        );
        let err = inspect_data(p, &AUTO).unwrap_err().join("\n");
        assert!(err.contains("new.png") && err.contains("copied"), "{err}");
        fs::write(&extra, &bytes).unwrap();
        let added = inspect_data(p, &AUTO).unwrap();
        assert_ne!(added, fp, "an added image is a new version");
        fs::remove_file(&extra).unwrap();
        assert_eq!(
            inspect_data(p, &AUTO).unwrap(),
            fp,
            "removed again: the old version"
        );
        fs::write(p.join("train/cup/notes.txt"), "not data").unwrap();
        assert_eq!(inspect_data(p, &AUTO).unwrap(), fp);
    }

    #[test]
    fn data_file_names() {
        assert!(is_data_file("train-images-idx3-ubyte.gz"));
        assert!(is_data_file("t10k-labels.idx1-ubyte"));
        assert!(!is_data_file(".train-images-idx3-ubyte.gz"));
        assert!(!is_data_file("train-images-idx3-ubyte.gz.part"));
    }

    #[test]
    fn config_must_parse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("trainerd.toml");
        fs::write(&p, "epochs = 3\n").unwrap();
        let h = inspect_config(&p).unwrap();
        fs::write(&p, "epochs = \n").unwrap();
        assert!(inspect_config(&p).is_err());
        fs::write(&p, "epochz = 3\n").unwrap();
        assert!(inspect_config(&p).unwrap_err().contains("epochz"));
        fs::write(&p, "epochs = 4\n").unwrap();
        assert_ne!(inspect_config(&p).unwrap(), h);
    }
}
