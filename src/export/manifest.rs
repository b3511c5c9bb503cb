//! Checksums of the champion's files: the list that goes into `model.json`
//! (`files`), and [`verify`], which everything that loads the champion runs
//! first, so a damaged file is an error naming it, never a silent wrong answer.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{io_err, ExportError};
pub use crate::model::card::FileEntry;
use crate::model::card::ModelCard;

/// The files of an export, in the order they were written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Entries for `paths` (relative to `dir`), hashed from disk.
    pub fn collect(dir: &Path, paths: &[String]) -> Result<Manifest, ExportError> {
        let files = paths
            .iter()
            .map(|p| entry(dir, p))
            .collect::<Result<_, _>>()?;
        Ok(Manifest { files })
    }

    pub fn push(&mut self, entry: FileEntry) {
        self.files.push(entry);
    }
}

/// Writes `dir/rel` atomically (temp file, fsync, rename).
pub fn write_file(dir: &Path, rel: &str, bytes: &[u8]) -> Result<(), ExportError> {
    crate::store::write_bytes_atomic(&dir.join(rel), bytes).map_err(|e| io_err(&e.path, e.source))
}

/// The manifest entry of `dir/rel` as it is on disk.
pub fn entry(dir: &Path, rel: &str) -> Result<FileEntry, ExportError> {
    let path = dir.join(rel);
    let (sha256, bytes) = hash_file(&path).map_err(|e| io_err(&path, e))?;
    Ok(FileEntry {
        path: rel.to_string(),
        sha256,
        bytes,
    })
}

/// SHA-256 (hex) and length of a file, read in pieces (memory stays flat).
fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// A listed path must stay inside the directory: relative, no `..`.
fn is_inside(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Checks every file `card.files` lists in `dir` (size, then SHA-256); the
/// error names the first file that differs. A card written before
/// checksums existed lists nothing and passes.
pub fn verify(dir: &Path, card: &ModelCard) -> Result<(), ExportError> {
    for want in &card.files {
        let path = dir.join(&want.path);
        let corrupt = |what: String| ExportError::Corrupt {
            path: path.clone(),
            what,
        };
        if !is_inside(&want.path) {
            return Err(corrupt(format!(
                "model.json lists {:?}, a path outside {}",
                want.path,
                dir.display()
            )));
        }
        let meta = std::fs::metadata(&path)
            .map_err(|e| corrupt(format!("listed in model.json but {e}")))?;
        if !meta.is_file() {
            return Err(corrupt(
                "listed in model.json but not a regular file".into(),
            ));
        }
        if meta.len() != want.bytes {
            return Err(corrupt(format!(
                "is {} bytes, model.json says {}",
                meta.len(),
                want.bytes
            )));
        }
        let (sha256, _) = hash_file(&path).map_err(|e| io_err(&path, e))?;
        if sha256 != want.sha256 {
            return Err(corrupt(format!(
                "SHA-256 {sha256} differs from the {} in model.json",
                want.sha256
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card_with(files: Vec<FileEntry>) -> ModelCard {
        let mut card = crate::export::card::tests::sample_card();
        card.files = files;
        card
    }

    #[test]
    fn verify_names_a_flipped_byte_a_truncation_and_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write_file(d, "a.bin", b"hello world").unwrap();
        write_file(d, "sub/b.bin", b"more").unwrap();
        let m = Manifest::collect(d, &["a.bin".into(), "sub/b.bin".into()]).unwrap();
        let card = card_with(m.files.clone());
        verify(d, &card).unwrap();
        assert_eq!(m.files[0].bytes, 11);

        std::fs::write(d.join("a.bin"), b"hellO world").unwrap();
        let err = verify(d, &card).unwrap_err().to_string();
        assert!(err.contains("a.bin") && err.contains("SHA-256"), "{err}");
        std::fs::write(d.join("a.bin"), b"hello").unwrap();
        let err = verify(d, &card).unwrap_err().to_string();
        assert!(err.contains("a.bin") && err.contains("5 bytes"), "{err}");
        std::fs::write(d.join("a.bin"), b"hello world").unwrap();
        std::fs::remove_file(d.join("sub/b.bin")).unwrap();
        let err = verify(d, &card).unwrap_err();
        assert!(err.to_string().contains("b.bin"), "{err}");
        assert_eq!(crate::exit::ExitStatus::exit_code(&err), crate::exit::DATA);
    }

    #[test]
    fn paths_outside_the_directory_are_refused_and_old_cards_pass() {
        let dir = tempfile::tempdir().unwrap();
        verify(dir.path(), &card_with(vec![])).unwrap();
        for bad in ["../x", "/etc/passwd", ""] {
            let card = card_with(vec![FileEntry {
                path: bad.into(),
                sha256: String::new(),
                bytes: 0,
            }]);
            let err = verify(dir.path(), &card).unwrap_err().to_string();
            assert!(err.contains("outside"), "{bad}: {err}");
        }
    }
}
