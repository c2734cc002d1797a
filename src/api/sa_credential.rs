//! `ServiceAccountCredential`: a ServiceAccount the operator creates for an outside party,
//! and short-lived bound tokens for it from the TokenRequest API.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    CredentialState, GoDuration, Timestamp, cel_duration_bound, cel_is_duration, conditions_schema,
    status_time_schema,
};

/// Desired state of a ServiceAccountCredential. Expiry and revocation delete the
/// ServiceAccount, which invalidates every token issued for it.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "keyward.io",
    version = "v1alpha1",
    kind = "ServiceAccountCredential",
    namespaced,
    shortname = "sac",
    category = "keyward",
    category = "nhi",
    status = "ServiceAccountCredentialStatus",
    derive = "PartialEq",
    doc = "A ServiceAccount the operator creates for an outside party, and short-lived bound tokens for it, refreshed ahead of expiry.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".status.tenant"),
    printcolumn(name = "Owner", type_ = "string", json_path = ".status.owner"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Token-Expires",
        type_ = "string",
        json_path = ".status.tokenExpiresAt",
        description = "Expiry of the token currently served"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.expiresAt",
        description = "Effective expiry of the credential"
    ),
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
// Both operands are checked first: one its own field's rule refuses is reported by that
// rule alone, never as a failure of this one.
#[x_kube(validation = Rule::new(format!(
    "!has(self.refreshBefore) || !{} || (has(self.tokenTTL) && !{}) || duration(self.refreshBefore) < (has(self.tokenTTL) ? duration(self.tokenTTL) : duration('1h'))",
    cel_is_duration("self.refreshBefore"),
    cel_is_duration("self.tokenTTL"),
)).message("{field}.refreshBefore must be shorter than {field}.tokenTTL (default 1h)"))]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountCredentialSpec {
    /// PartnerIntegration in this namespace that this credential serves. The credential
    /// shares its tenant, owner (unless set here), expiry and suspension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = super::DNS_SUBDOMAIN_PATTERN))]
    pub integration: Option<String>,

    /// Tenant the credential belongs to. Required when no integration is given; when both
    /// are given they must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = super::DNS_SUBDOMAIN_PATTERN))]
    pub tenant: Option<String>,

    /// Person or group accountable for the credential; must be one of the tenant's owners.
    /// Defaults to the integration's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub owner: Option<String>,

    /// Name of the ServiceAccount the operator creates and owns. Default: the credential's
    /// name. An existing ServiceAccount of that name is never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = super::DNS_SUBDOMAIN_PATTERN))]
    pub service_account_name: Option<String>,

    /// Audiences the tokens are bound to, e.g. `https://api.acme.example`. Default: the API
    /// server's own audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub audiences: Option<Vec<String>>,

    /// Lifetime of each token. Default `1h`; at least `10m`, the API server's minimum.
    #[serde(rename = "tokenTTL", default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(cel_duration_bound(">=", "10m")).message("{field} must be at least 10m, the API server's minimum token lifetime"))]
    pub token_ttl: Option<GoDuration>,

    /// How long before a token expires it is replaced. Default: one third of `tokenTTL`;
    /// shorter than `tokenTTL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(cel_duration_bound(">", "0s")).message("{field} must be longer than 0s"))]
    pub refresh_before: Option<GoDuration>,

    /// Where the current token is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TokenSecret>,

    /// Hard expiry (RFC 3339). The effective expiry may be earlier (integration, tenant,
    /// policy `maxLifetime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// The Secret that serves a ServiceAccountCredential's current token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TokenSecret {
    /// Secret name. Default: `<name of the credential>-token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = super::DNS_SUBDOMAIN_PATTERN))]
    pub name: Option<String>,

    /// Data key of the token. Default `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = "^[-._a-zA-Z0-9]+$"))]
    pub key: Option<String>,
}

/// Observed state of a ServiceAccountCredential. Never holds a token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountCredentialStatus {
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
    /// Version of the ServiceAccount: 1 at first issue, +1 each time it is re-created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// `sha256:` and the first 16 hex digits of the SHA-256 of the current token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// UID of the ServiceAccount the current tokens are bound to (spelled
    /// `serviceAccountUID`, as Kubernetes spells `podIP`).
    #[serde(
        default,
        rename = "serviceAccountUID",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_account_uid: Option<String>,
    /// Expiry of the token currently served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub token_expires_at: Option<Timestamp>,
    /// When the current token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub last_issued_at: Option<Timestamp>,
    /// When the current token will be replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub next_refresh_at: Option<Timestamp>,
    /// First issue of the current lineage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub issued_at: Option<Timestamp>,
    /// When the current generation of the spec was first seen; `maxLifetime` counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub renewed_at: Option<Timestamp>,
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
