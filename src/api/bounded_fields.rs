//! Every bounded duration and time field of the four kinds, and the hostile values each
//! must refuse: one table for the offline checks (`keyward lint`'s unit tests) and the
//! admission tests on the real API server (`tests/crds.rs`, which includes this file).

#![allow(dead_code)]

use serde_json::json;

/// A kind, the path of one of its fields, and a valid spec with that field set to a value.
pub type Field = (&'static str, &'static str, fn(&str) -> serde_json::Value);

/// Every duration and time field of every kind, in a spec that is otherwise valid: the kind,
/// the field's path, and the spec with the field set to a value.
pub fn bounded_fields() -> Vec<Field> {
    vec![
        (
            "Tenant",
            "spec.policy.maxLifetime",
            |v| json!({"owners": [{"name": "a", "kind": "User"}], "policy": {"maxLifetime": v}}),
        ),
        (
            "Tenant",
            "spec.policy.maxRotationInterval",
            |v| json!({"owners": [{"name": "a", "kind": "User"}], "policy": {"maxRotationInterval": v}}),
        ),
        (
            "Tenant",
            "spec.policy.ownerGracePeriod",
            |v| json!({"owners": [{"name": "a", "kind": "User"}], "policy": {"ownerGracePeriod": v}}),
        ),
        (
            "Tenant",
            "spec.policy.staleAfter",
            |v| json!({"owners": [{"name": "a", "kind": "User"}], "policy": {"staleAfter": v}}),
        ),
        (
            "Tenant",
            "spec.endsAt",
            |v| json!({"owners": [{"name": "a", "kind": "User"}], "endsAt": v}),
        ),
        (
            "PartnerIntegration",
            "spec.expiresAt",
            |v| json!({"tenant": "acme", "owner": "a", "partner": {"name": "P"}, "expiresAt": v}),
        ),
        (
            "ApiKey",
            "spec.rotation.every",
            |v| json!({"tenant": "acme", "rotation": {"every": v}}),
        ),
        (
            "ApiKey",
            "spec.rotation.overlap",
            |v| json!({"tenant": "acme", "rotation": {"every": "876000h", "overlap": v}}),
        ),
        (
            "ApiKey",
            "spec.expiresAt",
            |v| json!({"tenant": "acme", "expiresAt": v}),
        ),
        (
            "ServiceAccountCredential",
            "spec.tokenTTL",
            |v| json!({"tenant": "acme", "tokenTTL": v}),
        ),
        (
            "ServiceAccountCredential",
            "spec.refreshBefore",
            |v| json!({"tenant": "acme", "tokenTTL": "876000h", "refreshBefore": v}),
        ),
        (
            "ServiceAccountCredential",
            "spec.expiresAt",
            |v| json!({"tenant": "acme", "expiresAt": v}),
        ),
    ]
}

pub fn is_time_field(path: &str) -> bool {
    path.ends_with("At")
}

/// Durations no field admits: beyond 876000h (some beyond Go's 2562047h, where `duration()`
/// itself fails), outside the admitted syntax, or not durations at all. `1h1h` is valid Go
/// but each unit may appear once; `0.0000000000000000001h` is 0, hostile only where the
/// field has a minimum (below).
pub const HOSTILE_DURATIONS: &[&str] = &[
    "99999999999999999999h",
    "876001h",
    "876000h1ns",
    "2562048h",
    "9999999h",
    "99999999999h",
    "999999h9999999m999999999s",
    "1h1h",
    "30m1h",
    "",
    "0",
    "-5m",
    "1d",
    "30 days",
    "1e3s",
    "999999h9999999m",
    "+5m",
    "µs",
    "5.h",
    ".5h",
];

/// Values under a field's minimum, for the fields that have one.
pub fn under_minimum(path: &str) -> &'static [&'static str] {
    match path {
        "spec.rotation.every" | "spec.policy.maxRotationInterval" => {
            &["0s", "0.5s", "999ms", "1ns", "0.0000000000000000001h"]
        }
        "spec.tokenTTL" => &["9m59.999999999s", "1ns", "0s"],
        "spec.refreshBefore" => &["0s", "0.0000000000000000001h"],
        _ => &[],
    }
}

/// Times outside years 1970-9999 (in UTC), impossible dates, and forms without a zone.
pub const HOSTILE_TIMES: &[&str] = &[
    "1969-12-31T23:59:59Z",
    "10000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:00:00-05:00",
    "9999-12-31T23:59:59.5Z",
    "1970-01-01T00:30:00+01:00",
    "2027-13-01T00:00:00Z",
    "2027-02-30T00:00:00Z",
    "2027-02-29T00:00:00Z",
    "2027-01-31T24:00:00Z",
    "2027-01-31T00:00:00",
    "2027-01-31",
    "",
];
