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

use super::idx::MAX_FILE_BYTES;
use super::DataError;
use crate::stop_flag::StopFlag;

mod sources;
pub use sources::{
    default_mirrors, mnist_files, parse_mirrors, Expected, DEFAULT_MIRRORS, MIRRORS_ENV,
};

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
mod tests;
