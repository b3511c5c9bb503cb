//! Shared by the `trainerd serve` tests: one champion trained per test
//! binary, the server as a child process, a small HTTP/1.1 client
//! (keep-alive), test images and `trainerd predict`'s labels.

pub use super::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Trained {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
    pub state: PathBuf,
}

/// A champion (`linear`, one epoch on generated data), trained once per binary.
/// A static is never dropped, so its folder lives under cargo's
/// `CARGO_TARGET_TMPDIR` (inside `target/`), not in the system's temp dir.
pub fn trained() -> &'static Trained {
    static T: OnceLock<Trained> = OnceLock::new();
    T.get_or_init(|| {
        let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let root = tmp.path().to_path_buf();
        let data = root.join("data");
        synth_data(&data, 300, 200);
        let state = root.join("state");
        let out = run(&one_quick_trial("train", s(&data), s(&state), "linear"));
        assert_eq!(out.status.code(), Some(0), "train: {}", stderr(&out));
        Trained {
            _tmp: tmp,
            root,
            data,
            state,
        }
    })
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `trainerd serve` on a free port; killed when dropped.
pub struct Serve {
    child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Serve {
    /// The server's resident memory now, in MiB (`VmRSS`).
    pub fn rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib / 1024
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    pub fn start(state: &Path, log: &Path, extra: &[&str]) -> Serve {
        let mut args = vec!["serve", "--state-dir", s(state), "--addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Serve::spawn(&args, log)
    }

    /// Any trainerd command that serves (`serve`, `run --serve-addr`).
    pub fn spawn(args: &[&str], log: &Path) -> Serve {
        Serve::spawn_command(&mut trainerd(args), log)
    }

    /// [`Serve::spawn`] of a prepared command (e.g. with more environment).
    pub fn spawn_command(cmd: &mut std::process::Command, log: &Path) -> Serve {
        let mut child = spawn_logged(cmd, log);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = read_log(log);
            if let Some(addr) = text.lines().find_map(listening_addr) {
                return Serve {
                    child,
                    addr,
                    log: log.to_path_buf(),
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("serve exited with {status}: {text}");
            }
            assert!(Instant::now() < deadline, "serve never listened: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Serve::start`], then waits until the champion is loaded.
    pub fn ready(state: &Path, log: &Path, extra: &[&str]) -> Serve {
        let srv = Serve::start(state, log, extra);
        wait_ready(srv.addr);
        srv
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The gRPC address a server logged (`--grpc-addr`), waiting for the line.
pub fn grpc_addr_of(log: &Path) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = read_log(log).lines().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            if !v["message"].as_str()?.starts_with("serving gRPC") {
                return None;
            }
            v["addr"].as_str()?.parse().ok()
        });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "never served gRPC: {}",
            read_log(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if !v["message"].as_str()?.starts_with("serving /v2") {
        return None;
    }
    v["addr"].as_str()?.parse().ok()
}

/// A keep-alive HTTP/1.1 connection.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    /// Whether the server closes this connection (reads until EOF or an error).
    pub fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }

    /// Sends one request; `(status, body)`, or the I/O error.
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status line: {line:?}")))?;
        let mut len = 0;
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h)?;
            if h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut buf = vec![0; len];
        self.reader.read_exact(&mut buf)?;
        Ok((status, String::from_utf8_lossy(&buf).into_owned()))
    }
}

/// One request on a fresh connection.
pub fn call(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    Client::connect(addr).call(method, path, body).unwrap()
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// Polls until `/v2/health/ready` answers 200 (the test fails after a minute).
pub fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(addr, "GET", "/v2/health/ready", b"").0 != 200 {
        assert!(Instant::now() < deadline, "never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The generated test images: (bytes, count, path of the IDX file).
pub fn test_images(data: &Path) -> (Vec<u8>, usize, PathBuf) {
    let path = data.join("t10k-images-idx3-ubyte.gz");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    let n = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
    (raw[16..].to_vec(), n, path)
}

/// `trainerd predict`'s labels for an IDX file.
pub fn predict_labels(state: &Path, images: &Path) -> Vec<i64> {
    let out = run(&["predict", "--state-dir", s(state), "--json", s(images)]);
    assert_eq!(out.status.code(), Some(0), "predict: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| json(l)["label"].as_i64().unwrap())
        .collect()
}

/// An inference request body for `pixels` (bytes) as `datatype` with `shape`.
pub fn infer_body(pixels: &[u8], n: usize, datatype: &str, flat: bool) -> Vec<u8> {
    let shape = if flat {
        serde_json::json!([n, 784])
    } else {
        serde_json::json!([n, 1, 28, 28])
    };
    let data: serde_json::Value = match (datatype, flat) {
        ("UINT8", _) => pixels.iter().map(|&p| p as u64).collect::<Vec<_>>().into(),
        (_, true) => pixels
            .iter()
            .map(|&p| p as f64 / 255.0)
            .collect::<Vec<_>>()
            .into(),
        // Nested as the shape: [n][1][28][28].
        _ => pixels
            .chunks(784)
            .map(|img| {
                vec![img
                    .chunks(28)
                    .map(|row| row.iter().map(|&p| p as f64 / 255.0).collect::<Vec<_>>())
                    .collect::<Vec<_>>()]
            })
            .collect::<Vec<_>>()
            .into(),
    };
    serde_json::to_vec(&serde_json::json!({
        "id": "t",
        "inputs": [{"name": "pixels", "shape": shape, "datatype": datatype, "data": data}],
    }))
    .unwrap()
}

/// The `label` output and model version of an inference response.
pub fn labels_of(body: &str) -> (Vec<i64>, u64) {
    let v = json(body);
    let out = v["outputs"].as_array().unwrap();
    let label = out
        .iter()
        .find(|o| o["name"] == "label")
        .expect("label output");
    let labels = label["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    (
        labels,
        v["model_version"].as_str().unwrap().parse().unwrap(),
    )
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of `best` at `to` whose card says `version`.
pub fn champion_copy(best: &Path, to: &Path, version: u64) {
    copy_dir(best, to);
    let card = to.join("model.json");
    let mut v = json(&std::fs::read_to_string(&card).unwrap());
    v["version"] = version.into();
    std::fs::write(&card, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Promotes `staged` as `promote()` does: best -> best.previous, staged -> best.
pub fn promote_dir(state: &Path, staged: &Path) {
    let best = state.join("best");
    let previous = state.join("best.previous");
    if best.exists() {
        if previous.exists() {
            std::fs::remove_dir_all(&previous).unwrap();
        }
        std::fs::rename(&best, &previous).unwrap();
    }
    std::fs::rename(staged, &best).unwrap();
}

/// One image (the first 784 of `pixels`) as a gRPC request in raw UINT8.
pub fn one_image(pixels: &[u8]) -> trainerd::serve::grpc::pb::ModelInferRequest {
    use trainerd::serve::grpc::pb::{model_infer_request::InferInputTensor, ModelInferRequest};
    ModelInferRequest {
        model_name: "trainerd".into(),
        inputs: vec![InferInputTensor {
            name: "pixels".into(),
            datatype: "UINT8".into(),
            shape: vec![1, 784],
            ..Default::default()
        }],
        raw_input_contents: vec![pixels[..784].to_vec().into()],
        ..Default::default()
    }
}
