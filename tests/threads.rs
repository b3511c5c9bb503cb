//! The default intra-op thread count follows the CPUs the process may use,
//! and every command that trains logs the count it chose. Affinity
//! (`taskset`) stands in for a container's CPU limit here: both reach the
//! count through the same call (`std::thread::available_parallelism`, which
//! reads the cgroup quota `docker run --cpus` sets).

mod common;

use common::*;

/// The `threads` of the log's "intra-op threads for training" line.
fn logged_threads(log: &str) -> Option<u64> {
    log.lines()
        .filter(|l| l.contains("intra-op threads for training"))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["threads"].as_u64())
}

/// Runs `command` (`train` or `trial`) on a tiny data set, started by
/// `launcher`, with the thread count left to trainerd unless `extra` sets
/// it; returns the logged count.
fn threads_chosen(launcher: &[&str], command: &str, extra: &[&str]) -> u64 {
    let ws = workspace(300, 100);
    let state_dir = ws.root.join("state");
    let (data, state) = (s(&ws.data), s(&state_dir));
    let args: Vec<&str> = match command {
        "trial" => vec![
            "trial",
            "--data-dir",
            data,
            "--state-dir",
            state,
            "--arch",
            "linear",
            "--epochs",
            "1",
            "--val-size",
            "100",
        ],
        _ => one_quick_trial(command, data, state, "linear"),
    };
    let out = trainerd_under(launcher, &[args.as_slice(), extra].concat())
        .env_remove("TRAINERD_THREADS")
        .output()
        .expect("run trainerd");
    let log = stderr(&out);
    assert!(out.status.success(), "{command} failed: {log}");
    logged_threads(&log).unwrap_or_else(|| panic!("{command} logged no thread count: {log}"))
}

#[test]
fn one_allowed_cpu_gives_one_thread_to_train_and_to_a_katib_trial() {
    let one_cpu = ["taskset", "-c", "0"];
    assert_eq!(threads_chosen(&one_cpu, "train", &[]), 1);
    assert_eq!(threads_chosen(&one_cpu, "trial", &[]), 1);
}

#[test]
fn the_default_is_every_cpu_this_process_may_use() {
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(threads_chosen(&[], "train", &[]), cpus);
    assert_eq!(threads_chosen(&[], "trial", &[]), cpus);
}

#[test]
fn an_explicit_count_wins_over_the_cpus_available() {
    let one_cpu = ["taskset", "-c", "0"];
    assert_eq!(threads_chosen(&one_cpu, "train", &["--threads", "3"]), 3);
}
