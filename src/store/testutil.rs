//! Test helpers shared by the store's tests (and others that write files):
//! child processes that run one ignored helper test, throwaway tmpfs mounts
//! (root only), a directory's sorted file names.

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

/// The names of the entries of `dir`, sorted.
pub fn sorted_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const HELPER_ENV: &str = "TRAINERD_TEST_HELPER_ARG";

/// The argument passed to a helper test, or `None` when the helper test was
/// not started by `spawn_helper` (then it must do nothing).
pub fn helper_arg() -> Option<String> {
    std::env::var(HELPER_ENV).ok()
}

/// A helper child process; killed and reaped on drop, so a failing test
/// never leaves it running.
pub struct Helper {
    child: Child,
}

impl Helper {
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Reads the child's stdout until a line contains `marker` and returns
    /// what follows the marker on that line. Later output is drained on a
    /// thread so the child never blocks on a full pipe. Panics if the child
    /// exits first.
    pub fn wait_for(&mut self, marker: &str) -> String {
        let stdout = self.child.stdout.take().expect("stdout piped once");
        let mut lines = BufReader::new(stdout).lines();
        // libtest prints "test name ... " before the helper's own output,
        // on the same line: look for the marker anywhere in the line.
        let found = lines.by_ref().map_while(Result::ok).find_map(|l| {
            l.find(marker)
                .map(|at| l[at + marker.len()..].trim().to_string())
        });
        std::thread::spawn(move || lines.for_each(drop));
        found.unwrap_or_else(|| panic!("helper exited before printing {marker:?}"))
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.wait()
    }

    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("wait for helper")
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the ignored test `name` of this test binary in a child process, with
/// `arg` for `helper_arg` and extra environment; stdout is piped.
pub fn spawn_helper_with(name: &str, arg: &Path, envs: &[(&str, &str)]) -> Helper {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        name,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(HELPER_ENV, arg)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Helper {
        child: cmd.spawn().expect("spawn helper"),
    }
}

pub fn spawn_helper(name: &str, arg: &Path) -> Helper {
    spawn_helper_with(name, arg, &[])
}

/// A tmpfs mounted on a fresh temp dir, unmounted on drop.
pub struct TmpfsMount {
    dir: tempfile::TempDir,
}

impl TmpfsMount {
    /// Mounts a tmpfs with `options` (e.g. `size=256k`), read-only when
    /// asked. Returns `None`, after printing why the test is skipped, where
    /// mounting is impossible (not root, no CAP_SYS_ADMIN).
    pub fn new(options: &str, read_only: bool, test: &str) -> Option<TmpfsMount> {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = CString::new(dir.path().as_os_str().as_bytes()).expect("path");
        let opts = CString::new(options).expect("options");
        let flags = if read_only { libc::MS_RDONLY } else { 0 };
        // SAFETY: all pointers are valid NUL-terminated strings for the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                flags,
                opts.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            eprintln!(
                "SKIP {test}: cannot mount a tmpfs here ({err}); this test needs root or \
                 CAP_SYS_ADMIN"
            );
            return None;
        }
        Some(TmpfsMount { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: valid NUL-terminated path.
            unsafe {
                libc::umount2(target.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}
