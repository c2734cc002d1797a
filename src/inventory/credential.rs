//! The projection of a managed credential (ApiKey or ServiceAccountCredential) the inventory
//! and the report read: identity, tenant, owner, state, times and fingerprint — never a value.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;

use crate::api::{ApiKey, CredentialState, ServiceAccountCredential};

/// Which keyward kind a credential is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CredentialKind {
    ApiKey,
    ServiceAccountCredential,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "ApiKey",
            Self::ServiceAccountCredential => "ServiceAccountCredential",
        }
    }
}

/// One managed credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedCredential {
    pub kind: CredentialKind,
    pub namespace: String,
    pub name: String,
    /// The tenant it belongs to: `status.tenant` as resolved, else `spec.tenant`.
    pub tenant: Option<String>,
    /// `status.owner`, else `spec.owner`.
    pub owner: Option<String>,
    pub state: Option<CredentialState>,
    pub version: Option<i64>,
    /// `status.fingerprint` of the value currently served.
    pub fingerprint: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `status.lastRotatedAt` of an ApiKey; `status.lastIssuedAt` (the last token) of a
    /// ServiceAccountCredential, which has no rotation of its own.
    pub last_rotated_at: Option<DateTime<Utc>>,
    /// The `Ready` condition's reason and message, which say why a credential is not Active.
    pub reason: Option<String>,
    pub message: Option<String>,
}

fn ready(conditions: &[Condition]) -> (Option<String>, Option<String>) {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (Some(c.reason.clone()), Some(c.message.clone())))
        .unwrap_or_default()
}

impl From<&ApiKey> for ManagedCredential {
    fn from(key: &ApiKey) -> Self {
        let status = key.status.as_ref();
        let (reason, message) = ready(status.map(|s| s.conditions.as_slice()).unwrap_or(&[]));
        Self {
            kind: CredentialKind::ApiKey,
            namespace: key.namespace().unwrap_or_default(),
            name: key.name_any(),
            tenant: status
                .and_then(|s| s.tenant.clone())
                .or_else(|| key.spec.tenant.clone()),
            owner: status
                .and_then(|s| s.owner.clone())
                .or_else(|| key.spec.owner.clone()),
            state: status.and_then(|s| s.state),
            version: status.and_then(|s| s.version),
            fingerprint: status.and_then(|s| s.fingerprint.clone()),
            expires_at: status.and_then(|s| s.expires_at).map(|t| t.0),
            last_rotated_at: status.and_then(|s| s.last_rotated_at).map(|t| t.0),
            reason,
            message,
        }
    }
}

impl From<&ServiceAccountCredential> for ManagedCredential {
    fn from(sac: &ServiceAccountCredential) -> Self {
        let status = sac.status.as_ref();
        let (reason, message) = ready(status.map(|s| s.conditions.as_slice()).unwrap_or(&[]));
        Self {
            kind: CredentialKind::ServiceAccountCredential,
            namespace: sac.namespace().unwrap_or_default(),
            name: sac.name_any(),
            tenant: status
                .and_then(|s| s.tenant.clone())
                .or_else(|| sac.spec.tenant.clone()),
            owner: status
                .and_then(|s| s.owner.clone())
                .or_else(|| sac.spec.owner.clone()),
            state: status.and_then(|s| s.state),
            version: status.and_then(|s| s.version),
            fingerprint: status.and_then(|s| s.fingerprint.clone()),
            expires_at: status.and_then(|s| s.expires_at).map(|t| t.0),
            last_rotated_at: status.and_then(|s| s.last_issued_at).map(|t| t.0),
            reason,
            message,
        }
    }
}
