//! `Tenant`: an organisation (customer, partner, subsidiary), the namespaces it owns, the
//! people accountable for its credentials, and whether the relationship is alive.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    GoDuration, Owner, Timestamp, cel_duration_bound, conditions_schema, namespaces_schema,
    owners_schema,
};

/// Desired state of a Tenant.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "keyward.io",
    version = "v1alpha1",
    kind = "Tenant",
    shortname = "tn",
    category = "keyward",
    status = "TenantStatus",
    derive = "PartialEq",
    doc = "A customer, partner or subsidiary organisation: which namespaces it owns, who may own its credentials, and whether the business relationship is alive.",
    printcolumn(name = "State", type_ = "string", json_path = ".status.effectiveState", description = "Effective state, including every ancestor's"),
    printcolumn(name = "Namespaces", type_ = "string", json_path = ".spec.namespaces", description = "Namespaces this tenant owns"),
    printcolumn(name = "Credentials", type_ = "integer", json_path = ".status.credentials.total", description = "Managed credentials of this tenant"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("!has(self.spec.parent) || self.spec.parent != self.metadata.name").message("spec.parent: a tenant cannot be its own parent"),
    validation = Rule::new("!has(self.metadata) || !has(self.metadata.name) || size(self.metadata.name) <= 63").message("metadata.name must be at most 63 characters: it is the value of the label keyward.io/tenant on every managed Secret and ServiceAccount"),
)]
#[serde(rename_all = "camelCase")]
pub struct TenantSpec {
    /// Human-readable name of the organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,

    /// Name of the parent Tenant. The parent's state and policy cascade down: a suspended or
    /// offboarded parent suspends or offboards this tenant, and the strictest policy wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = super::DNS_SUBDOMAIN_PATTERN))]
    pub parent: Option<String>,

    /// Namespaces this tenant owns. May be empty for an umbrella tenant that only parents
    /// others. A namespace listed by two tenants is owned by neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "namespaces_schema")]
    pub namespaces: Option<Vec<String>>,

    /// People and groups accountable for this tenant's credentials; every credential names
    /// one of them as its owner. At least one.
    #[schemars(schema_with = "owners_schema")]
    pub owners: Vec<Owner>,

    /// Internal sponsor of the business relationship, e.g. `bob@provider.example`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub sponsor: Option<String>,

    /// State of the relationship: `Active` (default), `Suspended` (credentials revoked until
    /// it is active again) or `Offboarded` (the relationship has ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TenantState>,

    /// End of the relationship (RFC 3339). After it the tenant counts as Offboarded and every
    /// credential of it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Timestamp>,

    /// Ceilings applied to every credential of this tenant and of its descendants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<TenantPolicy>,
}

// State of a tenant's business relationship. (No doc comment: the schema of an optional
// enum takes the type's description over the field's, and the field's says more.)
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum TenantState {
    /// The relationship is alive; credentials are issued.
    #[default]
    Active,
    /// Temporarily halted; every credential is revoked until the tenant is active again.
    Suspended,
    /// The relationship has ended; every credential is revoked.
    Offboarded,
}

/// Ceilings on the credentials of a tenant. Every field is optional; along a chain of
/// parents the strictest value wins.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantPolicy {
    /// Longest life of a credential after its last spec change (renewal), e.g. `2160h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lifetime: Option<GoDuration>,

    /// Longest allowed rotation interval, at least `1s`; a credential that rotates less often
    /// is clamped to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(cel_duration_bound(">=", "1s")).message("{field} must be at least 1s"))]
    pub max_rotation_interval: Option<GoDuration>,

    /// When true, a credential with no effective expiry is Invalid and never issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_expiry: Option<bool>,

    /// How long an issued credential outlives the loss of its owner before it is revoked.
    /// Default `72h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_grace_period: Option<GoDuration>,

    /// Age after which an unmanaged credential counts as stale. Default `2160h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after: Option<GoDuration>,
}

/// Observed state of a Tenant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The most severe of this tenant's and its ancestors' states; `Offboarded` once `endsAt`
    /// has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_state: Option<TenantState>,

    /// Counts of this tenant's managed credentials by state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialCounts>,

    /// `Ready`: the tenant is consistent (no namespace conflict, a valid parent chain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Counts of managed credentials by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CredentialCounts {
    /// Every managed credential of the tenant.
    pub total: i64,
    /// Credentials currently serving a value.
    pub active: i64,
    /// Credentials past their effective expiry.
    pub expired: i64,
    /// Credentials revoked by suspension, offboarding or loss of their owner.
    pub revoked: i64,
    /// Credentials that can never be issued as specified.
    pub invalid: i64,
}
