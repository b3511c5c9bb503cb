//! The image's entrypoint script passes every subcommand to trainerd: each
//! `--help` through it reaches trainerd's own help (none is executed as a
//! program of its own, which exits 127), and the script's list is trainerd's.

mod common;

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;

fn entrypoint() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("entrypoint/trainerd-entrypoint.sh")
}

/// Runs the script with `trainerd` on PATH (a link to the test binary).
fn through_entrypoint(args: &[&str]) -> std::process::Output {
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::bin(), bin_dir.path().join("trainerd")).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin_dir.path().display());
    Command::new("sh")
        .arg(entrypoint())
        .args(args)
        .env("PATH", path)
        .env("TRAINERD_STATE_DIR", bin_dir.path())
        .output()
        .unwrap()
}

#[test]
fn every_subcommand_reaches_trainerd() {
    let cli = trainerd::cli::Cli::command();
    let names: Vec<String> = cli
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    assert!(names.len() >= 8, "{names:?}");
    for name in &names {
        let out = through_entrypoint(&[name, "--help"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("Usage: trainerd"), "{name}: {text}");
    }
    // Flags alone mean `run`; anything else runs as is.
    let out = through_entrypoint(&["--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: trainerd"));
    let out = through_entrypoint(&["--preset", "linear", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: trainerd run"));
    let out = through_entrypoint(&["echo", "as is"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "as is");
}
