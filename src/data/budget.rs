//! The memory budget: how many bytes input data may cost before trainerd refuses it.
//!
//! A hostile or mistaken file can declare (IDX header) or decode to (gzip,
//! PNG) far more than the machine holds; everything that sizes an allocation
//! from input checks that size against this budget first. The budget is
//! `--memory-budget` / `TRAINERD_MEMORY_BUDGET` (`4G`, `512M`, `1.5GiB`, a
//! byte count), else 3/4 of the tightest limit the process runs under: the
//! cgroup's memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`), the
//! machine's `MemTotal`, and the address-space rlimit.

use std::path::Path;

/// What the budget is when no limit can be read (not Linux, no `/proc`).
const FALLBACK_BYTES: u64 = 4 << 30;

/// Where the flag's and env var's names are given in messages.
pub const HOW_TO_RAISE: &str = "--memory-budget / TRAINERD_MEMORY_BUDGET";

/// The budget for `text` (the flag/env/file value), or the derived default.
pub fn resolve(text: Option<&str>) -> Result<u64, String> {
    match text.map(str::trim) {
        None | Some("" | "auto") => Ok(default_budget()),
        Some(s) => parse_size(s),
    }
}

/// 3/4 of the tightest of the cgroup limit, `MemTotal` and `RLIMIT_AS`.
pub fn default_budget() -> u64 {
    let limits = [
        read_limit(Path::new("/sys/fs/cgroup/memory.max")),
        read_limit(Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes")),
        mem_total(),
        address_space_limit(),
    ];
    limits
        .into_iter()
        .flatten()
        .min()
        .map_or(FALLBACK_BYTES, |l| l / 4 * 3)
}

/// A cgroup limit file: a byte count, or `max` (no limit, `None`).
fn read_limit(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse::<u64>().ok().filter(|&b| b > 0)
}

fn mem_total() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn address_space_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } == 0;
    (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Parses `4G`, `512M`, `1.5GiB`, `64k`, `100000` (bytes): binary units,
/// `B`, `iB` and case ignored. Zero is refused.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => {
            return Err(format!(
                "{s:?} is not a size such as 4G, 512M or 1.5GiB (units K, M, G, T)"
            ))
        }
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 4G, 512M or 1.5GiB"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!(
            "{s:?} is not a usable budget: give at least 1 byte and less than 16 EiB"
        ));
    }
    Ok(bytes as u64)
}

/// `3.0 GiB`, `512 MiB`, `12 KiB`, `100 B`.
pub fn human(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (name, shift) in UNITS {
        let unit = 1u64 << shift;
        if bytes >= unit {
            let v = bytes as f64 / unit as f64;
            return if v >= 100.0 {
                format!("{v:.0} {name}")
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{bytes} B")
}

/// `the memory budget of 3.0 GiB (raise it with --memory-budget / TRAINERD_MEMORY_BUDGET)`.
pub fn describe(budget: u64) -> String {
    format!(
        "the memory budget of {} (raise it with {HOW_TO_RAISE})",
        human(budget)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512mb"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size(" 64k "), Ok(64 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        for bad in ["", "0", "0G", "G", "4X", "-1G", "1e400", "99999999T", "nan"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_default_is_three_quarters_of_a_real_limit() {
        let b = default_budget();
        assert!(b > 0);
        if let Some(total) = mem_total() {
            assert!(b <= total / 4 * 3, "{b} vs MemTotal {total}");
        }
        assert_eq!(resolve(None), Ok(b));
        assert_eq!(resolve(Some("auto")), Ok(b));
        assert_eq!(resolve(Some("1M")), Ok(1 << 20));
        assert!(resolve(Some("lots")).is_err());
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(human(512 << 20), "512 MiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(7), "7 B");
        assert!(describe(1 << 30).contains("--memory-budget"));
    }
}
