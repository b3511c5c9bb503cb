//! The process environment at the boundary: which variables trainerd reads,
//! and a check, before anything else runs, that each of them is usable.
//!
//! Only variables trainerd reads are looked at (clap's `TRAINERD_*` flags
//! and a few extras); anything else in the environment, whatever bytes it
//! holds, has no effect. A variable that trainerd reads as text but that
//! holds bytes that are not UTF-8 ends the process with exit 78 naming it,
//! instead of a clap usage error that names nothing or a silently ignored
//! setting. Path-valued variables may hold any bytes (Unix paths are bytes).

use std::collections::BTreeSet;
use std::ffi::OsStr;

use clap::CommandFactory;

use super::Cli;
use crate::config::ConfigError;

/// Variables read as paths (or raw bytes): any bytes are fine.
pub const OS_STRING_VARS: &[&str] = &[
    "TRAINERD_CONFIG",
    "TRAINERD_DATA_DIR",
    "TRAINERD_STATE_DIR",
    "TRAINERD_WEBHOOK_SECRET_FILE",
    "TRAINERD_METRICS_FILE",
    "TRAINERD_WEBHOOK_SECRET",
    "TRAINERD_HOOK_SECRET_FILE",
    "TRAINERD_HOOK_SECRET",
    "TRAINERD_TEST_MNIST_DIR",
    "TRAINERD_ONNXRUNTIME",
];

/// Variables read outside clap (tests' knobs, fault injection, the secret).
const EXTRA_VARS: &[&str] = &[
    "TRAINERD_HEARTBEAT_MS",
    "TRAINERD_WEBHOOK_BACKOFF_MS",
    "TRAINERD_FAULT_DELAY_MS",
    "TRAINERD_FAULT_ABORT",
    "TRAINERD_FAULT_PANIC",
    // crate::onnxruntime's library path.
    "TRAINERD_ONNXRUNTIME",
];

/// Every environment variable clap reads for some subcommand, plus the extras.
pub fn read_vars() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(name) = arg.get_env().and_then(OsStr::to_str) {
                out.insert(name.to_string());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out: BTreeSet<String> = EXTRA_VARS.iter().map(|v| v.to_string()).collect();
    walk(&Cli::command(), &mut out);
    out
}

/// Checks the variables trainerd reads as text: each must be UTF-8.
pub fn check_environment() -> Result<(), ConfigError> {
    check_vars(std::env::vars_os())
}

fn check_vars(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<(), ConfigError> {
    let read = read_vars();
    for (key, value) in vars {
        let Some(key) = key.to_str() else { continue };
        if !read.contains(key) || OS_STRING_VARS.contains(&key) || value.to_str().is_some() {
            continue;
        }
        return Err(ConfigError::Env {
            var: key.to_string(),
            what: format!(
                "holds bytes that are not UTF-8 ({:?}); set it to a valid value or unset it",
                value
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    fn bad() -> OsString {
        OsString::from_vec(vec![b'a', 0xff, 0xfe])
    }

    #[test]
    fn a_variable_trainerd_reads_must_be_utf8() {
        let err = check_vars([("TRAINERD_LR".into(), bad())]).unwrap_err();
        assert!(err.to_string().contains("TRAINERD_LR"), "{err}");
        let err = check_vars([("TRAINERD_FAULT_ABORT".into(), bad())]).unwrap_err();
        assert!(err.to_string().contains("TRAINERD_FAULT_ABORT"), "{err}");
    }

    #[test]
    fn other_variables_and_paths_may_hold_any_bytes() {
        check_vars([
            ("LANG".into(), bad()),
            ("TRAINERD_NOT_A_SETTING".into(), bad()),
            ("TRAINERD_STATE_DIR".into(), bad()),
            (OsString::from_vec(vec![0xff, b'X']), bad()),
        ])
        .unwrap();
    }

    #[test]
    fn every_path_variable_is_one_trainerd_reads() {
        let read = read_vars();
        for var in OS_STRING_VARS {
            // The ones read outside clap.
            let outside = [
                "TRAINERD_WEBHOOK_SECRET",
                "TRAINERD_HOOK_SECRET",
                "TRAINERD_TEST_MNIST_DIR",
                "TRAINERD_ONNXRUNTIME",
            ];
            if outside.contains(var) {
                continue;
            }
            assert!(read.contains(*var), "{var} is not a clap env var any more");
        }
        assert!(read.contains("TRAINERD_THREADS") && read.contains("TRAINERD_HEALTH_MAX_AGE"));
    }
}
