//! Resume without duplicate steps: before a trial that resumes from its
//! checkpoint at step S writes again, every event file of the trial is cut
//! after its last good record at or before S. Records after S were written
//! by a run that crashed before checkpointing them; the resumed run writes
//! those steps again (training is exact on resume), so keeping them would
//! show each such step twice. A torn or corrupt tail is cut with them. What
//! survives gives, per tag, the newest step on file, and the writer skips a
//! tag's value at a step not after that one (the final test accuracy of a
//! trial that crashed after writing it but before its end was journaled).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Seek};
use std::path::{Path, PathBuf};

use prost::Message;

use super::event::Event;
use super::record::{read_next, Next};

/// Largest record data read back (the writer's records are under 200 bytes).
pub const MAX_RECORD: u64 = 1 << 20;

/// What the kept part of a trial's event files holds.
#[derive(Debug, Default, PartialEq)]
pub struct Kept {
    /// Per tag, the newest step on file.
    pub last_step: HashMap<String, i64>,
    /// Bytes of the files scanned, before cutting.
    pub bytes: u64,
    /// Bytes cut off (records after the resume step, a torn tail).
    pub cut: u64,
}

/// How far one file is good: its length to keep, and what it holds up to there.
struct FileScan {
    keep: u64,
    len: u64,
}

/// The event files of `dir`, oldest first (their names start with the
/// creation time, in seconds of the same width for centuries).
pub fn event_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(super::FILE_PREFIX) && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Cuts every file of `files` after its last good record at a step at or
/// before `resume_step`, and reports what is kept. More than `max_bytes`
/// in all is refused (unread, uncut): the caller stops writing rather than
/// risk duplicates.
pub fn cut_after(files: &[PathBuf], resume_step: i64, max_bytes: u64) -> io::Result<Kept> {
    let mut kept = Kept::default();
    for path in files {
        kept.bytes += std::fs::metadata(path)?.len();
    }
    if kept.bytes > max_bytes {
        return Err(io::Error::other(format!(
            "{} bytes of event files, more than the {max_bytes} read back on resume",
            kept.bytes
        )));
    }
    for path in files {
        let scan = scan_file(path, resume_step, &mut kept.last_step)?;
        if scan.keep < scan.len {
            let f = OpenOptions::new().write(true).open(path)?;
            f.set_len(scan.keep)?;
            f.sync_all()?;
            kept.cut += scan.len - scan.keep;
        }
    }
    Ok(kept)
}

/// Reads `path`'s records until one is bad or lies after `resume_step`,
/// noting each kept scalar's step in `last_step`.
fn scan_file(
    path: &Path,
    resume_step: i64,
    last_step: &mut HashMap<String, i64>,
) -> io::Result<FileScan> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut r = BufReader::new(file);
    let mut keep = 0;
    while let Next::Record(data) = read_next(&mut r, MAX_RECORD)? {
        let Ok(event) = Event::decode(data.as_slice()) else {
            break;
        };
        if event.step > resume_step {
            break;
        }
        for tag in event.scalar_tags() {
            let at = last_step.entry(tag.to_string()).or_insert(event.step);
            *at = (*at).max(event.step);
        }
        keep = r.stream_position()?;
    }
    Ok(FileScan { keep, len })
}
