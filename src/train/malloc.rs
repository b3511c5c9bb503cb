//! glibc malloc settings for libtorch's allocation pattern on the CPU.
//!
//! Every training step allocates and frees the same few activation buffers of
//! 0.1–30 MB. With glibc's defaults those are `mmap`ed and unmapped each time
//! (its dynamic threshold only rises after such a block is freed, and the heap
//! top is trimmed back to the kernel at 128 KB), so each step pays thousands
//! of page faults to zero fresh pages: a `bn3` step measured 38 ms instead of
//! 28 ms (`examples/step_profile.rs`). Fixing the thresholds keeps those
//! buffers in the heap and reuses them; blocks over 32 MiB (the data set) are
//! still mapped and returned on free. Peak memory grows by about 7 %.

use std::sync::OnceLock;

/// Blocks at least this large are `mmap`ed (glibc's own ceiling for its
/// dynamic threshold).
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory at the heap top is returned to the kernel above this much.
pub const TRIM_THRESHOLD: usize = 64 << 20;

/// What `tune` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    Applied,
    /// The environment already sets malloc thresholds: the user's choice wins.
    LeftToEnvironment,
    /// Not glibc, or `mallopt` refused.
    Unavailable,
}

/// Sets the thresholds at the first call (make it at process start) unless
/// the environment sets its own (`GLIBC_TUNABLES` with `glibc.malloc.*`, or
/// `MALLOC_*_THRESHOLD_`); later calls report what the first one did.
pub fn tune() -> Tuning {
    static DONE: OnceLock<Tuning> = OnceLock::new();
    *DONE.get_or_init(|| {
        // `vars_os`, not `vars`: `vars` panics on any variable that is not
        // UTF-8, and the environment is not ours to vet (issue 18).
        let env: Vec<(String, String)> = std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        if environment_sets_malloc(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            Tuning::LeftToEnvironment
        } else {
            apply()
        }
    })
}

fn environment_sets_malloc<'a>(mut vars: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    vars.any(|(k, v)| {
        (k == "GLIBC_TUNABLES" && v.contains("glibc.malloc."))
            || (k.starts_with("MALLOC_") && k.ends_with("_THRESHOLD_"))
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> Tuning {
    // SAFETY: mallopt only changes allocator parameters; it is called before
    // any other thread exists.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
    };
    if ok {
        Tuning::Applied
    } else {
        Tuning::Unavailable
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> Tuning {
    Tuning::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_settings_in_the_environment_win() {
        let sets = |vars: &[(&str, &str)]| environment_sets_malloc(vars.iter().copied());
        assert!(sets(&[("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1")]));
        assert!(sets(&[("MALLOC_MMAP_THRESHOLD_", "65536")]));
        assert!(!sets(&[("GLIBC_TUNABLES", "glibc.rtld.nns=2")]));
        assert!(!sets(&[("PATH", "/bin"), ("MALLOC_ARENA_MAX", "2")]));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_the_thresholds() {
        assert_eq!(apply(), Tuning::Applied);
    }
}
