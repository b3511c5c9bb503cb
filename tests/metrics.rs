//! The metrics endpoint of the real binary: scraped over HTTP while a short
//! training runs, its values move; `/healthz` answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Generous: CI machines are slow and shared; nothing here is a timing claim.
const PATIENCE: Duration = Duration::from_secs(240);

/// A tiny learnable MNIST-layout data set (class k: a bar placed by k).
fn write_data(dir: &Path, n_train: u32, n_test: u32) {
    use std::io::Write as _;
    let mut state = 7u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let mut images = vec![0u8, 0, 8, 3];
        for d in [n, 28, 28] {
            images.extend(d.to_be_bytes());
        }
        let mut labels = vec![0u8, 0, 8, 1];
        labels.extend(n.to_be_bytes());
        for _ in 0..n {
            let k = (rand() % 10) as usize;
            let mut img = [0u8; 784];
            for px in img.iter_mut() {
                *px = (rand() % 40) as u8;
            }
            let (row, col) = (4 + (k / 5) * 12, 2 + (k % 5) * 5);
            for y in row..row + 8 {
                for x in col..col + 3 {
                    img[y * 28 + x] = 220;
                }
            }
            images.extend_from_slice(&img);
            labels.push(k as u8);
        }
        for (name, bytes) in [("images-idx3", &images), ("labels-idx1", &labels)] {
            let f = std::fs::File::create(dir.join(format!("{prefix}-{name}-ubyte.gz"))).unwrap();
            let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            gz.write_all(bytes).unwrap();
            gz.finish().unwrap();
        }
    }
}

fn get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.split_whitespace().next() == Some(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The address from the JSON log line the endpoint writes when it listens.
fn listening_addr(log: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("metrics endpoint listening"))
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["addr"].as_str().map(str::to_string))
}

#[test]
fn metrics_move_while_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_data(&data, 4000, 500);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trainerd"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TRAINERD_")) {
        cmd.env_remove(k);
    }
    let state = dir.path().join("state");
    let mut child = cmd
        .args([
            "train",
            "--preset",
            "fast",
            "--epochs",
            "20",
            "--val-size",
            "500",
        ])
        .args(["--threads", "1", "--log-format", "json"])
        // Port 0: the kernel picks a free port (no race with other tests); the log names it.
        .args(["--metrics-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("stderr.log")).unwrap(),
        ))
        .spawn()
        .unwrap();

    let start = Instant::now();
    let log_path = dir.path().join("stderr.log");
    let addr = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(addr) = listening_addr(&log) {
            break addr;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("trainerd exited before serving metrics: {status}\n{log}");
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no 'metrics endpoint listening' line:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut steps = Vec::new();
    let mut healthy = false;
    let mut epoch_seen = None;
    while start.elapsed() < PATIENCE {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            panic!("trainerd exited early: {status}\n{log}");
        }
        if let Some((status, body)) = get(&addr, "/metrics") {
            assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
            steps.extend(sample(&body, "trainerd_step"));
            if sample(&body, "trainerd_epoch").is_some_and(|e| e >= 1.0) {
                epoch_seen = sample(&body, "trainerd_val_accuracy");
            }
        }
        healthy |= get(&addr, "/healthz").is_some_and(|(s, _)| s == "HTTP/1.1 200 OK");
        let moved = steps.windows(2).any(|w| w[1] > w[0]);
        if moved && healthy && epoch_seen.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(
        steps.windows(2).any(|w| w[1] > w[0]),
        "trainerd_step never moved: {steps:?}"
    );
    assert!(healthy, "/healthz never answered 200");
    let acc = epoch_seen.expect("no epoch finished with a validation accuracy");
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    assert_eq!(
        status.code(),
        Some(143),
        "SIGTERM: final checkpoint, exit 143"
    );
}
