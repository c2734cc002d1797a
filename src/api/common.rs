//! Types shared by several kinds: durations, timestamps, owners, conditions.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Go duration syntax, as accepted by Go's `time.ParseDuration` and CEL's `duration()`,
/// restricted to non-negative values with a unit on every number.
pub const DURATION_PATTERN: &str = "^([0-9]+([.][0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A duration as written by the user, in Go syntax (`"720h"`, `"90s"`, `"1h30m"`).
///
/// The text is kept as written so the operator never rewrites a user's spec; it is parsed
/// into a checked value where a decision needs it. Admission guarantees the syntax.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GoDuration(pub String);

impl GoDuration {
    /// The duration as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the Go duration syntax into a chrono duration.
    pub fn parse(&self) -> Result<chrono::Duration, DurationError> {
        // Go also accepts a bare "0" and kube's parser an empty string; admission accepts
        // neither (every number carries a unit), and neither does this.
        if !self.0.ends_with(['s', 'm', 'h']) {
            return Err(DurationError::NoUnit(self.0.clone()));
        }
        let parsed: kube::core::Duration =
            self.0.parse().map_err(|source| DurationError::Syntax {
                value: self.0.clone(),
                source,
            })?;
        if parsed.is_negative() {
            return Err(DurationError::Negative(self.0.clone()));
        }
        chrono::Duration::from_std(std::time::Duration::from(parsed))
            .map_err(|_| DurationError::OutOfRange(self.0.clone()))
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

/// Why a duration string could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DurationError {
    #[error("{value:?} is not a duration such as \"720h\", \"90s\" or \"1h30m\"")]
    Syntax {
        value: String,
        #[source]
        source: kube::core::duration::ParseError,
    },
    #[error("{0:?} is not a duration such as \"720h\", \"90s\" or \"1h30m\"")]
    NoUnit(String),
    #[error("{0:?} is negative")]
    Negative(String),
    #[error("{0:?} is too long to represent")]
    OutOfRange(String),
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
                "rule": format!("self.matches('{DURATION_PATTERN}')"),
                "message": "must be a duration such as \"720h\", \"90s\" or \"1h30m\"",
            }],
        })
    }
}

/// A point in time, written as an RFC 3339 string (`"2027-01-31T00:00:00Z"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub DateTime<Utc>);

/// RFC 3339 with a mandatory offset: what both the API server's `date-time` format and
/// chrono accept, so an admitted value always deserializes.
pub const TIMESTAMP_PATTERN: &str =
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$";

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
                "rule": format!("self.matches('{TIMESTAMP_PATTERN}') && timestamp(self) > timestamp('0001-01-01T00:00:00Z')"),
                "message": "must be an RFC 3339 time such as \"2027-01-31T00:00:00Z\"",
            }],
        })
    }
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
    use super::*;

    #[test]
    fn go_durations_parse_to_their_length() {
        for (text, seconds) in [
            ("720h", 720 * 3600),
            ("90s", 90),
            ("15m", 900),
            ("1h30m", 5400),
            ("1.5h", 5400),
            ("0s", 0),
        ] {
            assert_eq!(
                GoDuration::from(text).parse().unwrap().num_seconds(),
                seconds,
                "{text}"
            );
        }
        assert_eq!(
            GoDuration::from("300ms")
                .parse()
                .unwrap()
                .num_milliseconds(),
            300
        );
    }

    #[test]
    fn malformed_or_negative_durations_are_refused() {
        for text in ["", "0", "30 days", "1d", "h", "-5m", "forever"] {
            assert!(GoDuration::from(text).parse().is_err(), "{text:?} parsed");
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
}
