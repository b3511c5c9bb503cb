//! Parsers for the duration and interval values options take.

use std::time::Duration;

use super::{invalid, CheckpointEvery, ConfigError};

/// Longest duration any setting accepts (100 years): far beyond any real
/// budget, and far from where `Instant` arithmetic could overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses `30s`, `10m`, `2h`, `1d`, `500ms` or a bare number of seconds, up
/// to [`MAX_DURATION`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 30s or 10m"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{s:?} is not a valid duration"));
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!("{s:?} is longer than the most allowed, 100 years")),
    }
}

/// Parses `500` (steps), `30s` (time), or both separated by a comma.
pub fn parse_checkpoint_every(s: &str) -> Result<CheckpointEvery, String> {
    let mut every = CheckpointEvery {
        steps: None,
        interval: None,
    };
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!(
                "{s:?} has an empty part (use e.g. 500, 30s or 500,30s)"
            ));
        }
        if let Ok(steps) = part.parse::<u64>() {
            if steps == 0 {
                return Err("a step interval must be at least 1".into());
            }
            if every.steps.replace(steps).is_some() {
                return Err(format!("{s:?} gives a step interval twice"));
            }
        } else {
            let d = parse_duration(part)?;
            if d.is_zero() {
                return Err(format!(
                    "{part:?}: a time interval must be longer than 0 (use 1 to save every step)"
                ));
            }
            if every.interval.replace(d).is_some() {
                return Err(format!("{s:?} gives a time interval twice"));
            }
        }
    }
    if every.steps.is_none() && every.interval.is_none() {
        return Err(format!("{s:?} names no interval (use e.g. 500 or 30s)"));
    }
    Ok(every)
}

/// A duration of at least `min` for `key`.
pub(super) fn duration_at_least(
    s: &str,
    min: Duration,
    key: &str,
) -> Result<Duration, ConfigError> {
    let d = parse_duration(s).map_err(|w| invalid(key, w))?;
    if d < min {
        return Err(invalid(key, format!("{s:?} is shorter than {min:?}")));
    }
    Ok(d)
}
