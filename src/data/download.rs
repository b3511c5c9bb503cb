//! Fetches MNIST into a data dir that holds no data set: from mirrors, verified, written atomically.
//!
//! Each file is fetched as `<mirror>/<name>.gz`, tried mirror after mirror
//! until one delivers bytes whose *decompressed* content has the length and
//! SHA-256 pinned below (the canonical files: their MD5s are the published
//! ones). Checking the content rather than the `.gz` bytes accepts mirrors
//! that compress differently, or a server that decompresses on the fly (the
//! file is then stored uncompressed). A verified file is written to a
//! temporary name, fsynced, renamed into place, and the directory fsynced, so
//! a crash leaves either the whole file or none.
//!
//! A directory that already holds all four files is left alone: it is the
//! user's data set (any IDX data in the MNIST layout), and [`Dataset::load`]
//! checks it.
//!
//! [`Dataset::load`]: super::Dataset::load

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use flate2::read::MultiGzDecoder;
use sha2::{Digest, Sha256};

use super::dataset::Part;
use super::idx::MAX_FILE_BYTES;
use super::DataError;

/// Where MNIST is fetched from unless configured otherwise (torchvision's and
/// TensorFlow's mirrors of the original files).
pub const DEFAULT_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// The environment variable that overrides the mirror list (named in messages).
pub const MIRRORS_ENV: &str = "TRAINERD_MNIST_MIRRORS";

/// What a file must decompress to.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Which file of the layout (fetched as `<file_name>.gz`).
    pub part: Part,
    /// Decompressed length in bytes.
    pub len: u64,
    /// Hex SHA-256 of the decompressed bytes.
    pub sha256: String,
}

/// The four MNIST files (SHA-256 of the decompressed files; their MD5s match
/// the published 6bbc9ace…, a25bea73…, 2646ac64…, 27ae3e4e…).
pub fn mnist_files() -> [Expected; 4] {
    let e = |part, len, sha256: &str| Expected {
        part,
        len,
        sha256: sha256.to_string(),
    };
    [
        e(
            Part::TrainImages,
            47_040_016,
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ),
        e(
            Part::TrainLabels,
            60_008,
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ),
        e(
            Part::TestImages,
            7_840_016,
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ),
        e(
            Part::TestLabels,
            10_008,
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
    ]
}

/// The default mirrors as owned strings.
pub fn default_mirrors() -> Vec<String> {
    DEFAULT_MIRRORS.iter().map(|s| s.to_string()).collect()
}

/// Parses a comma-separated mirror list (as in [`MIRRORS_ENV`]); blanks are dropped.
pub fn parse_mirrors(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Makes sure `dir` holds a data set: a no-op when all four files of the
/// MNIST layout are there; otherwise downloads the missing MNIST files from
/// `mirrors` (base URLs, tried in order).
pub fn ensure_mnist(dir: &Path, mirrors: &[String]) -> Result<(), DataError> {
    ensure_files(dir, mirrors, &mnist_files())
}

/// [`ensure_mnist`] for any set of expected files (tests use small ones).
pub fn ensure_files(dir: &Path, mirrors: &[String], files: &[Expected]) -> Result<(), DataError> {
    let found: Vec<_> = files.iter().map(|e| e.part.find(dir)).collect();
    if found.iter().all(Option::is_some) {
        return Ok(());
    }
    // Some files present: complete the set only if they are the very files
    // we would download; never mix a user's data with MNIST.
    for (e, path) in files.iter().zip(&found) {
        let Some(path) = path else { continue };
        let bytes = fs::read(path).map_err(|source| DataError::Read {
            path: path.clone(),
            source,
        })?;
        if let Err(why) = verify(&bytes, e) {
            return Err(DataError::Missing {
                dir: dir.to_path_buf(),
                what: format!(
                    "the data set is incomplete, and {} is not the MNIST file ({why}), so \
                     trainerd will not complete it with MNIST downloads: add the missing files, \
                     or empty the directory to have MNIST downloaded",
                    path.display()
                ),
            });
        }
    }
    fs::create_dir_all(dir).map_err(|source| DataError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let agent = agent();
    for (e, _) in files.iter().zip(&found).filter(|(_, f)| f.is_none()) {
        fetch(&agent, dir, mirrors, e)?;
    }
    Ok(())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_global(Some(Duration::from_secs(600)))
        .user_agent(concat!("trainerd/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Tries each mirror for one file until a verified copy is in place.
fn fetch(
    agent: &ureq::Agent,
    dir: &Path,
    mirrors: &[String],
    e: &Expected,
) -> Result<(), DataError> {
    let remote = format!("{}.gz", e.part.file_name());
    let mut failures = Vec::new();
    for mirror in mirrors {
        let url = format!("{}/{remote}", mirror.trim_end_matches('/'));
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            failures.push(format!("{url}: not an http(s) URL"));
            continue;
        }
        tracing::info!(%url, "downloading");
        let body = match get(agent, &url, download_limit(e)) {
            Ok(b) => b,
            Err(why) => {
                tracing::warn!(%url, %why, "download failed, trying the next mirror");
                failures.push(format!("{url}: {why}"));
                continue;
            }
        };
        match verify(&body, e) {
            Ok(()) => {
                let name = if body.starts_with(&[0x1f, 0x8b]) {
                    remote
                } else {
                    e.part.file_name().to_string()
                };
                write_atomic(dir, &name, &body)?;
                tracing::info!(%url, file = %dir.join(&name).display(), "downloaded and verified");
                return Ok(());
            }
            Err(why) => {
                tracing::warn!(%url, %why, "rejected a download, trying the next mirror");
                failures.push(format!("{url}: {why}"));
            }
        }
    }
    let tried = if failures.is_empty() {
        "no mirror is configured".to_string()
    } else {
        format!("tried {}", failures.join("; "))
    };
    Err(DataError::Download {
        dir: dir.to_path_buf(),
        what: format!(
            "holds no data set and no mirror delivered a verified {remote} ({tried}); mount a data \
             set in the MNIST layout (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], \
             t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) at this directory, e.g. \
             docker run -v /path/to/mnist:{}, or set {MIRRORS_ENV} to mirrors that can be reached",
            dir.display()
        ),
    })
}

/// A download may be at most this large: the decompressed size plus what
/// gzip adds to incompressible data, and some slack.
fn download_limit(e: &Expected) -> u64 {
    e.len + e.len / 100 + 64 * 1024
}

fn get(agent: &ureq::Agent, url: &str, limit: u64) -> Result<Vec<u8>, String> {
    let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
    resp.body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| e.to_string())
}

/// Counts and hashes what is written through it.
struct HashingSink {
    hasher: Sha256,
    len: u64,
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks that `bytes` (gzip or raw) decompress to exactly the expected file.
fn verify(bytes: &[u8], e: &Expected) -> Result<(), String> {
    let mut sink = HashingSink {
        hasher: Sha256::new(),
        len: 0,
    };
    let cap = (e.len + 1).min(MAX_FILE_BYTES);
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut dec = MultiGzDecoder::new(bytes).take(cap);
        io::copy(&mut dec, &mut sink).map_err(|err| format!("not a valid gzip file ({err})"))?;
    } else {
        sink.write_all(&bytes[..bytes.len().min(cap as usize)])
            .map_err(|err| err.to_string())?;
    }
    if sink.len != e.len {
        let got = if sink.len > e.len {
            "more".to_string()
        } else {
            sink.len.to_string()
        };
        return Err(format!(
            "wrong length: {got} bytes (decompressed), expected {}",
            e.len
        ));
    }
    let digest = hex::encode(sink.hasher.finalize());
    if digest != e.sha256 {
        return Err(format!(
            "checksum mismatch: SHA-256 {digest} (decompressed), expected {}",
            e.sha256
        ));
    }
    Ok(())
}

/// Writes `bytes` to `dir/name` so that a crash leaves the whole file or none.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), DataError> {
    let target = dir.join(name);
    crate::store::write_bytes_atomic(&target, bytes).map_err(|e| DataError::Write {
        path: target.clone(),
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::write_synthetic_mnist;
    use crate::data::{Dataset, LoadOptions};
    use crate::exit::ExitStatus;
    use crate::store::testutil::sorted_names;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    /// A tiny HTTP/1.1 server on 127.0.0.1 serving `files` by path (404
    /// otherwise), recording every requested path.
    struct Server {
        base: String,
        hits: Arc<Mutex<Vec<String>>>,
    }

    fn serve(files: HashMap<String, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let log = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut stream) = conn else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut h = String::new();
                    match reader.read_line(&mut h) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if h == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                log.lock().unwrap().push(path.clone());
                let (status, body) = match files.get(&path) {
                    Some(b) => ("200 OK", b.clone()),
                    None => ("404 Not Found", b"not found".to_vec()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        Server { base, hits }
    }

    /// The expected-file table for the files in `dir` (like [`mnist_files`]).
    fn expected_for(dir: &Path) -> Vec<Expected> {
        Part::ALL
            .iter()
            .map(|&part| {
                let bytes = crate::data::idx::read_decompressed(&part.find(dir).unwrap()).unwrap();
                Expected {
                    part,
                    len: bytes.len() as u64,
                    sha256: hex::encode(Sha256::digest(&bytes)),
                }
            })
            .collect()
    }

    /// `prefix/<name>.gz -> bytes of dir/<name>.gz` for the four files.
    fn routes(prefix: &str, dir: &Path) -> Vec<(String, Vec<u8>)> {
        Part::ALL
            .iter()
            .map(|p| {
                let name = format!("{}.gz", p.file_name());
                (
                    format!("{prefix}/{name}"),
                    fs::read(dir.join(&name)).unwrap(),
                )
            })
            .collect()
    }

    /// A URL nothing listens on.
    fn dead_mirror() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mnist/", l.local_addr().unwrap());
        drop(l);
        url
    }

    #[test]
    fn bad_mirrors_are_skipped_and_files_land_verified() {
        let src = tempfile::tempdir().unwrap();
        write_synthetic_mnist(src.path(), 60, 20, 3).unwrap();
        let other = tempfile::tempdir().unwrap();
        write_synthetic_mnist(other.path(), 60, 20, 4).unwrap();
        let mut files: HashMap<String, Vec<u8>> = HashMap::new();
        files.extend(routes("/good", src.path()));
        files.extend(routes("/wrong", other.path())); // same names, other content
        for p in Part::ALL {
            // Too large: the right content followed by a megabyte of zeros.
            let name = format!("{}.gz", p.file_name());
            let mut big = fs::read(src.path().join(&name)).unwrap();
            big.extend(vec![0u8; 1 << 20]);
            files.insert(format!("/big/{name}"), big);
        }
        let server = serve(files);
        let dst = tempfile::tempdir().unwrap();
        let data = dst.path().join("data");
        let mirrors = vec![
            dead_mirror(),
            format!("{}/missing/", server.base),
            format!("{}/wrong", server.base),
            format!("{}/big/", server.base),
            format!("{}/good/", server.base),
        ];
        ensure_files(&data, &mirrors, &expected_for(src.path())).unwrap();
        let mut want: Vec<String> = Part::ALL
            .iter()
            .map(|p| format!("{}.gz", p.file_name()))
            .collect();
        want.sort();
        assert_eq!(sorted_names(&data), want, "no temporary files left");
        for name in &want {
            assert_eq!(
                fs::read(data.join(name)).unwrap(),
                fs::read(src.path().join(name)).unwrap()
            );
        }
        let hits = server.hits.lock().unwrap().clone();
        for prefix in ["/missing/", "/wrong/", "/big/", "/good/"] {
            assert_eq!(
                hits.iter().filter(|h| h.starts_with(prefix)).count(),
                4,
                "{hits:?}"
            );
        }
        let opts = LoadOptions {
            val_size: 10,
            seed: 0,
        };
        let a = Dataset::load(&data, &opts).unwrap().fingerprint;
        assert_eq!(a, Dataset::load(src.path(), &opts).unwrap().fingerprint);
        // A second call finds the set complete and asks no mirror.
        ensure_files(&data, &[], &expected_for(src.path())).unwrap();
    }

    #[test]
    fn no_mirror_answering_is_a_clear_error_that_leaves_nothing_behind() {
        let src = tempfile::tempdir().unwrap();
        write_synthetic_mnist(src.path(), 20, 10, 1).unwrap();
        let server = serve(HashMap::new());
        let dst = tempfile::tempdir().unwrap();
        let mirrors = vec![dead_mirror(), format!("{}/nothing/", server.base)];
        let e = ensure_files(dst.path(), &mirrors, &expected_for(src.path())).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::Download { .. }));
        assert_eq!(e.exit_code(), crate::exit::DATA);
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("train-images-idx3-ubyte.gz"), "{msg}");
        assert!(msg.contains("mount a data set"), "{msg}");
        assert!(msg.contains(MIRRORS_ENV), "{msg}");
        assert!(msg.contains("404"), "{msg}");
        assert!(sorted_names(dst.path()).is_empty());
        let e = ensure_files(dst.path(), &[], &expected_for(src.path())).unwrap_err();
        assert!(e.to_string().contains("no mirror is configured"), "{e}");
    }

    #[test]
    fn an_uncompressed_answer_is_stored_uncompressed() {
        let src = tempfile::tempdir().unwrap();
        write_synthetic_mnist(src.path(), 20, 10, 1).unwrap();
        let mut files = HashMap::new();
        for p in Part::ALL {
            let raw = crate::data::idx::read_decompressed(&p.find(src.path()).unwrap()).unwrap();
            files.insert(format!("/raw/{}.gz", p.file_name()), raw);
        }
        let server = serve(files);
        let dst = tempfile::tempdir().unwrap();
        let mirrors = vec![format!("{}/raw", server.base)];
        ensure_files(dst.path(), &mirrors, &expected_for(src.path())).unwrap();
        let mut want: Vec<String> = Part::ALL.iter().map(|p| p.file_name().into()).collect();
        want.sort();
        assert_eq!(sorted_names(dst.path()), want);
    }

    #[test]
    fn a_partial_set_is_completed_only_when_it_is_the_expected_data() {
        let src = tempfile::tempdir().unwrap();
        write_synthetic_mnist(src.path(), 20, 10, 1).unwrap();
        let server = serve(routes("/m", src.path()).into_iter().collect());
        let mirrors = vec![format!("{}/m/", server.base)];
        let expected = expected_for(src.path());
        let dst = tempfile::tempdir().unwrap();
        let keep = "train-labels-idx1-ubyte.gz";
        fs::copy(src.path().join(keep), dst.path().join(keep)).unwrap();
        ensure_files(dst.path(), &mirrors, &expected).unwrap();
        assert_eq!(sorted_names(dst.path()).len(), 4);
        assert_eq!(
            server.hits.lock().unwrap().len(),
            3,
            "the present file is not fetched"
        );

        let foreign = tempfile::tempdir().unwrap();
        write_synthetic_mnist(foreign.path(), 20, 10, 9).unwrap();
        let mixed = tempfile::tempdir().unwrap();
        fs::copy(foreign.path().join(keep), mixed.path().join(keep)).unwrap();
        let e = ensure_files(mixed.path(), &mirrors, &expected).unwrap_err();
        assert!(e.to_string().contains("is not the MNIST file"), "{e}");
        assert_eq!(sorted_names(mixed.path()), [keep]);
    }

    #[test]
    fn mirror_lists_parse() {
        assert_eq!(
            parse_mirrors(" http://a/ ,, https://b "),
            ["http://a/", "https://b"]
        );
        assert!(parse_mirrors("").is_empty());
        assert_eq!(default_mirrors().len(), DEFAULT_MIRRORS.len());
    }

    #[test]
    fn verify_rejects_wrong_length_and_content() {
        let e = Expected {
            part: Part::TestLabels,
            len: 3,
            sha256: hex::encode(Sha256::digest([1u8, 2, 3])),
        };
        assert!(verify(&[1, 2, 3], &e).is_ok());
        assert!(verify(&[1, 2], &e).unwrap_err().contains("wrong length: 2"));
        assert!(verify(&[1, 2, 3, 4], &e)
            .unwrap_err()
            .contains("wrong length: more"));
        assert!(verify(&[1, 2, 4], &e)
            .unwrap_err()
            .contains("checksum mismatch"));
    }

    /// The real thing: the shared MNIST copy served locally lands and verifies
    /// against the pinned table. Skipped (loudly) where that copy is absent.
    #[test]
    fn ensure_mnist_downloads_the_real_files() {
        let Some(mnist) = crate::data::testutil::shared_mnist() else {
            eprintln!("SKIPPED: no shared MNIST copy (set TRAINERD_TEST_MNIST_DIR)");
            return;
        };
        let server = serve(routes("/mnist", &mnist).into_iter().collect());
        let dst = tempfile::tempdir().unwrap();
        let mirrors = vec![dead_mirror(), format!("{}/mnist/", server.base)];
        ensure_mnist(dst.path(), &mirrors).unwrap();
        for p in Part::ALL {
            let name = format!("{}.gz", p.file_name());
            let got: PathBuf = dst.path().join(&name);
            assert_eq!(fs::read(got).unwrap(), fs::read(mnist.join(&name)).unwrap());
        }
        // Present and complete: nothing is fetched again.
        let before = server.hits.lock().unwrap().len();
        ensure_mnist(dst.path(), &mirrors).unwrap();
        assert_eq!(server.hits.lock().unwrap().len(), before);
    }
}
