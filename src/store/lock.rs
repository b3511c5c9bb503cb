//! One writer per state dir, and the check at start that it can be written.
//!
//! The lock is `flock(LOCK_EX | LOCK_NB)` on `<state>/trainerd.lock`. The
//! kernel drops it when the holder exits, however it exits, so a lock file
//! left by a killed process never blocks; the pid written inside is only
//! there to name the holder in the error. The file is never deleted:
//! deleting it would let two processes lock two different inodes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::StoreError;

/// Name of the lock file inside the state dir.
pub use crate::state_dir::LOCK_FILE;

/// Held for the life of the process; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    /// Keeps the locked open file description alive.
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Takes the state dir's lock or fails at once with the holder's pid
    /// (exit 73). Creates the dir if needed.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, StoreError> {
        fs::create_dir_all(state_dir).map_err(|e| not_writable(state_dir, &e))?;
        let path = crate::state_dir::lock(state_dir);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| not_writable(state_dir, &e))?;
        // SAFETY: flock(2) on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(StoreError::Locked {
                    path: state_dir.to_path_buf(),
                    holder: holder_pid(&path),
                });
            }
            return Err(StoreError::NotWritable {
                path: state_dir.to_path_buf(),
                reason: format!("cannot lock {}: {err}", path.display()),
                fix: "put the state dir on a filesystem that supports flock (a local volume)"
                    .into(),
            });
        }
        let pid = std::process::id();
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(format!("{pid}\n").as_bytes()))
            .and_then(|_| file.sync_data())
            .map_err(|e| not_writable(state_dir, &e))?;
        tracing::debug!(path = %path.display(), pid, "state dir locked");
        Ok(StateLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether some process holds the state dir's lock, looked up without
/// touching it (`/proc/locks`, matched by the lock file's inode): `status`
/// must never take the lock a starting daemon is about to take. `None` when
/// the kernel's lock table cannot be read.
pub fn is_held(state_dir: &Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(crate::state_dir::lock(state_dir)) else {
        return Some(false);
    };
    let table = fs::read_to_string("/proc/locks").ok()?;
    Some(table.lines().any(|line| {
        // `1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF`; waiters read `1: -> FLOCK ...`.
        let f: Vec<&str> = line.split_whitespace().collect();
        f.get(1) == Some(&"FLOCK")
            && f.get(5)
                .and_then(|dev_ino| dev_ino.rsplit(':').next())
                .and_then(|ino| ino.parse::<u64>().ok())
                == Some(meta.ino())
    }))
}

/// Whether a process with this pid exists (`kill(pid, 0)`; EPERM means it
/// exists but belongs to someone else).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false; // 0 and negatives address process groups
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The pid recorded in a lock file, if it can be read.
fn holder_pid(path: &Path) -> Option<u32> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Checks that `state_dir` exists (creating it) and takes a durable write:
/// a probe file is written, fsynced and removed, and the dir fsynced. The
/// error says how to fix it (exit 73).
pub fn check_writable(state_dir: &Path) -> Result<(), StoreError> {
    let fail = |e: io::Error| not_writable(state_dir, &e);
    fs::create_dir_all(state_dir).map_err(fail)?;
    let probe = state_dir.join(format!(".trainerd-probe-{}", std::process::id()));
    let written = File::create(&probe).and_then(|mut f| {
        f.write_all(b"trainerd write probe\n")?;
        f.sync_all()
    });
    if let Err(e) = written {
        // Best effort: a probe half-written on a full disk should not stay.
        let _ = fs::remove_file(&probe);
        return Err(fail(e));
    }
    fs::remove_file(&probe).map_err(fail)?;
    File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)?;
    Ok(())
}

fn not_writable(dir: &Path, e: &io::Error) -> StoreError {
    StoreError::NotWritable {
        path: dir.to_path_buf(),
        reason: e.to_string(),
        fix: fix_for(dir, e),
    }
}

/// Docker and Podman leave these in every container's root.
fn in_container() -> bool {
    Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists()
}

/// The advice for one failure, in the words of someone running a container.
fn fix_for(dir: &Path, e: &io::Error) -> String {
    // SAFETY: geteuid/getegid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    match e.raw_os_error() {
        Some(libc::EROFS) => "the volume is mounted read-only: mount it read-write \
             (with docker, drop `:ro` from the -v/--mount option)"
            .to_string(),
        // In a container the path is the container's: the host's directory differs.
        Some(libc::EACCES) | Some(libc::EPERM) if in_container() => format!(
            "make the host directory mounted at {} writable by uid {uid} (gid {gid}), e.g. \
             `chown -R {uid}:{gid} <that host directory>`, or run the container with --user \
             set to its owner",
            dir.display()
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => format!(
            "make it writable by uid {uid} (gid {gid}), e.g. `chown -R {uid}:{gid} {}`",
            dir.display()
        ),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            "the volume is full: free some space or give it more".to_string()
        }
        Some(libc::ENOTDIR) | Some(libc::EEXIST) => {
            "a path component is a file, not a directory: point the state dir elsewhere".to_string()
        }
        _ => "point the state dir at a directory on a healthy, writable volume".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitStatus;
    use crate::store::testutil;

    #[test]
    fn second_acquire_fails_naming_holder_and_drop_releases() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let lock = StateLock::acquire(&dir).unwrap();
        assert_eq!(lock.path(), dir.join(LOCK_FILE));
        // flock conflicts between open file descriptions, even in one process.
        let err = StateLock::acquire(&dir).unwrap_err();
        assert_eq!(err.exit_code(), 73);
        match &err {
            StoreError::Locked { holder, .. } => assert_eq!(*holder, Some(std::process::id())),
            other => panic!("unexpected error {other:?}"),
        }
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(lock);
        // Another test may spawn a child at this moment; until its exec the
        // child shares our descriptor (and so the flock): allow it to pass.
        let again = (0..200)
            .find_map(|_| {
                StateLock::acquire(&dir).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    None
                })
            })
            .expect("the lock is free once dropped");
        drop(again);
        assert!(
            dir.join(LOCK_FILE).exists(),
            "the lock file is never deleted"
        );
    }

    /// Run in a child process by `killed_holder_does_not_block`: takes the
    /// lock, reports it, and waits to be killed.
    #[test]
    #[ignore = "helper run in a child process"]
    fn lock_holder_child() {
        let Some(dir) = testutil::helper_arg() else {
            return;
        };
        let _lock = StateLock::acquire(Path::new(&dir)).unwrap();
        println!("LOCKED {}", std::process::id());
        loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }

    #[test]
    fn a_held_lock_and_a_live_pid_are_seen_without_locking() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        assert_eq!(is_held(&dir), Some(false), "no lock file");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(LOCK_FILE), b"1\n").unwrap();
        if is_held(&dir).is_none() {
            eprintln!("SKIP: /proc/locks is not readable here");
            return;
        }
        assert_eq!(is_held(&dir), Some(false), "a lock file nobody locked");
        let _lock = StateLock::acquire(&dir).unwrap();
        assert_eq!(is_held(&dir), Some(true));
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0) && !pid_alive(u32::MAX));
    }

    #[test]
    fn killed_holder_does_not_block() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let mut child = testutil::spawn_helper("store::lock::tests::lock_holder_child", &dir);
        let child_pid: u32 = child.wait_for("LOCKED ").parse().unwrap();
        assert_eq!(child_pid, child.id());

        let err = StateLock::acquire(&dir).unwrap_err();
        assert_eq!(err.exit_code(), 73);
        assert!(
            err.to_string().contains(&format!("pid {child_pid}")),
            "{err}"
        );

        child.kill(); // SIGKILL: no destructor runs in the child
        assert_eq!(
            holder_pid(&dir.join(LOCK_FILE)),
            Some(child_pid),
            "stale pid left behind"
        );
        let lock = StateLock::acquire(&dir).expect("a dead holder's lock must not block");
        assert_eq!(holder_pid(lock.path()), Some(std::process::id()));
    }

    #[test]
    fn writable_dir_passes_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/state");
        check_writable(&dir).unwrap();
        assert!(dir.is_dir());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn unwritable_system_path_is_73() {
        // sysfs refuses mkdir to everyone, root included (EPERM, or EROFS
        // where it is mounted read-only as in containers).
        if !Path::new("/sys/kernel").is_dir() {
            eprintln!("SKIP unwritable_system_path_is_73: no sysfs at /sys");
            return;
        }
        let dir = Path::new("/sys/trainerd-state-test");
        let err = check_writable(dir).unwrap_err();
        assert_eq!(err.exit_code(), 73, "{err}");
        assert!(
            err.to_string().contains("/sys/trainerd-state-test"),
            "{err}"
        );
    }

    #[test]
    fn file_in_the_way_is_73() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = check_writable(&file.join("state")).unwrap_err();
        assert_eq!(err.exit_code(), 73, "{err}");
    }

    #[test]
    fn read_only_mount_is_73_with_fix() {
        let Some(mnt) =
            testutil::TmpfsMount::new("size=1m", true, "read_only_mount_is_73_with_fix")
        else {
            return;
        };
        for dir in [mnt.path().to_path_buf(), mnt.path().join("state")] {
            let err = check_writable(&dir).unwrap_err();
            assert_eq!(err.exit_code(), 73, "{err}");
            let msg = err.to_string();
            assert!(
                msg.contains("read-only") && msg.contains("read-write"),
                "{msg}"
            );
        }
        let err = StateLock::acquire(mnt.path()).unwrap_err();
        assert_eq!(err.exit_code(), 73, "{err}");
    }

    #[test]
    fn permission_denied_is_73_with_uid() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            eprintln!(
                "SKIP permission_denied_is_73_with_uid: root ignores mode bits \
                 (read_only_mount_is_73_with_fix covers root)"
            );
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
        let err = check_writable(&dir).unwrap_err();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(err.exit_code(), 73);
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        assert!(err.to_string().contains(&format!("uid {uid}")), "{err}");
    }
}
