//! Types shared by several kinds: durations, timestamps, owners, conditions.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The longest duration keyward accepts in any field: 876000h, 100 years. Admission rejects
/// anything longer, and [`GoDuration::parse`] refuses it.
pub const MAX_DURATION: chrono::Duration = chrono::Duration::hours(876_000);

/// The earliest time keyward accepts in any field, and the floor of its time arithmetic.
pub const MIN_TIME: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// The latest time keyward accepts in any field, and the ceiling of its time arithmetic.
pub const MAX_TIME: DateTime<Utc> = match DateTime::from_timestamp(253_402_300_799, 0) {
    Some(t) => t,
    None => panic!("9999-12-31T23:59:59Z is a time"),
};

/// Placeholder for the path of the field a rule is on (`spec.rotation.every`), in the
/// messages of admission rules. [`crate::crd::all`] writes the path in: a type's schema
/// cannot know the name of the field that holds it.
pub const FIELD: &str = "{field}";

/// The duration syntax admission accepts: Go's syntax (what CEL's `duration()` parses),
/// restricted to non-negative values, a unit on every number, each unit at most once and in
/// the order h, m, s, ms, us (or µs), ns, with at most 6, 7, 9, 12, 15 and 18 digits before
/// the point. Every value it matches is below 2277779h, inside the range of Go's (and so the
/// API server's) `duration()`, so a rule may call `duration()` on it without failing.
/// It also matches the empty string: [`cel_is_duration`] rules that out.
pub const DURATION_PATTERN: &str = concat!(
    "^([0-9]{1,6}([.][0-9]+)?h)?",
    "([0-9]{1,7}([.][0-9]+)?m)?",
    "([0-9]{1,9}([.][0-9]+)?s)?",
    "([0-9]{1,12}([.][0-9]+)?ms)?",
    "([0-9]{1,15}([.][0-9]+)?(us|µs))?",
    "([0-9]{1,18}([.][0-9]+)?ns)?$",
);

/// CEL: the string `expr` is a duration admission accepts: in the admitted syntax
/// ([`DURATION_PATTERN`], not empty), and then, since `duration()` cannot fail on that, at
/// most 876000h. It is the rule of every duration field, and every other rule that calls
/// `duration()` on a field holds unless it is true, so a value this refuses gets the
/// field's own message and no other.
pub fn cel_is_duration(expr: &str) -> String {
    format!(
        "({expr} != '' && {expr}.matches('{DURATION_PATTERN}') && duration({expr}) <= duration('876000h'))"
    )
}

/// CEL rule on a duration field: `duration(self) <op> duration('<bound>')`, checked only on
/// a value [`cel_is_duration`] accepts (anything else is the type's rule's to reject).
pub fn cel_duration_bound(op: &str, bound: &str) -> String {
    format!(
        "!{} || duration(self) {op} duration('{bound}')",
        cel_is_duration("self")
    )
}

/// A duration as written by the user, in Go syntax (`"720h"`, `"90s"`, `"1h30m"`).
///
/// The text is kept as written so the operator never rewrites a user's spec; it is parsed
/// into a checked value where a decision needs it. Admission guarantees the syntax and the
/// bound; [`parse`](Self::parse) checks both again, since a value may come from elsewhere.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(pub String);

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SECOND: u64 = 1_000_000_000;
const NANOS_PER_MINUTE: u64 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: u64 = 60 * NANOS_PER_MINUTE;
const MAX_DURATION_NANOS: u128 = 876_000 * NANOS_PER_HOUR as u128;

/// The units of Go's `time.ParseDuration`, in nanoseconds; both micro signs (U+00B5, U+03BC)
/// as Go has them.
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => NANOS_PER_MICRO,
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SECOND,
        "m" => NANOS_PER_MINUTE,
        "h" => NANOS_PER_HOUR,
        _ => return None,
    })
}

impl GoDuration {
    /// The duration as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the Go duration syntax into a chrono duration, at most [`MAX_DURATION`].
    ///
    /// Accepts Go's `time.ParseDuration` syntax without a sign (a superset of what admission
    /// accepts: units in any order and repeated, `.5h`, `5.h`, any number of digits) and
    /// computes the value as Go does, to the nanosecond, so an admitted value means here what
    /// it means to the API server's CEL rules. Never panics: sums saturate, and anything
    /// longer than [`MAX_DURATION`] is refused.
    pub fn parse(&self) -> Result<chrono::Duration, DurationError> {
        let text = self.0.as_str();
        if text.starts_with('-') {
            return Err(DurationError::Negative(shown(text)));
        }
        if text.is_empty() {
            return Err(DurationError::Syntax(shown(text)));
        }
        let mut rest = text;
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let whole_len = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (whole_digits, after) = rest.split_at(whole_len);
            let whole = whole_digits.bytes().fold(0u128, |n, d| {
                n.saturating_mul(10).saturating_add(u128::from(d - b'0'))
            });
            let (fraction, scale, fraction_len, after) = match after.strip_prefix('.') {
                Some(after_point) => leading_fraction(after_point),
                None => (0, 1.0, 0, after),
            };
            if whole_len == 0 && fraction_len == 0 {
                return Err(DurationError::Syntax(shown(text)));
            }
            let unit_len = after
                .find(|c: char| c == '.' || c.is_ascii_digit())
                .unwrap_or(after.len());
            if unit_len == 0 {
                return Err(DurationError::NoUnit(shown(text)));
            }
            let (unit_text, next) = after.split_at(unit_len);
            let Some(unit) = unit_nanos(unit_text) else {
                return Err(DurationError::UnknownUnit {
                    value: shown(text),
                    unit: shown(unit_text),
                });
            };
            let mut nanos = whole.saturating_mul(u128::from(unit));
            if fraction > 0 {
                // Go's own arithmetic, floating point and all (the fraction is below one
                // unit, so at most 3.6e12 ns): a fraction comes out to the nanosecond that
                // CEL's duration() computes, not one off.
                nanos = nanos.saturating_add((fraction as f64 * (unit as f64 / scale)) as u128);
            }
            total = total.saturating_add(nanos);
            rest = next;
        }
        if total > MAX_DURATION_NANOS {
            return Err(DurationError::TooLong(shown(text)));
        }
        // At most 876000h, about 3.2e18 ns: within i64.
        let nanos = i64::try_from(total).map_err(|_| DurationError::TooLong(shown(text)))?;
        Ok(chrono::Duration::nanoseconds(nanos))
    }

    /// The canonical spelling of `d`, which admission accepts and [`parse`](Self::parse)
    /// reads back exactly: each unit at most once, largest first (`"1h30m"`, `"1s500ms"`,
    /// `"0s"` for zero). `None` when `d` is negative or longer than [`MAX_DURATION`].
    pub fn from_duration(d: chrono::Duration) -> Option<Self> {
        if d < chrono::Duration::zero() || d > MAX_DURATION {
            return None;
        }
        let mut left = u64::try_from(d.num_nanoseconds()?).ok()?;
        if left == 0 {
            return Some(Self("0s".to_owned()));
        }
        let mut text = String::new();
        for (unit, size) in [
            ("h", NANOS_PER_HOUR),
            ("m", NANOS_PER_MINUTE),
            ("s", NANOS_PER_SECOND),
            ("ms", NANOS_PER_MILLI),
            ("us", NANOS_PER_MICRO),
            ("ns", 1),
        ] {
            let count = left / size;
            left %= size;
            if count > 0 {
                text.push_str(&count.to_string());
                text.push_str(unit);
            }
        }
        Some(Self(text))
    }
}

/// Go's `leadingFraction`: the digits after a point as an integer and its scale, digits
/// beyond what 63 bits hold ignored (they are far below a nanosecond); then how many digits
/// there were, and the rest of the text.
fn leading_fraction(text: &str) -> (u64, f64, usize, &str) {
    let len = text.bytes().take_while(u8::is_ascii_digit).count();
    let (mut fraction, mut scale, mut overflow) = (0u64, 1.0f64, false);
    for digit in text[..len].bytes() {
        if overflow {
            continue;
        }
        if fraction > (u64::MAX >> 1) / 10 {
            overflow = true;
            continue;
        }
        let next = fraction * 10 + u64::from(digit - b'0');
        if next > 1 << 63 {
            overflow = true;
            continue;
        }
        fraction = next;
        scale *= 10.0;
    }
    (fraction, scale, len, &text[len..])
}

/// The offending text as an error shows it: at most 64 characters (admission's limit), so
/// a message never carries more than a field could hold.
fn shown(text: &str) -> String {
    const SHOWN: usize = 64;
    if text.chars().count() <= SHOWN {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(SHOWN).collect();
        cut.push('…');
        cut
    }
}

impl From<&str> for GoDuration {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl std::fmt::Display for GoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a duration string could not be used. Each message holds the offending text (at most
/// 64 characters of it, quoted) and the rule it breaks, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration such as \"720h\", \"90s\" or \"1h30m\"")]
    Syntax(String),
    #[error(
        "{0:?} has a number without a unit; write one of ns, us, ms, s, m or h after every number"
    )]
    NoUnit(String),
    #[error("{value:?} has the unknown unit {unit:?}; the units are ns, us, ms, s, m and h")]
    UnknownUnit { value: String, unit: String },
    #[error("{0:?} is negative")]
    Negative(String),
    #[error("{0:?} is longer than 876000h (100 years), the longest duration keyward accepts")]
    TooLong(String),
}

impl JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 64,
            "x-kubernetes-validations": [{
                "rule": cel_is_duration("self"),
                "message": format!("{FIELD} must be a duration of at most 876000h (100 years), such as \"720h\", \"90s\" or \"1h30m\""),
            }],
        })
    }
}

/// A point in time, written as an RFC 3339 string (`"2027-01-31T00:00:00Z"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub DateTime<Utc>);

/// The time syntax admission accepts: RFC 3339 with `Z` or an offset, a real calendar date
/// (month lengths and leap years included) in years 1970 to 9999, hours 00-23, minutes and
/// seconds 00-59, at most nine digits of a second. Go's `time.Parse` (so CEL's
/// `timestamp()`) and chrono both read every value it matches.
pub const TIMESTAMP_PATTERN: &str = concat!(
    "^(",
    "(19[7-9][0-9]|[2-9][0-9]{3})-",
    "((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))",
    "|(19(7[26]|8[048]|9[26])|[2-9][0-9](0[48]|[2468][048]|[13579][26])|([2468][048]|[3579][26])00)-02-29",
    ")T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,9})?",
    "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
);

/// The last day of year 9999 with an offset behind UTC: it may fall in year 10000 in UTC,
/// beyond what CEL's `timestamp()` converts, so admission refuses it before converting.
pub const LAST_DAY_BEHIND_UTC_PATTERN: &str = "^9999-12-31T[^-]*-";

/// CEL: the string `expr` is a time admission accepts: in the admitted syntax, and then,
/// since `timestamp()` cannot fail on that, within [`MIN_TIME`]..=[`MAX_TIME`]. It is the
/// rule of every time field.
pub fn cel_is_time(expr: &str) -> String {
    format!(
        "({expr}.matches('{TIMESTAMP_PATTERN}') && !{expr}.matches('{LAST_DAY_BEHIND_UTC_PATTERN}') && timestamp({expr}) >= timestamp('1970-01-01T00:00:00Z') && timestamp({expr}) <= timestamp('9999-12-31T23:59:59Z'))"
    )
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // No `format: date-time`: the API server's date-time also admits forms without a
        // zone, and the format turns `self` into a CEL timestamp that `matches` cannot check.
        json_schema!({
            "type": "string",
            "maxLength": 64,
            "x-kubernetes-validations": [{
                "rule": cel_is_time("self"),
                "message": format!("{FIELD} must be an RFC 3339 time from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z, such as \"2027-01-31T00:00:00Z\""),
            }],
        })
    }
}

/// Schema of a time in a status: written by the controller alone (always UTC, always within
/// [`MIN_TIME`]..=[`MAX_TIME`]), so it carries no rule that could reject a status write.
pub fn status_time_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string"})
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Self(t)
    }
}

/// Whether an owner names a person or a group of people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OwnerKind {
    /// One person, named by the identity they sign in with.
    User,
    /// A group, named as the identity provider names it.
    Group,
}

/// Someone accountable for a tenant's credentials.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Owner {
    /// The user or group name, e.g. `alice@acme.example` or `acme-platform`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `User` or `Group`.
    pub kind: OwnerKind,
}

/// Schema of a `conditions` list: `metav1.Condition` items keyed by `type`, so server-side
/// apply merges conditions one by one.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "description": "The latest available observations of the object's state.",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// A Kubernetes object name that is a DNS-1123 label (namespaces, for instance).
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A Kubernetes object name that is a DNS-1123 subdomain (most object names).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Schema of a list of namespace names, each unique.
pub fn namespaces_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "description": "Namespaces this tenant owns. May be empty for an umbrella tenant that only parents others.",
        "items": {"type": "string", "maxLength": 63, "pattern": DNS_LABEL_PATTERN},
        "maxItems": 1000,
        "x-kubernetes-list-type": "set",
    })
}

/// Schema of a tenant's owners: unique by kind and name, at least one.
pub fn owners_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Owner>();
    json_schema!({
        "type": "array",
        "items": item,
        "minItems": 1,
        "maxItems": 256,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["kind", "name"],
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use regex::Regex;

    use super::*;

    fn nanos(text: &str) -> Result<i64, DurationError> {
        GoDuration::from(text)
            .parse()
            .map(|d| d.num_nanoseconds().expect("at most 876000h"))
    }

    /// What admission accepts as a duration: the pattern, and not empty.
    fn admitted_duration(text: &str) -> bool {
        !text.is_empty()
            && Regex::new(DURATION_PATTERN)
                .expect("pattern")
                .is_match(text)
    }

    fn admitted_time(text: &str) -> bool {
        Regex::new(TIMESTAMP_PATTERN)
            .expect("pattern")
            .is_match(text)
            && !Regex::new(LAST_DAY_BEHIND_UTC_PATTERN)
                .expect("pattern")
                .is_match(text)
    }

    #[test]
    fn go_durations_parse_to_their_length() {
        let s = NANOS_PER_SECOND as i64;
        for (text, expected) in [
            ("720h", 720 * 3600 * s),
            ("90s", 90 * s),
            ("15m", 900 * s),
            ("1h30m", 5400 * s),
            ("1.5h", 5400 * s),
            ("0s", 0),
            ("300ms", 300_000_000),
            ("1µs", 1000),
            ("1\u{3bc}s", 1000),
            ("1us", 1000),
            ("1ns", 1),
            (".5h", 1800 * s),
            ("5.h", 5 * 3600 * s),
            ("876000h", 876_000 * 3600 * s),
            // Go's arithmetic: a fraction below a nanosecond is nothing.
            ("0.0000000000000000001h", 0),
            ("0.3s", 300_000_000),
        ] {
            assert_eq!(nanos(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn repeated_and_unordered_units_add_up_as_in_go() {
        // Admission refuses both (each unit once, largest first); the parser reads them as Go.
        assert_eq!(nanos("1h1h"), nanos("2h"));
        assert_eq!(nanos("30m1h"), nanos("1h30m"));
        assert!(!admitted_duration("1h1h"));
        assert!(!admitted_duration("30m1h"));
    }

    #[test]
    fn malformed_or_negative_durations_are_refused() {
        for text in [
            "", "0", "30 days", "1d", "h", "-5m", "forever", "+5m", "1h30", ".h", "1..5h", " 1h",
            "1H", "1e3s", "1h-5m",
        ] {
            assert!(GoDuration::from(text).parse().is_err(), "{text:?} parsed");
        }
        assert_eq!(
            GoDuration::from("-5m").parse(),
            Err(DurationError::Negative("-5m".into()))
        );
        assert_eq!(
            GoDuration::from("1h30").parse(),
            Err(DurationError::NoUnit("1h30".into()))
        );
        assert_eq!(
            GoDuration::from("3d").parse(),
            Err(DurationError::UnknownUnit {
                value: "3d".into(),
                unit: "d".into()
            })
        );
    }

    #[test]
    fn durations_longer_than_100_years_are_refused_without_overflow() {
        assert_eq!(GoDuration::from("876000h").parse(), Ok(MAX_DURATION));
        for text in [
            "876000h1ns",
            "876001h",
            "2562048h",
            "9999999h",
            "99999999999h",
            "99999999999999999999h",
            "999999h9999999m999999999s999999999999ms999999999999999us999999999999999999ns",
        ] {
            assert!(
                matches!(
                    GoDuration::from(text).parse(),
                    Err(DurationError::TooLong(_))
                ),
                "{text}"
            );
        }
        let huge = "9".repeat(10_000) + "h";
        assert!(matches!(
            GoDuration::from(huge.as_str()).parse(),
            Err(DurationError::TooLong(_))
        ));
    }

    #[test]
    fn duration_errors_show_at_most_64_characters_of_the_value() {
        let long = "x".repeat(1000);
        let message = GoDuration::from(long.as_str())
            .parse()
            .unwrap_err()
            .to_string();
        assert!(message.len() < 200, "{message}");
        assert!(
            message.contains(&format!("{}…", "x".repeat(64))),
            "{message}"
        );
    }

    #[test]
    fn canonical_spelling_is_admitted_and_reads_back() {
        for (d, text) in [
            (chrono::Duration::zero(), "0s"),
            (chrono::Duration::minutes(90), "1h30m"),
            (chrono::Duration::milliseconds(1500), "1s500ms"),
            (chrono::Duration::nanoseconds(1_001), "1us1ns"),
            (MAX_DURATION, "876000h"),
        ] {
            assert_eq!(GoDuration::from_duration(d), Some(GoDuration::from(text)));
        }
        assert_eq!(
            GoDuration::from_duration(MAX_DURATION + chrono::Duration::nanoseconds(1)),
            None
        );
        assert_eq!(
            GoDuration::from_duration(chrono::Duration::seconds(-1)),
            None
        );
    }

    /// One line of `testdata/go_reference.tsv`, the Go reference (see `go_reference.go`).
    fn reference() -> Vec<Vec<String>> {
        include_str!("testdata/go_reference.tsv")
            .lines()
            .map(|line| line.split('\t').map(str::to_owned).collect())
            .collect()
    }

    fn unquote(quoted: &str) -> String {
        serde_json::from_str(quoted).unwrap_or_else(|err| panic!("{quoted}: {err}"))
    }

    #[test]
    fn reference_patterns_are_ours() {
        let patterns: Vec<(String, String)> = reference()
            .into_iter()
            .filter(|f| f[0] == "pattern")
            .map(|f| (f[1].clone(), f[2].clone()))
            .collect();
        assert_eq!(
            patterns,
            [
                ("duration".to_owned(), DURATION_PATTERN.to_owned()),
                ("timestamp".to_owned(), TIMESTAMP_PATTERN.to_owned()),
                (
                    "last-day".to_owned(),
                    LAST_DAY_BEHIND_UTC_PATTERN.to_owned()
                ),
            ],
            "regenerate testdata/go_reference.tsv with go_reference.go after changing a pattern"
        );
    }

    /// Against Go: the pattern matches what RE2 matches; everything admitted parses in Go,
    /// below Go's limit, and here to the same nanosecond; and nothing parses here that Go
    /// refuses or reads differently.
    #[test]
    fn durations_agree_with_go() {
        let duration = Regex::new(DURATION_PATTERN).expect("pattern");
        let mut checked = 0;
        for fields in reference().into_iter().filter(|f| f[0] == "duration") {
            let text = unquote(&fields[1]);
            let go: Option<i64> = fields[3].parse().ok();
            assert_eq!(
                duration.is_match(&text).to_string(),
                fields[2],
                "RE2 and regex disagree on {text:?}"
            );
            let ours = nanos(&text);
            if admitted_duration(&text) {
                let go = go.unwrap_or_else(|| panic!("{text:?} is admitted but Go refuses it"));
                assert!(go < 2_277_779 * NANOS_PER_HOUR as i64, "{text:?}");
                if go <= MAX_DURATION_NANOS as i64 {
                    assert_eq!(ours, Ok(go), "{text:?}");
                } else {
                    assert!(matches!(ours, Err(DurationError::TooLong(_))), "{text:?}");
                }
            }
            if let Ok(ours) = ours {
                assert_eq!(Some(ours), go, "{text:?}: Go reads it differently");
            }
            checked += 1;
        }
        assert!(checked > 1000, "{checked}");
    }

    /// Against Go: the time pattern matches what RE2 matches; Go's RFC 3339 parse and CEL's
    /// range take every admitted time, and chrono reads it as the same instant.
    #[test]
    fn times_agree_with_go() {
        let timestamp = Regex::new(TIMESTAMP_PATTERN).expect("pattern");
        let last_day = Regex::new(LAST_DAY_BEHIND_UTC_PATTERN).expect("pattern");
        let mut admitted = 0;
        for fields in reference().into_iter().filter(|f| f[0] == "time") {
            let text = unquote(&fields[1]);
            assert_eq!(timestamp.is_match(&text).to_string(), fields[2], "{text:?}");
            assert_eq!(last_day.is_match(&text).to_string(), fields[3], "{text:?}");
            if !admitted_time(&text) {
                continue;
            }
            let (secs, nanos) = fields[4]
                .split_once('.')
                .unwrap_or_else(|| panic!("{text:?} is admitted but Go says {}", fields[4]));
            let go = DateTime::from_timestamp(
                secs.parse().expect("seconds"),
                nanos.parse().expect("nanoseconds"),
            )
            .expect("in range");
            let ours: Timestamp = serde_json::from_value(serde_json::Value::String(text.clone()))
                .unwrap_or_else(|err| panic!("{text:?}: {err}"));
            assert_eq!(ours.0, go, "{text:?}");
            admitted += 1;
        }
        assert!(admitted > 300, "{admitted}");
    }

    #[test]
    fn time_bounds_are_the_first_and_last_second_of_the_admitted_years() {
        assert_eq!(MIN_TIME.to_rfc3339(), "1970-01-01T00:00:00+00:00");
        assert_eq!(MAX_TIME.to_rfc3339(), "9999-12-31T23:59:59+00:00");
        for text in [
            "1970-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2028-02-29T00:00:00Z",
        ] {
            assert!(admitted_time(text), "{text}");
        }
        for text in [
            "1969-12-31T23:59:59Z",
            "10000-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:00:00-05:00",
            "2027-13-01T00:00:00Z",
            "2027-02-30T00:00:00Z",
            "2027-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2027-01-31T00:00:00",
            "2027-01-31T24:00:00Z",
            "2027-01-31T00:00:00.1234567891Z",
        ] {
            assert!(!admitted_time(text), "{text}");
        }
    }

    #[test]
    fn timestamps_round_trip_as_rfc3339_utc() {
        let t: Timestamp = serde_json::from_str("\"2027-01-31T02:00:00+02:00\"").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2027-01-31T00:00:00Z\""
        );
    }

    /// Go's `Duration.String`, the spelling Go tools write (`72h3m0.5s`, `1.5µs`).
    fn go_string(nanos: u64) -> String {
        fn fraction(value: u64, digits: u32) -> String {
            let scale = 10u64.pow(digits);
            let (whole, part) = (value / scale, value % scale);
            if part == 0 {
                whole.to_string()
            } else {
                let part = format!("{part:0width$}", width = digits as usize);
                format!("{whole}.{}", part.trim_end_matches('0'))
            }
        }
        if nanos == 0 {
            return "0s".into();
        }
        if nanos < NANOS_PER_SECOND {
            return if nanos < NANOS_PER_MICRO {
                format!("{nanos}ns")
            } else if nanos < NANOS_PER_MILLI {
                format!("{}µs", fraction(nanos, 3))
            } else {
                format!("{}ms", fraction(nanos, 6))
            };
        }
        let seconds = fraction(nanos % NANOS_PER_MINUTE, 9);
        let minutes = nanos / NANOS_PER_MINUTE % 60;
        let hours = nanos / NANOS_PER_HOUR;
        if hours > 0 {
            format!("{hours}h{minutes}m{seconds}s")
        } else if minutes > 0 {
            format!("{minutes}m{seconds}s")
        } else {
            format!("{seconds}s")
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_any_text(text in any::<String>()) {
            let _ = GoDuration(text).parse();
        }

        #[test]
        fn parse_never_panics_on_numbers_and_units(
            parts in prop::collection::vec(
                ("[0-9]{0,40}", prop::option::of("[0-9]{0,40}"), "(ns|us|µs|μs|ms|s|m|h|x|)"),
                0..8,
            ),
            sign in "[-+]?",
        ) {
            let mut text = sign;
            for (whole, fraction, unit) in parts {
                text.push_str(&whole);
                if let Some(fraction) = fraction {
                    text.push('.');
                    text.push_str(&fraction);
                }
                text.push_str(&unit);
            }
            if let Ok(d) = GoDuration(text.clone()).parse() {
                prop_assert!(d >= chrono::Duration::zero() && d <= MAX_DURATION, "{text}");
            }
        }

        #[test]
        fn a_formatted_duration_reads_back(n in 0..=MAX_DURATION_NANOS as u64) {
            let d = chrono::Duration::nanoseconds(n as i64);
            let canonical = GoDuration::from_duration(d).expect("within bounds");
            prop_assert!(admitted_duration(canonical.as_str()), "{canonical}");
            prop_assert_eq!(canonical.parse(), Ok(d));
            let go = go_string(n);
            prop_assert!(admitted_duration(&go), "{}", go);
            prop_assert_eq!(GoDuration(go).parse(), Ok(d));
        }

        /// Every real calendar date of the admitted years, at any time and offset, is
        /// admitted unless it is the last day behind UTC, and reads as its instant.
        #[test]
        fn admitted_times_read_as_their_instant(
            days in 0i64..2_932_897,
            seconds in 0u32..86_400,
            nanos in 0u32..1_000_000_000,
            digits in 0usize..=9,
            offset in prop::option::of(-1439i32..=1439),
        ) {
            let date = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("date")
                + chrono::Days::new(days as u64);
            let nanos = nanos - nanos % 10u32.pow(9 - digits as u32);
            let local = date.and_time(
                chrono::NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos).expect("time"),
            );
            let mut text = local.format("%Y-%m-%dT%H:%M:%S").to_string();
            if digits > 0 {
                text.push_str(&format!(".{:0width$}", nanos / 10u32.pow(9 - digits as u32), width = digits));
            }
            let minutes = offset.unwrap_or(0);
            match offset {
                None => text.push('Z'),
                Some(m) => text.push_str(&format!(
                    "{}{:02}:{:02}",
                    if m < 0 { '-' } else { '+' },
                    m.abs() / 60,
                    m.abs() % 60
                )),
            }
            let behind = offset.is_some_and(|m| m < 0);
            let last_day = date == chrono::NaiveDate::from_ymd_opt(9999, 12, 31).expect("date");
            prop_assert_eq!(admitted_time(&text), !(last_day && behind), "{}", text);
            let instant = local.and_utc() - chrono::Duration::minutes(i64::from(minutes));
            let read: Timestamp = serde_json::from_value(serde_json::Value::String(text.clone()))
                .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(read.0, instant, "{}", text);
        }

        #[test]
        fn a_date_is_admitted_exactly_when_it_is_on_the_calendar(
            year in 1960i32..10_001,
            month in 0u32..14,
            day in 0u32..33,
        ) {
            let text = format!("{year:04}-{month:02}-{day:02}T00:00:00Z");
            let real = chrono::NaiveDate::from_ymd_opt(year, month, day).is_some();
            prop_assert_eq!(admitted_time(&text), real && (1970..=9999).contains(&year), "{}", text);
        }
    }
}
