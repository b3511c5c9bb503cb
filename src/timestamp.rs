//! Wall-clock timestamps as trainerd writes them: RFC 3339, UTC, whole
//! seconds, `Z` suffix (journal records, webhook deliveries, Katib lines,
//! model cards).

use chrono::{SecondsFormat, Utc};

/// Now, e.g. `2026-01-01T00:00:00Z`.
pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
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
