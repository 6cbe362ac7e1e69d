//! Times and durations as the verbs take them: `30m`, `12h`, `7d` (s, m,
//! h, d, w), and instants in RFC 3339 (`2026-12-04T02:00:00Z`).

use std::time::{Duration, SystemTime};

use prost_types::Timestamp;

/// `30m`, `12h`, `7d` ago, or an RFC 3339 instant.
pub fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(at) = parse_instant(text) {
        return Ok(at);
    }
    let ago = parse_duration(text)?;
    SystemTime::now()
        .checked_sub(ago)
        .ok_or_else(|| format!("{text:?} reaches before the epoch"))
}

/// An RFC 3339 instant.
pub fn parse_instant(text: &str) -> Result<SystemTime, String> {
    let at = text
        .parse::<Timestamp>()
        .map_err(|_| format!("{text:?} is not an RFC 3339 instant (2026-12-04T02:00:00Z)"))?;
    SystemTime::try_from(at).map_err(|e| format!("{text:?}: {e}"))
}

/// `90s`, `30m`, `12h`, `7d`, `2w`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let count: u64 = digits.parse().map_err(|_| {
        format!("{text:?} is neither a duration (30m, 12h, 7d) nor an RFC 3339 instant")
    })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h, d or w")),
    };
    Ok(Duration::from_secs(count.saturating_mul(seconds)))
}

/// A protobuf duration of whole seconds and nanos.
pub fn proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: duration.subsec_nanos() as i32,
    }
}

/// `90s`, `5m`, `2h`, `1d 2h` — the form the verbs take, for reading back.
pub fn duration_text(duration: Option<&prost_types::Duration>) -> String {
    let Some(duration) = duration else {
        return "-".into();
    };
    let seconds = duration.seconds.max(0);
    if seconds == 0 {
        return "0s".into();
    }
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    let mut parts = Vec::new();
    for (count, unit) in [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")] {
        if count > 0 {
            parts.push(format!("{count}{unit}"));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_instants_parse() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("7x").is_err());
        assert!(parse_duration("soon").is_err());
        let at = parse_since("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_767_323_045
        );
        assert!(parse_instant("tomorrow").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn durations_read_back_as_typed() {
        let d = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
        assert_eq!(duration_text(d(90).as_ref()), "1m 30s");
        assert_eq!(duration_text(d(7200).as_ref()), "2h");
        assert_eq!(duration_text(d(93_600).as_ref()), "1d 2h");
        assert_eq!(duration_text(d(0).as_ref()), "0s");
        assert_eq!(duration_text(None), "-");
    }
}
