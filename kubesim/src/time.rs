//! Timestamps as the API server writes them: RFC 3339 in UTC with second precision (`Z`).
//! A leaf module: every layer (admission, the cluster, controllers, the kubelet) stamps
//! objects with these.

use jiff::{SignedDuration, Timestamp, Unit};

/// `t` as the API server stores times (RFC 3339, rounded to the second).
pub fn ts(t: Timestamp) -> String {
    format!("{:.0}", t.round(Unit::Second).unwrap_or(t))
}

/// The current time as the API server writes timestamps.
pub fn now() -> String {
    ts(Timestamp::now())
}

/// The time `seconds` from now (a `deletionTimestamp` with its grace period).
pub fn in_seconds(seconds: i64) -> String {
    ts(Timestamp::now() + SignedDuration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_in_utc() {
        let t: Timestamp = "2026-03-01T10:20:30.6Z".parse().unwrap();
        assert_eq!(ts(t), "2026-03-01T10:20:31Z");
        let now = now();
        assert!(now.ends_with('Z') && !now.contains('.'), "{now}");
        let later: Timestamp = in_seconds(30).parse().unwrap();
        let delta = later.duration_since(Timestamp::now()).as_secs();
        assert!((28..=31).contains(&delta), "{delta}");
    }
}
