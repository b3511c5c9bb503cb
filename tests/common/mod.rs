//! Shared helpers for integration tests: tiny data sets, running the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_trainerd"))
}

/// A tiny learnable IDX data set in `dir` (MNIST layout).
pub fn synth_data(dir: &Path, n_train: usize, n_test: usize) {
    trainerd::data::synth::write_synthetic_mnist(dir, n_train, n_test, 7)
        .expect("write synthetic data");
}

/// A command for the real binary with quiet, machine-readable logs.
pub fn trainerd(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
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
