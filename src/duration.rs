//! Durations as the flags spell them, shared by every flag group.

use std::time::Duration;

/// A duration flag: `0`, a number of seconds, or `30s`, `5m`, `1h30m`, `250ms`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration such as 30s or 5m: {e}"))
}
