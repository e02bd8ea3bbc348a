//! Expiry instants: `std::time::SystemTime` in memory, Unix milliseconds at rest.
//!
//! Stores persist expiry as whole milliseconds since the Unix epoch, so the
//! layer only ever produces instants that are whole milliseconds: a record
//! read back from any store then compares equal to the one written.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch for `instant`, saturating at the ends of
/// `i64` (instants before 1970 are negative).
pub fn to_unix_ms(instant: SystemTime) -> i64 {
    match instant.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map(|ms| -ms).unwrap_or(i64::MIN),
    }
}

/// The instant `ms` milliseconds after the Unix epoch (before it, if negative).
pub fn from_unix_ms(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH.checked_add(magnitude).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

/// `instant` rounded down to a whole millisecond, the precision every store keeps.
pub fn truncate_to_ms(instant: SystemTime) -> SystemTime {
    from_unix_ms(to_unix_ms(instant))
}

/// The current time, truncated to a whole millisecond.
pub fn now() -> SystemTime {
    truncate_to_ms(SystemTime::now())
}

/// Whether a record with this expiry is expired at `now`. A record expires at
/// its expiry instant, not after it; `None` never expires.
pub fn is_expired(expires_at: Option<SystemTime>, now: SystemTime) -> bool {
    expires_at.is_some_and(|at| at <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_round_trips() {
        for ms in [0, 1, 1_700_000_000_123, -1, -86_400_000] {
            assert_eq!(to_unix_ms(from_unix_ms(ms)), ms);
        }
        let now = now();
        assert_eq!(from_unix_ms(to_unix_ms(now)), now);
    }

    #[test]
    fn truncation_drops_sub_millisecond_precision() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_234_567_891);
        assert_eq!(truncate_to_ms(t), UNIX_EPOCH + Duration::from_millis(1_234));
    }

    #[test]
    fn expiry_is_inclusive() {
        let t = now();
        assert!(is_expired(Some(t), t));
        assert!(!is_expired(Some(t + Duration::from_millis(1)), t));
        assert!(!is_expired(None, t));
    }
}
