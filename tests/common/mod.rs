//! Shared helpers for integration tests: tiny data sets, running the real binary.
#![allow(dead_code)]

pub mod cdp;
pub mod live;
pub mod serve;
pub mod synth;
pub mod synth_folders;

// What `synth` and `synth_folders` name through `super::`.
use trainerd::data::{layout, rng};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_trainerd"))
}

/// A tiny learnable IDX data set in `dir` (MNIST layout).
pub fn synth_data(dir: &Path, n_train: usize, n_test: usize) {
    synth::write_synthetic_mnist(dir, n_train, n_test, 7).expect("write synthetic data");
}

/// `command` (`train` or `run`) for one quick trial of `preset`: one epoch
/// of 64-image batches, a 100-image validation split, a target any model
/// reaches. Callers add their own flags.
pub fn one_quick_trial<'a>(
    command: &'a str,
    data: &'a str,
    state: &'a str,
    preset: &'a str,
) -> Vec<&'a str> {
    vec![
        command,
        "--data-dir",
        data,
        "--state-dir",
        state,
        "--preset",
        preset,
        "--epochs",
        "1",
        "--val-size",
        "100",
        "--batch-size",
        "64",
        "--max-trials",
        "1",
        "--target-accuracy",
        "0.01",
    ]
}

/// A command for the real binary with quiet, machine-readable logs.
pub fn trainerd(args: &[&str]) -> Command {
    trainerd_under(&[], args)
}

/// [`trainerd`] started by `launcher` (e.g. `["taskset", "-c", "0"]`).
pub fn trainerd_under(launcher: &[&str], args: &[&str]) -> Command {
    let mut cmd = match launcher.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    // vars_os: a non-UTF-8 variable in the test's environment must not panic here.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TRAINERD_") {
            cmd.env_remove(k);
        }
    }
    // Port 9 on loopback refuses at once: a test never downloads from the internet.
    cmd.args(args)
        .env("TRAINERD_LOG_FORMAT", "json")
        .env("TRAINERD_THREADS", "1")
        .env("TRAINERD_MNIST_MIRRORS", "http://127.0.0.1:9/");
    cmd
}

pub fn run(args: &[&str]) -> Output {
    trainerd(args).output().expect("run trainerd")
}

/// Spawns with stderr going to `log` (a file never fills up and blocks the child, as a pipe can).
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let file = std::fs::File::create(log).expect("create log file");
    cmd.stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn trainerd")
}

pub fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The venv's python (scripts/setup-interop.sh fills it), for the interop checks.
pub fn venv_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

/// A local port free at the time of asking (for a server a test starts later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A temp dir (`root`, removed on drop) with a synthetic data set in `root/data`.
pub struct Workspace {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
}

pub fn workspace(n_train: usize, n_test: usize) -> Workspace {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let data = root.join("data");
    synth_data(&data, n_train, n_test);
    Workspace {
        _tmp: tmp,
        root,
        data,
    }
}

/// `state/heartbeat.json`, parsed (None while missing or half-written).
pub fn heartbeat(state: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(state.join("heartbeat.json")).ok()?).ok()
}

/// The heartbeat, if `child` wrote it (not an earlier process).
pub fn own_heartbeat(child: &Child, state: &Path) -> Option<serde_json::Value> {
    heartbeat(state).filter(|h| h["pid"].as_u64() == Some(u64::from(child.id())))
}

/// Trial 0's checkpoint directory in a state dir holding one study.
pub fn trial0_checkpoints(state: &Path) -> Option<PathBuf> {
    std::fs::read_dir(state.join("study"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("trials/0000/checkpoints"))
        .find(|d| d.is_dir())
}

/// The step named by the first JSON log line whose message starts with `message`.
pub fn step_of(log: &str, message: &str) -> Option<u64> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .and_then(|v| v["step"].as_u64())
}

/// Sends `sig` to `child`.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// Waits (up to two minutes) until `done`, failing with the child's log
/// when it exits first or the time runs out.
pub fn wait_for(what: &str, child: &mut Child, log: &Path, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "trainerd exited {status} waiting for {what}: {}",
                read_log(log)
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what}: {}",
            read_log(log)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
