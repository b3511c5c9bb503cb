//! Hostile data, driven through the real binary: memory bombs under a hard
//! address-space limit, labels that are not classes, downloads that hang,
//! files that are not files. Every case asserts the exit code, that the
//! error is one line naming the file, and, where there is saved state, that
//! it is untouched.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::synth::{idx_bytes, write_idx};
use common::*;

/// The address space every memory case runs in: a small run needs about
/// half of it (libtorch included, one thread); each bomb, unchecked, would
/// need several times more.
const ADDRESS_SPACE: u64 = 1 << 30;

/// Runs `cmd` with its address space capped at `bytes` (RLIMIT_AS).
fn under_limit(cmd: &mut Command, bytes: u64) -> Output {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("run trainerd")
}

/// The one error line on stderr; fails unless there is exactly one, it names
/// `file`, and nothing on stderr is a panic or a C++ trace.
fn one_error_line(out: &Output, file: &str) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("trainerd:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected:\n{err}");
    for bad in ["panicked", "frame #", "terminate called", "Aborted"] {
        assert!(!err.contains(bad), "{bad}:\n{err}");
    }
    assert!(lines[0].contains(file), "should name {file}: {}", lines[0]);
    lines[0].to_string()
}

/// `train` for one quick `linear` trial (as [`one_quick_trial`]), plus `extra`.
fn train_cmd(data: &Path, state: &Path, extra: &[&str]) -> Command {
    let mut args = one_quick_trial("train", s(data), s(state), "linear");
    args.extend_from_slice(extra);
    trainerd(&args)
}

/// A gzip member of `n` zero bytes.
fn zeros_member(n: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0; n]).unwrap();
    enc.finish().unwrap()
}

/// A gzip file whose content is the IDX header for `dims` followed by
/// `body_len` zero bytes: concatenated members, a few megabytes on disk for
/// gigabytes of content.
fn write_zero_bomb(path: &Path, dims: &[usize], body_len: u64) {
    const CHUNK: u64 = 64 << 20;
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut header = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    header.write_all(&idx_bytes(dims, &[])).unwrap();
    f.write_all(&header.finish().unwrap()).unwrap();
    let chunk = zeros_member(CHUNK as usize);
    for _ in 0..body_len / CHUNK {
        f.write_all(&chunk).unwrap();
    }
    f.write_all(&zeros_member((body_len % CHUNK) as usize))
        .unwrap();
    f.flush().unwrap();
}

/// `dir`'s file for `stem` (`train-labels` …), whatever its spelling.
fn data_file(dir: &Path, stem: &str) -> PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(stem))
        .unwrap()
}

/// Replaces `dir`'s training images by a gzip bomb (and its labels by a file
/// of matching count), leaving the test files small and valid.
fn bomb_dir(root: &Path, name: &str, count: usize, body_len: u64) -> PathBuf {
    let dir = root.join(name);
    synth_data(&dir, 200, 50);
    fs::remove_file(data_file(&dir, "train-images")).unwrap();
    fs::remove_file(data_file(&dir, "train-labels")).unwrap();
    write_zero_bomb(
        &dir.join("train-images-idx3-ubyte.gz"),
        &[count, 28, 28],
        body_len,
    );
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    write_idx(
        &dir.join("train-labels-idx1-ubyte.gz"),
        &[count],
        &labels,
        true,
    )
    .unwrap();
    dir
}

/// A state dir with a champion trained on small synthetic data.
fn champion(root: &Path) -> PathBuf {
    let data = root.join("champion-data");
    synth_data(&data, 600, 100);
    let state = root.join("champion-state");
    let out = train_cmd(&data, &state, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    state
}

/// SHA-256 of every file under `dir` (what "saved state is intact" compares).
fn tree_digest(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            // Liveness and logs change with every run; the saved state must not.
            if [
                "heartbeat.json",
                "trainerd.lock",
                "events.jsonl",
                "metrics.jsonl",
            ]
            .contains(&name.as_str())
            {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), sha256_file(&p)));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn memory_bombs_are_refused_from_their_headers_under_a_hard_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");

    // Control: a normal small run passes under the same limit.
    let data = tmp.path().join("small");
    synth_data(&data, 600, 100);
    let out = under_limit(&mut train_cmd(&data, &state, &[]), ADDRESS_SPACE);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let saved = tree_digest(&state);

    // 1. A 2 MB gzip whose valid header declares 2.7 M images, all present
    //    (2.1 GB decompressed, ~13 GB as tensors): refused by the default
    //    budget, derived from the address-space limit.
    let big = bomb_dir(tmp.path(), "valid-2.7M", 2_700_000, 2_700_000 * 784);
    let images = big.join("train-images-idx3-ubyte.gz");
    assert!(fs::metadata(&images).unwrap().len() < 4 << 20);
    let out = under_limit(&mut train_cmd(&big, &state, &[]), ADDRESS_SPACE);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let line = one_error_line(&out, s(&images));
    assert!(line.contains("2700000×28×28"), "{line}");
    assert!(line.contains("memory budget of"), "{line}");

    // 2. The same with an explicit budget, by flag and by env.
    let out = under_limit(
        &mut train_cmd(&big, &state, &["--memory-budget", "256M"]),
        ADDRESS_SPACE,
    );
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(&images)).contains("memory budget of 256 MiB"));
    let out = under_limit(
        train_cmd(&big, &state, &[]).env("TRAINERD_MEMORY_BUDGET", "300M"),
        ADDRESS_SPACE,
    );
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(&images)).contains("memory budget of 300 MiB"));

    // 3. A 4 MB gzip bomb (4 GiB of zeros) whose header declares 5 M images.
    let bomb = bomb_dir(tmp.path(), "bomb-5M", 5_000_000, 4 << 30);
    let images = bomb.join("train-images-idx3-ubyte.gz");
    let out = under_limit(&mut train_cmd(&bomb, &state, &[]), ADDRESS_SPACE);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    one_error_line(&out, s(&images));

    // 4. Within the budget, a header that promises more than the stream
    //    holds, and a stream longer than its header: exit 65, the file named.
    let lying = bomb_dir(tmp.path(), "lying", 20_000, 1000 * 784);
    let images = lying.join("train-images-idx3-ubyte.gz");
    let out = under_limit(&mut train_cmd(&lying, &state, &[]), ADDRESS_SPACE);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(&images)).contains("is truncated"));
    let long = bomb_dir(tmp.path(), "long", 1000, 1000 * 784 + (64 << 20));
    let images = long.join("train-images-idx3-ubyte.gz");
    let out = under_limit(&mut train_cmd(&long, &state, &[]), ADDRESS_SPACE);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(&images)).contains("after the 784000 data bytes"));

    // 5. A budget that is not a size is a config error.
    let out = train_cmd(&data, &state, &["--memory-budget", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    one_error_line(&out, "memory_budget");

    assert_eq!(tree_digest(&state), saved, "saved state untouched");
}

#[test]
fn predict_streams_big_files_and_reads_png_sizes_from_the_header() {
    let tmp = tempfile::tempdir().unwrap();
    let state = champion(tmp.path());
    let saved = tree_digest(&state);

    // 300,000 images (235 MB of pixels; ~1 GB as float tensors at once):
    // classified in batches under the 1 GiB limit.
    let many = tmp.path().join("many-idx3-ubyte.gz");
    write_zero_bomb(&many, &[300_000, 28, 28], 300_000 * 784);
    let out = under_limit(
        &mut trainerd(&["predict", "--state-dir", s(&state), s(&many)]),
        ADDRESS_SPACE,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 300_000);
    assert!(text.lines().last().unwrap().contains("[299999]\t"));

    // A 20000x20000 PNG: refused from its IHDR, nothing decoded.
    let png = tmp.path().join("huge.png");
    write_png_rows(&png, 20_000, 20_000);
    let out = under_limit(
        &mut trainerd(&["predict", "--state-dir", s(&state), s(&png)]),
        ADDRESS_SPACE,
    );
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let line = one_error_line(&out, s(&png));
    assert!(line.contains("is a 20000x20000 PNG"), "{line}");
    assert!(line.contains("the model takes 28x28"), "{line}");

    // An IDX file that is truncated prints nothing, then one error line.
    let short = tmp.path().join("short-idx3-ubyte");
    let mut bytes = idx_bytes(&[600, 28, 28], &vec![0; 600 * 784]);
    bytes.truncate(bytes.len() - 1);
    fs::write(&short, bytes).unwrap();
    let out = trainerd(&["predict", "--state-dir", s(&state), s(&short)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(&short)).contains("is truncated"));
    assert!(out.stdout.is_empty(), "nothing printed for a damaged file");

    // IDX images of another size: the expected size is said.
    let small = tmp.path().join("small-idx3-ubyte");
    fs::write(&small, idx_bytes(&[2, 10, 10], &[0; 200])).unwrap();
    let out = trainerd(&["predict", "--state-dir", s(&state), s(&small)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(&small)).contains("the model takes 28x28"));

    assert_eq!(tree_digest(&state), saved, "predict changes nothing saved");
}

/// A grey PNG of zeros written row by row (the test never holds the image).
fn write_png_rows(path: &Path, w: u32, h: u32) {
    let file = fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut stream = enc.write_header().unwrap().into_stream_writer().unwrap();
    let row = vec![0u8; w as usize];
    for _ in 0..h {
        stream.write_all(&row).unwrap();
    }
    stream.finish().unwrap();
}

/// Rewrites `dir`'s training (or test) labels with `f` applied.
fn edit_labels(dir: &Path, stem: &str, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let path = data_file(dir, stem);
    let labels = trainerd::data::idx::read_labels(&path).unwrap();
    let mut values = labels.values().to_vec();
    f(&mut values);
    write_idx(&path, &[values.len()], &values, true).unwrap();
    path
}

#[test]
fn labels_must_be_the_classes() {
    let tmp = tempfile::tempdir().unwrap();
    let state = champion(tmp.path());
    let saved = tree_digest(&state);
    let data = tmp.path().join("data");
    synth_data(&data, 600, 100);

    // 1. One label of 255 among ten classes.
    let labels = edit_labels(&data, "train-labels", |v| v[417] = 255);
    let out = train_cmd(&data, &state, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let line = one_error_line(&out, s(&labels));
    assert!(line.contains("label 255 at record 417"), "{line}");

    // 2. ... with --classes 10 it is still not a class.
    let out = train_cmd(&data, &state, &["--classes", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(&labels)).contains("label 255 at record 417"));

    // 3. A class missing in the middle.
    synth_data(&data, 600, 100);
    let labels = edit_labels(&data, "train-labels", |v| {
        v.iter_mut().filter(|l| **l == 4).for_each(|l| *l = 3)
    });
    let out = train_cmd(&data, &state, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(&labels)).contains("class 4 is empty"));

    // 4. A test label that is no training class.
    synth_data(&data, 600, 100);
    let test_labels = edit_labels(&data, "t10k-labels", |v| v[9] = 12);
    let out = train_cmd(&data, &state, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(&test_labels)).contains("label 12 at record 9"));

    // 5. --classes below the largest label.
    synth_data(&data, 600, 100);
    let labels = data_file(&data, "train-labels");
    let out = train_cmd(&data, &state, &["--classes", "5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(&labels)).contains("that --classes 5 declares"));

    // 6. --classes out of range is a config error.
    for k in ["1", "257"] {
        let out = train_cmd(&data, &state, &["--classes", k])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
        one_error_line(&out, "classes");
    }
    assert_eq!(
        tree_digest(&state),
        saved,
        "refused data changed nothing saved"
    );

    // 7. --classes 12 with ten present trains a 12-class model.
    let other = tmp.path().join("state12");
    let out = train_cmd(&data, &other, &["--classes", "12"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let card: serde_json::Value =
        serde_json::from_slice(&fs::read(other.join("best/model.json")).unwrap()).unwrap();
    assert_eq!(card["classes"].as_i64(), Some(12), "{card}");
}

/// A listener that accepts connections and never answers; counts them.
fn silent_mirror() -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mnist/", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            open.push(conn);
        }
    });
    (url, accepted)
}

/// Waits for `child` to exit, killing it (and failing) after `limit`: a
/// bound on a hang, not a timing assertion.
fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("trainerd still running after {limit:?}");
}

#[test]
fn a_download_that_hangs_obeys_sigterm_and_its_timeouts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("empty");
    let state = tmp.path().join("state");
    let log = tmp.path().join("stderr.log");

    // 1. SIGTERM while the mirror is silent: exit 143 (the stall timeout is
    //    30 s, and ending by it would be exit 65), nothing partial kept.
    let (mirror, accepted) = silent_mirror();
    let mut cmd = train_cmd(&data, &state, &[]);
    cmd.env("TRAINERD_MNIST_MIRRORS", &mirror);
    let mut child = spawn_logged(&mut cmd, &log);
    let until = Instant::now() + Duration::from_secs(60);
    while accepted.load(Ordering::SeqCst) == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(accepted.load(Ordering::SeqCst) > 0, "{}", read_log(&log));
    // SAFETY: plain kill(2) of the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let code = wait_bounded(&mut child, Duration::from_secs(60));
    let text = read_log(&log);
    assert_eq!(code, Some(143), "{text}");
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("trainerd:"))
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(
        errors[0].contains(s(&data)) && errors[0].contains("stopped"),
        "{text}"
    );
    assert_eq!(
        fs::read_dir(&data).unwrap().count(),
        0,
        "nothing partial kept"
    );

    // 2. A silent mirror is given up after the stall timeout (--watchdog
    //    lowers it): exit 65 naming the data dir and the timeout.
    let (mirror, _) = silent_mirror();
    let mut cmd = train_cmd(&data, &state, &["--watchdog", "5s"]);
    cmd.env("TRAINERD_MNIST_MIRRORS", &mirror);
    let mut child = spawn_logged(&mut cmd, &log);
    let code = wait_bounded(&mut child, Duration::from_secs(120));
    let text = read_log(&log);
    assert_eq!(code, Some(65), "{text}");
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("trainerd:"))
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(errors[0].contains(s(&data)), "{text}");
    assert!(errors[0].to_lowercase().contains("timeout"), "{text}");
    assert!(errors[0].contains(&mirror), "{text}");

    // 3. A mirror that answers at once with an error page: the next is
    //    tried, then one line listing both.
    let page = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let page_url = format!("http://{}/", page.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut conn in page.incoming().flatten() {
            let mut request = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut request, &mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let body = "<html>not found</html>";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let out = train_cmd(&data, &state, &[])
        .env(
            "TRAINERD_MNIST_MIRRORS",
            format!("{page_url},http://127.0.0.1:9/"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let line = one_error_line(&out, s(&data));
    assert!(
        line.contains("wrong length") && line.contains("127.0.0.1:9"),
        "{line}"
    );
}

#[test]
fn files_that_are_not_files_are_named_once() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let fresh = |name: &str| {
        let d = tmp.path().join(name);
        synth_data(&d, 300, 50);
        let images = data_file(&d, "train-images");
        fs::remove_file(&images).unwrap();
        d
    };

    // 1. A directory in place of train-images-idx3-ubyte.gz.
    let d = fresh("dir");
    let images = d.join("train-images-idx3-ubyte.gz");
    fs::create_dir(&images).unwrap();
    let out = train_cmd(&d, &state, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(&images)).contains("is a directory"));

    // 2. A symlink loop in place of train-images-idx3-ubyte.
    let d = fresh("loop");
    let images = d.join("train-images-idx3-ubyte");
    std::os::unix::fs::symlink("other", &images).unwrap();
    std::os::unix::fs::symlink("train-images-idx3-ubyte", d.join("other")).unwrap();
    let out = train_cmd(&d, &state, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let line = one_error_line(&out, s(&images));
    assert_eq!(line.matches("os error").count(), 1, "OS error once: {line}");

    // 3. A file that cannot be read (EIO: its own /proc/self/mem, as root or not).
    let d = fresh("eio");
    let images = d.join("train-images-idx3-ubyte");
    std::os::unix::fs::symlink("/proc/self/mem", &images).unwrap();
    let out = train_cmd(&d, &state, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let line = one_error_line(&out, s(&images));
    assert!(line.contains("cannot read"), "{line}");
    assert_eq!(line.matches("os error").count(), 1, "OS error once: {line}");

    // 4. predict without a champion: its own exit code, 66.
    let out = trainerd(&["predict", "--state-dir", s(&state), "x.png"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    assert!(one_error_line(&out, "best").contains("no champion"));

    // 5. predict on inputs that are missing, or directories.
    let state = champion(tmp.path());
    let missing = tmp.path().join("missing.png");
    let out = trainerd(&["predict", "--state-dir", s(&state), s(&missing)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    let line = one_error_line(&out, s(&missing));
    assert_eq!(line.matches("os error").count(), 1, "{line}");
    let out = trainerd(&["predict", "--state-dir", s(&state), s(tmp.path())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(one_error_line(&out, s(tmp.path())).contains("is a directory"));
}
