//! Fault injection for crash tests: named points where a test can make the
//! process pause or die, so that kills land inside a save, not only between
//! saves.
//!
//! Controlled by two environment variables, read once:
//! - `TRAINERD_FAULT_DELAY_MS=<n>`: sleep `n` ms at every point, widening the
//!   windows a random external SIGKILL can hit.
//! - `TRAINERD_FAULT_ABORT=<point>[:<nth>]`: kill the process with SIGKILL
//!   at the `nth` (default 1st) time `<point>` is reached, as an external
//!   kill at exactly that place would. SIGKILL rather than `abort()`, so no
//!   core dump is written and no handler runs.
//! - `TRAINERD_FAULT_PANIC=<point>[:<nth>]`: panic there instead, as a bug or
//!   an error raised inside libtorch would (tch panics on those).
//! - `TRAINERD_FAULT_HANG=<point>[:<nth>]`: never return from there, as a
//!   libtorch call stuck for good would (the watchdog's last resort).
//!
//! With none set, a point costs one atomic load.
//!
//! Points in the store: `ckpt.mid_write` (half the bytes written),
//! `ckpt.after_write`, `ckpt.after_fsync`, `ckpt.after_rename`,
//! `ckpt.after_dir_fsync`. The trainer adds its own (`train.step`, ...),
//! promotion `export.onnx` (the ONNX file staged, the other forms not yet),
//! `promote.exported`, `promote.staged` and `promote.swap` (see
//! `pipeline::promote`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Every point the store itself defines, in the order a save reaches them.
pub const CHECKPOINT_POINTS: [&str; 5] = [
    "ckpt.mid_write",
    "ckpt.after_write",
    "ckpt.after_fsync",
    "ckpt.after_rename",
    "ckpt.after_dir_fsync",
];

/// The parsed fault settings.
#[derive(Debug, PartialEq, Eq)]
struct Faults {
    delay: Option<Duration>,
    /// Point name, and which hit of it kills the process (1-based).
    abort: Option<(String, u64)>,
    /// Point name, and which hit of it panics (1-based).
    panic: Option<(String, u64)>,
}

#[derive(Debug)]
struct Armed {
    faults: Faults,
    hits: AtomicU64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

/// `TRAINERD_FAULT_HANG`'s point and hit, with the hits so far.
static HANG: OnceLock<Option<(String, u64, AtomicU64)>> = OnceLock::new();

/// Marks a place where a crash test may pause or kill the process.
pub fn point(name: &str) {
    hang_if_armed(name);
    let Some(armed) = ARMED.get_or_init(from_env) else {
        return;
    };
    if let Some(delay) = armed.faults.delay {
        std::thread::sleep(delay);
    }
    if let Some((target, nth)) = &armed.faults.abort {
        if target == name && armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            tracing::warn!(
                point = name,
                hit = nth,
                "fault injection: killing the process"
            );
            die();
        }
    }
    if let Some((target, nth)) = &armed.faults.panic {
        if target == name && armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            panic!("fault injection: panic at {name} (hit {nth})");
        }
    }
}

fn hang_if_armed(name: &str) {
    let hang = HANG.get_or_init(|| {
        let spec = std::env::var("TRAINERD_FAULT_HANG").ok();
        match parse_point("TRAINERD_FAULT_HANG", spec.as_deref()) {
            Ok(p) => p.map(|(point, nth)| (point, nth, AtomicU64::new(0))),
            Err(why) => {
                eprintln!("trainerd: ignoring fault injection settings: {why}");
                None
            }
        }
    });
    if let Some((target, nth, hits)) = hang {
        if target == name && hits.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            tracing::warn!(
                point = name,
                hit = nth,
                "fault injection: hanging here for good"
            );
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

fn die() -> ! {
    // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

fn from_env() -> Option<Armed> {
    let delay = std::env::var("TRAINERD_FAULT_DELAY_MS").ok();
    let abort = std::env::var("TRAINERD_FAULT_ABORT").ok();
    let panic = std::env::var("TRAINERD_FAULT_PANIC").ok();
    match parse(delay.as_deref(), abort.as_deref(), panic.as_deref()) {
        Ok(faults) => faults.map(|faults| Armed {
            faults,
            hits: AtomicU64::new(0),
        }),
        Err(why) => {
            // A crash test whose fault silently never fires would pass for
            // the wrong reason: say so loudly.
            eprintln!("trainerd: ignoring fault injection settings: {why}");
            tracing::error!("ignoring fault injection settings: {why}");
            None
        }
    }
}

fn parse(
    delay: Option<&str>,
    abort: Option<&str>,
    panic: Option<&str>,
) -> Result<Option<Faults>, String> {
    let delay = match delay.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(ms) => {
            let ms: u64 = ms
                .parse()
                .map_err(|_| format!("TRAINERD_FAULT_DELAY_MS={ms:?} is not a number of ms"))?;
            (ms > 0).then(|| Duration::from_millis(ms))
        }
    };
    let abort = parse_point("TRAINERD_FAULT_ABORT", abort)?;
    let panic = parse_point("TRAINERD_FAULT_PANIC", panic)?;
    if abort.is_some() && panic.is_some() {
        return Err("set TRAINERD_FAULT_ABORT or TRAINERD_FAULT_PANIC, not both".into());
    }
    let armed = delay.is_some() || abort.is_some() || panic.is_some();
    Ok(armed.then_some(Faults {
        delay,
        abort,
        panic,
    }))
}

/// `<point>[:<nth>]` (nth >= 1, default 1) of variable `var`; unset or blank = none.
fn parse_point(var: &str, spec: Option<&str>) -> Result<Option<(String, u64)>, String> {
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let (name, nth) = match spec.rsplit_once(':') {
        Some((name, nth)) => {
            let nth: u64 = nth
                .parse()
                .map_err(|_| format!("{var}={spec:?}: {nth:?} is not a hit number"))?;
            (name, nth)
        }
        None => (spec, 1),
    };
    if name.is_empty() || nth == 0 {
        return Err(format!("{var}={spec:?}: want <point>[:<nth >= 1>]"));
    }
    Ok(Some((name.to_string(), nth)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_zero_is_disarmed() {
        assert_eq!(parse(None, None, None), Ok(None));
        assert_eq!(parse(Some("0"), Some(""), Some(" ")), Ok(None));
        assert_eq!(parse(Some(" "), None, None), Ok(None));
    }

    #[test]
    fn parses_delay_and_abort() {
        assert_eq!(
            parse(Some("25"), Some("ckpt.after_fsync:3"), None),
            Ok(Some(Faults {
                delay: Some(Duration::from_millis(25)),
                abort: Some(("ckpt.after_fsync".into(), 3)),
                panic: None,
            }))
        );
        assert_eq!(
            parse(None, Some("train.step"), None),
            Ok(Some(Faults {
                delay: None,
                abort: Some(("train.step".into(), 1)),
                panic: None,
            }))
        );
        assert_eq!(
            parse(None, None, Some("train.step:7")),
            Ok(Some(Faults {
                delay: None,
                abort: None,
                panic: Some(("train.step".into(), 7)),
            }))
        );
    }

    #[test]
    fn rejects_malformed_settings() {
        assert!(parse(Some("fast"), None, None).is_err());
        assert!(parse(None, Some("ckpt.after_write:0"), None).is_err());
        assert!(parse(None, Some("ckpt.after_write:x"), None).is_err());
        assert!(parse(None, Some(":2"), None).is_err());
        assert!(parse(None, None, Some("train.step:0")).is_err());
        assert!(parse(None, Some("train.step"), Some("train.step")).is_err());
    }
}
