//! Timestamps as the HopX SDK parses them: RFC 3339, UTC, whole seconds, `Z`.
//!
//! Python 3.8–3.10's `datetime.fromisoformat` rejects other fraction lengths, and a naive time
//! fails pydantic's `AwareDatetime`, so every timestamp hutch emits goes through here.

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format_rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The current time, formatted for the wire.
pub fn now_rfc3339() -> String {
    format_rfc3339(Utc::now())
}

/// Parses any RFC 3339 timestamp into UTC.
pub fn parse_rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_with_z() {
        let t = parse_rfc3339("2025-01-28T10:11:12.345+02:00").unwrap();
        assert_eq!(format_rfc3339(t), "2025-01-28T08:11:12Z");
        let now = now_rfc3339();
        assert!(now.ends_with('Z') && !now.contains('.'), "{now}");
    }
}
