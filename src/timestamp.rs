//! Wall-clock timestamps as trainerd writes them: RFC 3339, UTC, whole
//! seconds, `Z` suffix (journal records, webhook deliveries, Katib lines,
//! model cards).

use chrono::{SecondsFormat, Utc};

/// Now, e.g. `2026-01-01T00:00:00Z`.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// "12s", "4m 05s", "3h 02m", "2d 04h".
pub fn format_age(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn whole_seconds_in_utc() {
        let t = super::now_rfc3339();
        assert_eq!(t.len(), "2026-01-01T00:00:00Z".len(), "{t}");
        assert!(t.ends_with('Z') && !t.contains('.'), "{t}");
        assert!(chrono::DateTime::parse_from_rfc3339(&t).is_ok(), "{t}");
    }
}
