//! Durable copies of a model directory (`best/` into `versions/N.staging/`,
//! a version into `best.staging/`): every file fsynced, every directory
//! fsynced after its entries, so that the rename that commits the copy
//! publishes complete files only. Only regular files and directories are
//! copied (a link or device is an error naming it), a named file at the top
//! comes last (the card: a staged card then means a complete copy).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Deepest directory nesting copied (a model repository is three deep).
const MAX_DEPTH: usize = 8;

/// The path a copy failed on, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct CopyError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Copies the tree `from` into the new directory `to` (which must not
/// exist), `last` (a file name directly in `from`) after everything else.
pub fn copy_tree(from: &Path, to: &Path, last: &str) -> Result<(), CopyError> {
    copy_dir(from, to, Some(last), 0)?;
    let parent = to.parent().unwrap_or(Path::new("."));
    sync_dir(parent)
}

fn fail(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError {
        path: path.to_path_buf(),
        source,
    }
}

fn copy_dir(from: &Path, to: &Path, last: Option<&str>, depth: usize) -> Result<(), CopyError> {
    if depth > MAX_DEPTH {
        let deep = io::Error::other(format!("nested deeper than {MAX_DEPTH} directories"));
        return Err(fail(from)(deep));
    }
    fs::create_dir(to).map_err(fail(to))?;
    let mut names: Vec<_> = fs::read_dir(from)
        .map_err(fail(from))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(fail(from))?;
    // Sorted, with `last` at the end: the same order on every run.
    names.sort_by_key(|n| {
        (
            Some(n.as_os_str()) == last.map(std::ffi::OsStr::new),
            n.clone(),
        )
    });
    for name in names {
        let (src, dst) = (from.join(&name), to.join(&name));
        let kind = fs::symlink_metadata(&src).map_err(fail(&src))?.file_type();
        if kind.is_dir() {
            copy_dir(&src, &dst, None, depth + 1)?;
        } else if kind.is_file() {
            copy_file(&src, &dst)?;
        } else {
            let odd = io::Error::other("not a regular file or directory; not copied");
            return Err(fail(&src)(odd));
        }
    }
    sync_dir(to)
}

fn copy_file(src: &Path, dst: &Path) -> Result<(), CopyError> {
    fs::copy(src, dst).map_err(fail(src))?;
    File::open(dst)
        .and_then(|f| f.sync_all())
        .map_err(fail(dst))
}

fn sync_dir(dir: &Path) -> Result<(), CopyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_nested_files_and_refuses_links_and_an_existing_target() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        fs::create_dir_all(from.join("repo/m/1")).unwrap();
        fs::write(from.join("model.json"), b"card").unwrap();
        fs::write(from.join("repo/m/1/model.onnx"), b"onnx").unwrap();
        let to = dir.path().join("to");
        copy_tree(&from, &to, "model.json").unwrap();
        assert_eq!(fs::read(to.join("model.json")).unwrap(), b"card");
        assert_eq!(fs::read(to.join("repo/m/1/model.onnx")).unwrap(), b"onnx");
        let again = copy_tree(&from, &to, "model.json").unwrap_err();
        assert_eq!(again.source.kind(), io::ErrorKind::AlreadyExists);

        std::os::unix::fs::symlink("/etc/passwd", from.join("link")).unwrap();
        let err = copy_tree(&from, &dir.path().join("to2"), "model.json").unwrap_err();
        assert!(err.to_string().contains("link") && err.to_string().contains("not a regular"));
        assert!(
            !dir.path().join("to2/model.json").exists(),
            "the card, copied last, is not there after a failed copy"
        );
    }
}
