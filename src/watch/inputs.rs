//! What the watcher looks at: the data files (IDX consistency, content
//! fingerprint), the config file (parses?), and cheap stat signatures that
//! say whether either may have changed since the last look.
//!
//! The fingerprint and the IDX check here are stand-ins with the same
//! contract as the data module's (`fingerprint(dir)`, `validate(dir)`): the
//! lead can swap [`inspect_data`]'s body for calls into `crate::data`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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

/// Cheap signature of the data dir: every data file's [`StatSig`].
pub fn data_signature(dir: &Path) -> BTreeMap<PathBuf, Option<StatSig>> {
    data_files(dir)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let sig = stat_sig(&p);
            (p, sig)
        })
        .collect()
}

/// Cheap signature of one file (the config).
pub fn file_signature(path: &Path) -> Option<StatSig> {
    stat_sig(path)
}

/// Checks every data file and returns the data set's fingerprint, or the
/// list of problems (half-written, truncated, inconsistent files).
pub fn inspect_data(dir: &Path) -> Result<String, Vec<String>> {
    let files = data_files(dir).map_err(|e| vec![e])?;
    if files.is_empty() {
        return Err(vec![format!(
            "{}: no IDX files (*-ubyte or *-ubyte.gz)",
            dir.display()
        )]);
    }
    let mut hasher = Sha256::new();
    let mut problems = Vec::new();
    let mut counts: BTreeMap<(String, &'static str), (u32, PathBuf)> = BTreeMap::new();
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
        match check_idx(name, &bytes) {
            Ok(items) => {
                for kind in ["images", "labels"] {
                    if let Some((prefix, _)) = name.split_once(&format!("-{kind}")) {
                        counts.insert((prefix.to_string(), kind), (items, path.clone()));
                    }
                }
            }
            Err(what) => problems.push(format!("{}: {what}", path.display())),
        }
    }
    for ((prefix, kind), (n, path)) in &counts {
        if *kind != "images" {
            continue;
        }
        if let Some((m, lpath)) = counts.get(&(prefix.clone(), "labels")) {
            if m != n {
                problems.push(format!(
                    "{} holds {n} images but {} holds {m} labels (one of them not updated yet?)",
                    path.display(),
                    lpath.display()
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

/// Bytes per element of an IDX type code.
fn element_size(code: u8) -> Option<u64> {
    match code {
        0x08 | 0x09 => Some(1),
        0x0B => Some(2),
        0x0C | 0x0D => Some(4),
        0x0E => Some(8),
        _ => None,
    }
}

/// Checks that an IDX file (gzip-compressed when `name` ends in `.gz`) is
/// complete: a valid header whose dimensions match the payload length.
/// Returns the first dimension (the item count).
pub fn check_idx(name: &str, bytes: &[u8]) -> Result<u32, String> {
    let raw;
    let data: &[u8] = if name.ends_with(".gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| format!("incomplete gzip stream ({e}); still being written?"))?;
        raw = out;
        &raw
    } else {
        bytes
    };
    if data.len() < 4 {
        return Err(format!("{} bytes: shorter than an IDX header", data.len()));
    }
    if data[0] != 0 || data[1] != 0 {
        return Err("not an IDX file (bad magic number)".into());
    }
    let elem =
        element_size(data[2]).ok_or_else(|| format!("unknown IDX type 0x{:02x}", data[2]))?;
    let ndims = usize::from(data[3]);
    let header = 4 + 4 * ndims;
    if ndims == 0 || data.len() < header {
        return Err(format!(
            "IDX header announces {ndims} dimensions but the file has {} bytes",
            data.len()
        ));
    }
    let dims: Vec<u32> = (0..ndims)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]])
        })
        .collect();
    let want = dims
        .iter()
        .try_fold(elem, |acc, &d| acc.checked_mul(u64::from(d)))
        .and_then(|n| n.checked_add(header as u64))
        .ok_or("IDX dimensions overflow")?;
    let have = data.len() as u64;
    if have != want {
        return Err(format!(
            "IDX header {dims:?} needs {want} bytes, the file has {have} (half-written?)"
        ));
    }
    Ok(dims[0])
}

/// Reads the config file and checks that it parses as trainerd's TOML
/// config; returns a hash of its contents.
pub fn inspect_config(path: &Path) -> Result<String, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    toml::from_str::<crate::config::FileConfig>(&text)
        .map_err(|e| e.to_string().lines().collect::<Vec<_>>().join(" "))?;
    Ok(hex::encode(Sha256::digest(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], payload: usize) -> Vec<u8> {
        let mut v = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(std::iter::repeat_n(7u8, payload));
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn complete_idx_passes_and_truncated_fails() {
        assert_eq!(check_idx("x-ubyte", &idx(&[3, 2, 2], 12)), Ok(3));
        let short = check_idx("x-ubyte", &idx(&[3, 2, 2], 11)).unwrap_err();
        assert!(short.contains("half-written"), "{short}");
        assert!(check_idx("x-ubyte", &[0, 0]).is_err());
        assert!(check_idx("x-ubyte", &[1, 2, 8, 1, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn truncated_gzip_is_reported() {
        let full = gz(&idx(&[5], 5));
        assert_eq!(check_idx("l-ubyte.gz", &full), Ok(5));
        let cut = &full[..full.len() - 6];
        let err = check_idx("l-ubyte.gz", cut).unwrap_err();
        assert!(err.contains("gzip"), "{err}");
    }

    #[test]
    fn fingerprint_follows_content_and_pairs_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::write(p.join("train-images-idx3-ubyte"), idx(&[2, 1, 1], 2)).unwrap();
        fs::write(p.join("train-labels-idx1-ubyte"), idx(&[2], 2)).unwrap();
        fs::write(p.join("README"), "not data").unwrap();
        let a = inspect_data(p).unwrap();
        fs::write(p.join("README"), "still not data").unwrap();
        assert_eq!(inspect_data(p).unwrap(), a, "non-data files do not count");
        fs::write(p.join("train-labels-idx1-ubyte"), idx(&[3], 3)).unwrap();
        let err = inspect_data(p).unwrap_err().join("\n");
        assert!(
            err.contains("2 images but") && err.contains("3 labels"),
            "{err}"
        );
        fs::write(p.join("train-images-idx3-ubyte"), idx(&[3, 1, 1], 3)).unwrap();
        let b = inspect_data(p).unwrap();
        assert_ne!(a, b);
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
