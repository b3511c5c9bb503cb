//! Whole-file-or-nothing writes for the small files outside checkpoints (the
//! champion's weights and card, the report, downloaded data): a temp file
//! beside the target, fsync, rename, directory fsync. A crash leaves the old
//! file or the new one; a failure removes the temp file. Checkpoints have
//! their own writer with fault points (`checkpoint.rs`).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The file or directory an atomic write failed on, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct AtomicWriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Writes `path` through `fill`, which writes the whole content to the temp
/// path it is given. Creates the parent directory if needed.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<(), AtomicWriteError> {
    let fail = |p: &Path| {
        let p = p.to_path_buf();
        move |source| AtomicWriteError { path: p, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(fail(dir))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = fill(&tmp).and_then(|()| File::open(&tmp)?.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(fail(&tmp)(e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(fail(path)(e));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail(dir))
}

/// [`write_atomic`] for content already in memory.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    write_atomic(path, |tmp| fs::write(tmp, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::sorted_names;

    #[test]
    fn replaces_the_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("card.json");
        write_bytes_atomic(&path, b"one").unwrap();
        write_bytes_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(sorted_names(&dir.path().join("sub")), ["card.json"]);
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file_and_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        write_bytes_atomic(&path, b"old").unwrap();
        let err = write_atomic(&path, |tmp| {
            fs::write(tmp, b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(err.path.starts_with(dir.path()));
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(sorted_names(dir.path()), ["model.bin"]);
    }
}
