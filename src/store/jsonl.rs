//! Append-only JSON-lines logs (events, webhook deliveries, the study
//! journal, Katib's metrics file): read what is there, cut a torn last line
//! left by a crash mid-append, append fsynced lines.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// An open log file positioned for appending.
pub struct JsonlLog {
    path: PathBuf,
    file: File,
}

/// Reads every complete line that parses as `T` (others are skipped with a
/// warning); returns them with the length of the complete-line prefix and the
/// file's length.
pub fn read<T: DeserializeOwned>(path: &Path) -> std::io::Result<(Vec<T>, usize, usize)> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((vec![], 0, 0)),
        Err(e) => return Err(e),
    };
    let mut items = Vec::new();
    let mut good = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if !line.ends_with(b"\n") {
            break;
        }
        good += line.len();
        match serde_json::from_slice::<T>(line) {
            Ok(item) => items.push(item),
            Err(e) => tracing::warn!(path = %path.display(), "skipping an unreadable line: {e}"),
        }
    }
    Ok((items, good, bytes.len()))
}

impl JsonlLog {
    /// Opens `path` for appending and returns its readable records; a torn
    /// last line is cut off (with a warning) so the next append starts clean.
    pub fn open<T: DeserializeOwned>(path: &Path) -> std::io::Result<(JsonlLog, Vec<T>)> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let (items, good, total) = read(path)?;
        if good < total {
            tracing::warn!(path = %path.display(), "log ends in a torn line (crash mid-append); dropping it");
        }
        Ok((JsonlLog::open_at(path, good, total)?, items))
    }

    /// Opens `path` (created if missing) for appending, first cutting it to
    /// `good` bytes when it holds `total` (the complete-line prefix its
    /// reader found: a crash mid-append leaves a torn tail).
    pub fn open_at(path: &Path, good: usize, total: usize) -> std::io::Result<JsonlLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        if good < total {
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        Ok(JsonlLog {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a line and fsyncs it.
    pub fn append<T: Serialize>(&mut self, item: &T) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(item).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.append_line(&line)
    }

    /// Appends one serialized line (ending in its newline) and fsyncs it.
    pub fn append_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.file.write_all(line)?;
        self.file.sync_data()
    }
}

/// Appends one record as a line to `path` (created if missing) and fsyncs
/// it: for a log written a line at a time and never read back here (Katib's
/// metrics file).
pub fn append_one<T: Serialize>(path: &Path, item: &T) -> std::io::Result<()> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    JsonlLog {
        path: path.to_path_buf(),
        file,
    }
    .append(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_cut_and_bad_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        fs::write(&path, "1\nnot json\n2\n{\"torn").unwrap();
        let (mut log, items) = JsonlLog::open::<u32>(&path).unwrap();
        assert_eq!(items, vec![1, 2]);
        log.append(&3u32).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "1\nnot json\n2\n3\n");
    }

    #[test]
    fn append_one_creates_then_appends_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        append_one(&path, &serde_json::json!({"a": "1"})).unwrap();
        append_one(&path, &serde_json::json!({"a": "2"})).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"a\":\"1\"}\n{\"a\":\"2\"}\n"
        );
    }
}
