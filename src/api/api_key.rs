//! `ApiKey`: a generated secret value for an outside party, kept in a Secret the operator
//! owns (and optionally in Vault), issued, rotated with overlap, expired and revoked.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    GoDuration, Timestamp, cel_duration_bound, cel_is_duration, conditions_schema,
    status_time_schema,
};

/// Desired state of an ApiKey.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "keyward.io",
    version = "v1alpha1",
    kind = "ApiKey",
    namespaced,
    shortname = "ak",
    category = "keyward",
    category = "nhi",
    status = "ApiKeyStatus",
    derive = "PartialEq",
    doc = "A generated secret value for an outside party, kept in a Secret the operator owns, issued, rotated with overlap, expired and revoked according to its tenant's policy.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".status.tenant"),
    printcolumn(name = "Owner", type_ = "string", json_path = ".status.owner"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Version", type_ = "integer", json_path = ".status.version"),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.expiresAt",
        description = "Effective expiry"
    ),
    printcolumn(name = "Rotated", type_ = "date", json_path = ".status.lastRotatedAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.tenant",
    selectable = ".spec.owner",
    selectable = ".status.tenant",
    selectable = ".status.owner",
    selectable = ".status.state",
    validation = Rule::new("!has(self.metadata) || !has(self.metadata.name) || size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters: it is the value of the label keyward.io/credential on the objects it manages")
)]
#[x_kube(validation = Rule::new("has(self.tenant) || has(self.integration)").message("spec.tenant is required when spec.integration is not set"))]
#[x_kube(validation = Rule::new("!has(self.secret) || !has(self.secret.enabled) || self.secret.enabled || has(self.vault)").message("spec.secret.enabled: false keeps the value in Vault only, so spec.vault is required"))]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySpec {
    /// PartnerIntegration in this namespace that this key serves. The key shares its tenant,
    /// owner (unless set here), expiry and suspension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = super::DNS_SUBDOMAIN_PATTERN))]
    pub integration: Option<String>,

    /// Tenant the key belongs to. Required when no integration is given; when both are
    /// given they must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = super::DNS_SUBDOMAIN_PATTERN))]
    pub tenant: Option<String>,

    /// Person or group accountable for the key; must be one of the tenant's owners.
    /// Defaults to the integration's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub owner: Option<String>,

    /// Where the value is served in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ApiKeySecret>,

    /// How the value is generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<Generator>,

    /// Scheduled rotation. Without it the value is rotated only on request
    /// (annotation `keyward.io/rotate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,

    /// Hard expiry (RFC 3339). The effective expiry may be earlier (integration, tenant,
    /// policy `maxLifetime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,

    /// Workloads in this namespace restarted (as `kubectl rollout restart` does) after each rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub consumers: Option<Vec<Consumer>>,

    /// Also keep every value as a KV v2 version in Vault, under the tenant's prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultTarget>,
}

/// The Secret that serves an ApiKey's value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeySecret {
    /// Secret name. Default: the ApiKey's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = super::DNS_SUBDOMAIN_PATTERN))]
    pub name: Option<String>,

    /// Data key of the current value. Default `api-key`. During an overlap the previous
    /// value is served under `<key>-previous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 240), regex(pattern = "^[-._a-zA-Z0-9]+$"))]
    pub key: Option<String>,

    /// When false, no Secret is written and the value lives in Vault only. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// How an ApiKey's value is generated (always from the operating system's CSPRNG).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Generator {
    /// Entropy in bytes, 16 to 128. Default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16, max = 128))]
    pub bytes: Option<i32>,

    /// Text encoding of the value: `base64url` (no padding, default), `hex` or `alphanumeric`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,

    /// Fixed text put before the value, e.g. `gx_live_`: at most 32 of `[A-Za-z0-9_-]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = "^[A-Za-z0-9_-]*$"))]
    pub prefix: Option<String>,
}

// Text encoding of a generated value (no doc comment: see TenantState).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Encoding {
    /// URL-safe base64 without padding.
    #[default]
    #[serde(rename = "base64url")]
    Base64Url,
    /// Lower-case hexadecimal.
    #[serde(rename = "hex")]
    Hex,
    /// Letters and digits only, carrying the requested entropy.
    #[serde(rename = "alphanumeric")]
    Alphanumeric,
}

/// Scheduled rotation of an ApiKey.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
// Both operands are checked first: one its own field's rule refuses is reported by that
// rule alone, never as a failure of this one.
#[x_kube(validation = Rule::new(format!(
    "!has(self.overlap) || !{} || !{} || duration(self.overlap) < duration(self.every)",
    cel_is_duration("self.overlap"),
    cel_is_duration("self.every"),
)).message("{field}.overlap must be shorter than {field}.every"))]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Interval between rotations, e.g. `720h`, at least `1s`. The tenant's
    /// `maxRotationInterval` may shorten it.
    #[x_kube(validation = Rule::new(cel_duration_bound(">=", "1s")).message("{field} must be at least 1s"))]
    pub every: GoDuration,

    /// How long the previous value keeps being served (under `<key>-previous`) after a
    /// rotation. Default `0s`; shorter than `every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<GoDuration>,
}

/// Kind of a workload that consumes a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConsumerKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// A workload in the ApiKey's namespace restarted after each rotation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Consumer {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: ConsumerKind,
    /// Name of the workload in the ApiKey's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = super::DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// Where an ApiKey's values are kept in Vault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultTarget {
    /// A KV version 2 mount. Default `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub mount: Option<String>,

    /// Path relative to the tenant's prefix (set by the operator's `--vault-prefix`), e.g.
    /// `globex/api-key`. Absolute paths and `..` are refused.
    #[schemars(length(min = 1, max = 512))]
    pub path: String,
}

// Lifecycle state of a managed credential (no doc comment: see TenantState).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CredentialState {
    /// Not issued yet.
    Pending,
    /// A value is served.
    Active,
    /// Past its effective expiry; no value is served.
    Expired,
    /// Revoked for a reason other than time; no value is served until the cause is lifted.
    Revoked,
    /// Can never be issued as specified; no value is served.
    Invalid,
}

/// Observed state of an ApiKey. Never holds a value, only its fingerprint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Pending`, `Active`, `Expired`, `Revoked` or `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<CredentialState>,
    /// The resolved tenant (its own, or its integration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The resolved owner (its own, or its integration's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Version of the current value: 1 at first issue, +1 at each rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// `sha256:` and the first 16 hex digits of the SHA-256 of the current value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// First issue of the current lineage of values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub issued_at: Option<Timestamp>,
    /// When the current generation of the spec was first seen; `maxLifetime` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub renewed_at: Option<Timestamp>,
    /// Last rotation (or the first issue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub last_rotated_at: Option<Timestamp>,
    /// Next scheduled rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub next_rotation_at: Option<Timestamp>,
    /// Until when the previous value is still served; present only during an overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub previous_valid_until: Option<Timestamp>,
    /// Effective expiry, if any deadline applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub expires_at: Option<Timestamp>,
    /// Last value of the `keyward.io/rotate` annotation acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_request: Option<String>,
    /// `Ready`, `Synced`, `OwnerBound`, `CrossTenant` and `PolicyCompliant`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
