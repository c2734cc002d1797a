//! `PartnerIntegration`: one integration between a tenant and an outside party; the
//! credentials that serve it hang off it and share its owner, expiry and suspension.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Timestamp, conditions_schema, status_time_schema};

/// Desired state of a PartnerIntegration. Credentials that reference it expire when it
/// expires and are revoked when it is suspended or loses its owner.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "keyward.io",
    version = "v1alpha1",
    kind = "PartnerIntegration",
    namespaced,
    shortname = "pi",
    category = "keyward",
    status = "PartnerIntegrationStatus",
    derive = "PartialEq",
    doc = "One integration between a tenant and an outside party; the credentials that serve it hang off it.",
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenant"),
    printcolumn(name = "Partner", type_ = "string", json_path = ".spec.partner.name"),
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.expiresAt",
        description = "Effective expiry"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.tenant",
    selectable = ".spec.owner"
)]
#[serde(rename_all = "camelCase")]
pub struct PartnerIntegrationSpec {
    /// The Tenant this integration belongs to. It must own this namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = super::DNS_SUBDOMAIN_PATTERN))]
    pub tenant: String,

    /// The outside party.
    pub partner: Partner,

    /// Person or group accountable for this integration; must be one of the tenant's owners.
    /// Credentials of this integration default to this owner.
    #[schemars(length(min = 1, max = 253))]
    pub owner: String,

    /// What the integration is for, e.g. `Shipment webhooks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub purpose: Option<String>,

    /// End of time-bound access (RFC 3339). Every credential of the integration expires with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,

    /// When true, every credential of the integration is revoked until it is resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<bool>,
}

/// The outside party of an integration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Partner {
    /// The partner's name, e.g. `Globex Logistics`.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// How to reach the partner's operations team, e.g. `ops@globex.example`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub contact: Option<String>,
}

// State of a PartnerIntegration (no doc comment: see TenantState).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum IntegrationState {
    /// Its credentials may be issued.
    Active,
    /// Suspended by its spec, by its tenant, or for loss of its owner; its credentials are revoked.
    Suspended,
    /// Past its effective expiry; its credentials have expired.
    Expired,
    /// It can never serve credentials as specified (unknown tenant, owner outside the tenant,
    /// namespace not owned by the tenant).
    Invalid,
}

/// Observed state of a PartnerIntegration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartnerIntegrationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Active`, `Suspended`, `Expired` or `Invalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<IntegrationState>,

    /// Effective expiry: the earliest of its own `expiresAt` and its tenant's `endsAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "status_time_schema")]
    pub expires_at: Option<Timestamp>,

    /// Number of credentials that reference this integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<i64>,

    /// `Ready` and `OwnerBound`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}
