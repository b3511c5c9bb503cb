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
//! Every wait is bounded: a mirror that does not resolve, connect, answer or
//! send for the stall timeout (30 s, or `--watchdog` when shorter) is given
//! up for the next. The request runs on a thread of its own while the caller
//! watches the stop flag, so SIGTERM ends a download at once, however the
//! network blocks ([`DataError::Stopped`], exit 143); nothing partial is
//! kept. On a terminal a bar shows the bytes received.
//!
//! A directory that already holds all four files is left alone: it is the
//! user's data set (any IDX data in the MNIST layout), and [`Dataset::load`]
//! checks it.
//!
//! [`Dataset::load`]: super::Dataset::load

use std::fs;
use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};

use super::dataset::Part;
use super::idx::MAX_FILE_BYTES;
use super::DataError;
use crate::stop_flag::StopFlag;

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

/// Longest wait, by default, for a connection, a response or the next bytes
/// of one before a mirror is given up (`--watchdog` lowers it).
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);

/// A download of one file, however slow, ends after this long.
const MAX_DOWNLOAD_TIME: Duration = Duration::from_secs(30 * 60);

/// How often a waiting download looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// How a download behaves: where from, when to give up on a mirror, when to stop.
pub struct DownloadOptions<'a> {
    /// Base URLs, tried in order.
    pub mirrors: &'a [String],
    /// Raised by SIGTERM/SIGINT: the download ends within a fraction of a
    /// second with [`DataError::Stopped`] (exit 143).
    pub stop: &'a StopFlag,
    /// Longest wait for a name lookup, a connection, a response or the next
    /// bytes of one: a mirror that accepts and never answers costs this long.
    pub stall: Duration,
}

impl<'a> DownloadOptions<'a> {
    /// `mirrors`, stopping on `stop`, with the default stall timeout.
    pub fn new(mirrors: &'a [String], stop: &'a StopFlag) -> Self {
        DownloadOptions {
            mirrors,
            stop,
            stall: DEFAULT_STALL,
        }
    }

    /// `mirrors`, where a stall longer than the `watchdog` is not waited out.
    pub fn within_watchdog(mirrors: &'a [String], stop: &'a StopFlag, watchdog: Duration) -> Self {
        DownloadOptions {
            stall: watchdog.clamp(Duration::from_secs(1), DEFAULT_STALL),
            ..Self::new(mirrors, stop)
        }
    }
}

/// Makes sure `dir` holds a data set: a no-op when all four files of the
/// MNIST layout are there; otherwise downloads the missing MNIST files from
/// the mirrors (base URLs, tried in order).
/// A data dir read as image folders (`format`, see [`super::source`]) is left alone.
pub fn ensure_mnist(
    dir: &Path,
    format: super::source::DataFormat,
    opts: &DownloadOptions<'_>,
) -> Result<(), DataError> {
    if format.resolve(dir) == super::source::DataFormat::Folders {
        return Ok(());
    }
    ensure_files(dir, opts, &mnist_files())
}

/// [`ensure_mnist`] for any set of expected files (tests use small ones).
pub fn ensure_files(
    dir: &Path,
    opts: &DownloadOptions<'_>,
    files: &[Expected],
) -> Result<(), DataError> {
    let found: Vec<_> = files.iter().map(|e| e.part.find(dir)).collect();
    if found.iter().all(Option::is_some) {
        return Ok(());
    }
    // Some files present: complete the set only if they are the very files
    // we would download; never mix a user's data with MNIST.
    for (e, path) in files.iter().zip(&found) {
        let Some(path) = path else { continue };
        if let Err(why) = verify_file(path, e)? {
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
    fs::create_dir_all(dir).map_err(|error| DataError::Write {
        path: dir.to_path_buf(),
        error,
    })?;
    let agent = agent(opts.stall);
    for (e, _) in files.iter().zip(&found).filter(|(_, f)| f.is_none()) {
        fetch(&agent, dir, opts, e)?;
    }
    Ok(())
}

/// Checks a file already in the data dir against `e`, reading it in pieces.
/// `Ok(Err(why))`: readable, but not that file.
fn verify_file(path: &Path, e: &Expected) -> Result<Result<(), String>, DataError> {
    let read_err = |error| DataError::Read {
        path: path.to_path_buf(),
        error,
    };
    let file = fs::File::open(path).map_err(read_err)?;
    if !file.metadata().map_err(read_err)?.is_file() {
        return Err(DataError::invalid(
            path,
            "is not a regular file (a directory?): put the data file itself at this path",
        ));
    }
    Ok(verify(io::BufReader::new(file), e))
}

/// Every timeout is `stall`: a silent mirror fails after that, a slow but
/// moving one is read to the end (up to [`MAX_DOWNLOAD_TIME`]).
fn agent(stall: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_resolve(Some(stall))
        .timeout_connect(Some(stall))
        .timeout_send_request(Some(stall))
        .timeout_recv_response(Some(stall))
        .timeout_per_read(Some(stall))
        .timeout_global(Some(MAX_DOWNLOAD_TIME))
        .user_agent(concat!("trainerd/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Why a download did not deliver.
enum Failure {
    /// The stop flag was raised.
    Stopped,
    /// The mirror failed; the reason, for the message.
    Failed(String),
}

/// Tries each mirror for one file until a verified copy is in place.
fn fetch(
    agent: &ureq::Agent,
    dir: &Path,
    opts: &DownloadOptions<'_>,
    e: &Expected,
) -> Result<(), DataError> {
    let remote = format!("{}.gz", e.part.file_name());
    let mut failures = Vec::new();
    for mirror in opts.mirrors {
        let url = format!("{}/{remote}", mirror.trim_end_matches('/'));
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            failures.push(format!("{url}: not an http(s) URL"));
            continue;
        }
        tracing::info!(%url, "downloading");
        let body = match get(agent, &url, download_limit(e), opts.stop) {
            Ok(b) => b,
            Err(Failure::Stopped) => {
                return Err(DataError::Stopped {
                    dir: dir.to_path_buf(),
                })
            }
            Err(Failure::Failed(why)) => {
                tracing::warn!(%url, %why, "download failed, trying the next mirror");
                failures.push(format!("{url}: {why}"));
                continue;
            }
        };
        match verify(&body[..], e) {
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

/// Fetches `url` on a thread of its own, so that a stop is honoured however
/// the network blocks (name lookup included): the caller returns at once and
/// the thread ends with its next read or timeout.
fn get(agent: &ureq::Agent, url: &str, limit: u64, stop: &StopFlag) -> Result<Vec<u8>, Failure> {
    let (tx, rx) = mpsc::channel();
    let (agent, owned, flag) = (agent.clone(), url.to_string(), stop.clone());
    std::thread::Builder::new()
        .name("download".into())
        .spawn(move || {
            let _ = tx.send(receive(&agent, &owned, limit, &flag));
        })
        .map_err(|e| Failure::Failed(format!("cannot start a download thread: {e}")))?;
    loop {
        match rx.recv_timeout(STOP_POLL) {
            Ok(result) => return result,
            Err(mpsc::RecvTimeoutError::Timeout) if stop.is_raised() => {
                return Err(Failure::Stopped)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Failure::Failed("the download thread ended early".into()))
            }
        }
    }
}

/// The body of `url`, at most `limit` bytes, read in pieces with the stop
/// flag looked at between them; a bar on a terminal shows the progress.
fn receive(
    agent: &ureq::Agent,
    url: &str,
    limit: u64,
    stop: &StopFlag,
) -> Result<Vec<u8>, Failure> {
    let failed = |e: &dyn std::fmt::Display| Failure::Failed(e.to_string());
    let mut resp = agent.get(url).call().map_err(|e| failed(&e))?;
    let declared = resp.body().content_length();
    if let Some(n) = declared.filter(|&n| n > limit) {
        return Err(Failure::Failed(format!(
            "the answer is {n} bytes, more than the {limit} a verified copy can be"
        )));
    }
    let bar = progress_bar(declared, url);
    let mut reader = resp.body_mut().with_config().limit(limit).reader();
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        if stop.is_raised() {
            return Err(Failure::Stopped);
        }
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                body.extend_from_slice(&chunk[..n]);
                bar.inc(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(&e)),
        }
    }
    bar.finish_and_clear();
    Ok(body)
}

/// A byte-count bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar(len: Option<u64>, url: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(len, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
    bar
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

/// Checks that `content` (gzip or raw) decompresses to exactly the expected
/// file, reading no more than one byte past its expected length.
fn verify(mut content: impl BufRead, e: &Expected) -> Result<(), String> {
    let mut sink = HashingSink {
        hasher: Sha256::new(),
        len: 0,
    };
    let cap = (e.len + 1).min(MAX_FILE_BYTES);
    let gzip = content
        .fill_buf()
        .map_err(|err| format!("cannot read ({err})"))?
        .starts_with(&[0x1f, 0x8b]);
    if gzip {
        let mut dec = MultiGzDecoder::new(content).take(cap);
        io::copy(&mut dec, &mut sink).map_err(|err| format!("not a valid gzip file ({err})"))?;
    } else {
        io::copy(&mut content.take(cap), &mut sink)
            .map_err(|err| format!("cannot read ({err})"))?;
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
        error: e.source,
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
                let bytes = crate::data::idx::read(&part.find(dir).unwrap(), MAX_FILE_BYTES)
                    .unwrap()
                    .bytes()
                    .to_vec();
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

    /// [`ensure_files`] with the default timeouts and a stop flag never raised.
    fn fetch_into(dir: &Path, mirrors: &[String], files: &[Expected]) -> Result<(), DataError> {
        ensure_files(
            dir,
            &DownloadOptions::new(mirrors, &StopFlag::default()),
            files,
        )
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
        fetch_into(&data, &mirrors, &expected_for(src.path())).unwrap();
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
            val_size: Some(10),
            ..Default::default()
        };
        let a = Dataset::load(&data, &opts).unwrap().fingerprint;
        assert_eq!(a, Dataset::load(src.path(), &opts).unwrap().fingerprint);
        // A second call finds the set complete and asks no mirror.
        fetch_into(&data, &[], &expected_for(src.path())).unwrap();
    }

    #[test]
    fn no_mirror_answering_is_a_clear_error_that_leaves_nothing_behind() {
        let src = tempfile::tempdir().unwrap();
        write_synthetic_mnist(src.path(), 20, 10, 1).unwrap();
        let server = serve(HashMap::new());
        let dst = tempfile::tempdir().unwrap();
        let mirrors = vec![dead_mirror(), format!("{}/nothing/", server.base)];
        let e = fetch_into(dst.path(), &mirrors, &expected_for(src.path())).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::Download { .. }));
        assert_eq!(e.exit_code(), crate::exit::DATA);
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("train-images-idx3-ubyte.gz"), "{msg}");
        assert!(msg.contains("mount a data set"), "{msg}");
        assert!(msg.contains(MIRRORS_ENV), "{msg}");
        assert!(msg.contains("404"), "{msg}");
        assert!(sorted_names(dst.path()).is_empty());
        let e = fetch_into(dst.path(), &[], &expected_for(src.path())).unwrap_err();
        assert!(e.to_string().contains("no mirror is configured"), "{e}");
    }

    #[test]
    fn an_uncompressed_answer_is_stored_uncompressed() {
        let src = tempfile::tempdir().unwrap();
        write_synthetic_mnist(src.path(), 20, 10, 1).unwrap();
        let mut files = HashMap::new();
        for p in Part::ALL {
            let raw = crate::data::idx::read(&p.find(src.path()).unwrap(), MAX_FILE_BYTES)
                .unwrap()
                .bytes()
                .to_vec();
            files.insert(format!("/raw/{}.gz", p.file_name()), raw);
        }
        let server = serve(files);
        let dst = tempfile::tempdir().unwrap();
        let mirrors = vec![format!("{}/raw", server.base)];
        fetch_into(dst.path(), &mirrors, &expected_for(src.path())).unwrap();
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
        fetch_into(dst.path(), &mirrors, &expected).unwrap();
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
        let e = fetch_into(mixed.path(), &mirrors, &expected).unwrap_err();
        assert!(e.to_string().contains("is not the MNIST file"), "{e}");
        assert_eq!(sorted_names(mixed.path()), [keep]);
    }

    /// A mirror that accepts connections and never answers; returns its
    /// base URL and a count of the connections it accepted.
    fn silent_mirror() -> (String, Arc<Mutex<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mnist/", listener.local_addr().unwrap());
        let accepted = Arc::new(Mutex::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut open = Vec::new();
            for conn in listener.incoming().flatten() {
                *count.lock().unwrap() += 1;
                open.push(conn); // held open, never answered
            }
        });
        (url, accepted)
    }

    #[test]
    fn a_silent_mirror_is_given_up_after_the_stall_timeout() {
        let src = tempfile::tempdir().unwrap();
        write_synthetic_mnist(src.path(), 20, 10, 1).unwrap();
        let (silent, accepted) = silent_mirror();
        let server = serve(routes("/m", src.path()).into_iter().collect());
        let mirrors = vec![silent, format!("{}/m/", server.base)];
        let stop = StopFlag::default();
        let opts = DownloadOptions {
            stall: Duration::from_millis(300),
            ..DownloadOptions::new(&mirrors, &stop)
        };
        let dst = tempfile::tempdir().unwrap();
        ensure_files(dst.path(), &opts, &expected_for(src.path())).unwrap();
        assert_eq!(sorted_names(dst.path()).len(), 4);
        assert_eq!(
            *accepted.lock().unwrap(),
            4,
            "each file tried the silent mirror first"
        );

        // Only silent mirrors: a clear error that says it timed out.
        let (silent, _) = silent_mirror();
        let mirrors = vec![silent];
        let opts = DownloadOptions {
            stall: Duration::from_millis(300),
            ..DownloadOptions::new(&mirrors, &stop)
        };
        let dst = tempfile::tempdir().unwrap();
        let e = ensure_files(dst.path(), &opts, &expected_for(src.path())).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit::DATA);
        let msg = e.to_string();
        assert!(msg.to_lowercase().contains("timeout"), "{msg}");
        assert!(sorted_names(dst.path()).is_empty());
    }

    #[test]
    fn a_stop_ends_a_download_that_hangs() {
        let src = tempfile::tempdir().unwrap();
        write_synthetic_mnist(src.path(), 20, 10, 1).unwrap();
        let (silent, accepted) = silent_mirror();
        let mirrors = vec![silent];
        let stop = StopFlag::default();
        let raiser = stop.clone();
        let seen = accepted.clone();
        std::thread::spawn(move || {
            while *seen.lock().unwrap() == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
            raiser.raise();
        });
        // The stall timeout is the default 30 s: only the stop can end this soon.
        let dst = tempfile::tempdir().unwrap();
        let opts = DownloadOptions::new(&mirrors, &stop);
        let e = ensure_files(dst.path(), &opts, &expected_for(src.path())).unwrap_err();
        assert!(matches!(e, DataError::Stopped { .. }), "{e}");
        assert_eq!(e.exit_code(), crate::exit::STOPPED);
        assert!(sorted_names(dst.path()).is_empty());
    }

    #[test]
    fn a_directory_among_the_files_is_named() {
        let dst = tempfile::tempdir().unwrap();
        fs::create_dir(dst.path().join("train-labels-idx1-ubyte.gz")).unwrap();
        let e = fetch_into(dst.path(), &[], &mnist_files()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("train-labels-idx1-ubyte.gz: is not a regular file"),
            "{msg}"
        );
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
        assert!(verify(&[1u8, 2, 3][..], &e).is_ok());
        assert!(verify(&[1u8, 2][..], &e)
            .unwrap_err()
            .contains("wrong length: 2"));
        assert!(verify(&[1u8, 2, 3, 4][..], &e)
            .unwrap_err()
            .contains("wrong length: more"));
        assert!(verify(&[1u8, 2, 4][..], &e)
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
        ensure_mnist(
            dst.path(),
            crate::data::source::DataFormat::Auto,
            &DownloadOptions::new(&mirrors, &StopFlag::default()),
        )
        .unwrap();
        for p in Part::ALL {
            let name = format!("{}.gz", p.file_name());
            let got: PathBuf = dst.path().join(&name);
            assert_eq!(fs::read(got).unwrap(), fs::read(mnist.join(&name)).unwrap());
        }
        // Present and complete: nothing is fetched again.
        let before = server.hits.lock().unwrap().len();
        ensure_mnist(
            dst.path(),
            crate::data::source::DataFormat::Auto,
            &DownloadOptions::new(&mirrors, &StopFlag::default()),
        )
        .unwrap();
        assert_eq!(server.hits.lock().unwrap().len(), before);
    }
}
