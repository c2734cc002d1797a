//! Pure decision logic: resolving tenants, owners and integrations, effective state,
//! policy, expiry and rotation, and what a credential should be at time `t`. No I/O.

pub mod api_key;
pub mod copies;
pub mod credential;
pub mod integration;
pub mod sa_credential;
pub mod tenancy;
pub mod tenant;
pub mod vault;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Duration, SecondsFormat, Utc};

/// RFC 3339 UTC, second precision unless the time has a fraction.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A duration in the compact Go style users write: `72h`, `1h30m`, `45s`, `1.5s`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let sign = if d < Duration::zero() { "-" } else { "" };
    let d = d.abs();
    let total_ms = d.num_milliseconds();
    let (h, rem) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    let mut out = sign.to_owned();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    match (s, ms) {
        (0, 0) => {}
        (s, 0) => out.push_str(&format!("{s}s")),
        (s, ms) => out.push_str(&format!(
            "{}s",
            format!("{s}.{ms:03}").trim_end_matches('0')
        )),
    }
    if out.is_empty() || out == "-" {
        out.push_str("0s");
    }
    out
}

/// The latest time any decision produces: the last time the contract's bounds admit.
pub fn max_time() -> DateTime<Utc> {
    crate::api::MAX_TIME
}

/// The earliest time any decision produces: the UNIX epoch.
pub fn min_time() -> DateTime<Utc> {
    crate::api::MIN_TIME
}

/// `t + d`, saturating at [`min_time`] and [`max_time`]: arithmetic on user-supplied times
/// and durations never panics and never leaves the bounds a status can hold.
pub fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d)
        .unwrap_or(if d < Duration::zero() {
            min_time()
        } else {
            max_time()
        })
        .clamp(min_time(), max_time())
}

/// `t - d`, saturating like [`later`].
pub fn earlier(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    match Duration::zero().checked_sub(&d) {
        Some(neg) => later(t, neg),
        None => max_time().min(t),
    }
}

/// The earliest of some optional times.
pub fn earliest_time(
    times: impl IntoIterator<Item = Option<DateTime<Utc>>>,
) -> Option<DateTime<Utc>> {
    times.into_iter().flatten().min()
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn time_arithmetic_saturates_at_the_bounds() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(later(t, Duration::seconds(5)), t + Duration::seconds(5));
        assert_eq!(later(t, Duration::MAX), max_time());
        assert_eq!(later(max_time(), Duration::hours(876_000)), max_time());
        assert_eq!(later(t, Duration::MIN), min_time());
        assert_eq!(earlier(t, Duration::MAX), min_time());
        assert_eq!(earlier(t, Duration::MIN), max_time());
        assert_eq!(earlier(t, Duration::seconds(5)), t - Duration::seconds(5));
    }

    #[test]
    fn durations_are_formatted_as_users_write_them() {
        assert_eq!(format_duration(Duration::hours(72)), "72h");
        assert_eq!(format_duration(Duration::minutes(90)), "1h30m");
        assert_eq!(format_duration(Duration::seconds(45)), "45s");
        assert_eq!(format_duration(Duration::milliseconds(1500)), "1.5s");
        assert_eq!(format_duration(Duration::zero()), "0s");
    }
}
