//! The compact projection of a Secret or ServiceAccount the inventory keeps: metadata only,
//! never a Secret's data, and none of `managedFields` beyond the last write time.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::labels;
use crate::controller::status::from_k8s_time;

/// The Secret type of legacy ServiceAccount tokens.
pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
/// Helm's release records: Secrets that hold chart state, not credentials.
pub const HELM_RELEASE_TYPE: &str = "helm.sh/release.v1";
/// Set by the API server (at most once a day) on a legacy token each time it authenticates.
pub const LEGACY_TOKEN_LAST_USED: &str = "kubernetes.io/legacy-token-last-used";

/// Field selector of the legacy-token watch and list.
pub const LEGACY_TOKEN_SELECTOR: &str = "type=kubernetes.io/service-account-token";
/// Field selector of every other Secret that can hold a credential: not a legacy token (the
/// other selector has those) and not a Helm release record.
pub const OTHER_SECRETS_SELECTOR: &str =
    "type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1";

/// The Kubernetes kind of an inventoried object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Secret,
    ServiceAccount,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "Secret",
            Self::ServiceAccount => "ServiceAccount",
        }
    }
}

/// What a Secret's `type` tells the inventory. The type is not part of metadata: it is
/// known from which field-selected watch or list the object came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretType {
    /// `kubernetes.io/service-account-token`.
    ServiceAccountToken,
    /// Any other credential-bearing type (Opaque, TLS, dockerconfigjson, basic-auth, …).
    Other,
}

/// The contract's classification of an inventoried object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Labelled `app.kubernetes.io/managed-by: keyward`.
    Managed,
    /// A Secret of type `kubernetes.io/service-account-token`.
    LegacySaToken,
    Unmanaged,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Managed => "managed",
            Self::LegacySaToken => "legacy-sa-token",
            Self::Unmanaged => "unmanaged",
        }
    }
}

/// One Secret or ServiceAccount as the inventory sees it. Kept small: a large cluster has
/// hundreds of thousands (namespaces are shared, the uid is a number, and only managed
/// objects carry their labels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryObject {
    pub kind: ObjectKind,
    pub namespace: Arc<str>,
    pub name: Box<str>,
    /// `metadata.uid` as a number (see [`uid_number`]).
    pub uid: u128,
    /// `None` for ServiceAccounts.
    pub secret_type: Option<SecretType>,
    /// Labelled `app.kubernetes.io/managed-by: keyward`.
    pub managed: bool,
    /// `keyward.io/tenant` and `keyward.io/credential`, kept only on managed objects.
    pub labels: Option<Box<ManagedLabels>>,
    /// Carries a `keyward.io/owner` annotation.
    pub has_owner: bool,
    /// The latest `time` in `metadata.managedFields`, else `creationTimestamp`.
    pub last_write: Option<DateTime<Utc>>,
    /// `kubernetes.io/legacy-token-last-used` of a legacy token, when it parses.
    pub last_used: Option<NaiveDate>,
}

/// The keyward labels of a managed object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedLabels {
    pub tenant: Option<String>,
    pub credential: Option<String>,
}

/// A uid (a UUID, as Kubernetes assigns them) as a 128-bit number; anything else is hashed.
pub fn uid_number(uid: &str) -> u128 {
    let digits: String = uid.chars().filter(|c| *c != '-').collect();
    u128::from_str_radix(&digits, 16).unwrap_or_else(|_| {
        let mut h = DefaultHasher::new();
        uid.hash(&mut h);
        u128::from(h.finish())
    })
}

impl InventoryObject {
    /// Projects a Secret's metadata; `None` for an object without a namespace, name or uid
    /// (which the API server never sends).
    pub fn secret(meta: &ObjectMeta, secret_type: SecretType) -> Option<Self> {
        let mut object = Self::project(ObjectKind::Secret, meta)?;
        object.secret_type = Some(secret_type);
        if secret_type == SecretType::ServiceAccountToken {
            object.last_used = label(meta, LEGACY_TOKEN_LAST_USED)
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        }
        Some(object)
    }

    /// Projects a ServiceAccount's metadata.
    pub fn service_account(meta: &ObjectMeta) -> Option<Self> {
        Self::project(ObjectKind::ServiceAccount, meta)
    }

    fn project(kind: ObjectKind, meta: &ObjectMeta) -> Option<Self> {
        let managed = label(meta, labels::MANAGED_BY) == Some(labels::MANAGED_BY_VALUE);
        let owned = |key| label(meta, key).map(str::to_owned);
        Some(Self {
            kind,
            namespace: meta.namespace.as_deref()?.into(),
            name: meta.name.as_deref()?.into(),
            uid: uid_number(meta.uid.as_deref()?),
            secret_type: None,
            managed,
            // Only managed objects keep their tenant and credential labels.
            labels: managed.then(|| {
                Box::new(ManagedLabels {
                    tenant: owned(labels::TENANT),
                    credential: owned(labels::CREDENTIAL),
                })
            }),
            has_owner: meta
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(labels::OWNER)),
            last_write: last_write(meta),
            last_used: None,
        })
    }

    /// `managed`, then `legacy-sa-token`, else `unmanaged`.
    pub fn class(&self) -> Class {
        if self.managed {
            Class::Managed
        } else if self.secret_type == Some(SecretType::ServiceAccountToken) {
            Class::LegacySaToken
        } else {
            Class::Unmanaged
        }
    }

    /// When a legacy token was last used, at the latest: the label is a date the API server
    /// refreshes at most once a day, so the last use may lie up to a day after it.
    pub fn last_used_by(&self) -> Option<DateTime<Utc>> {
        let next_day = self.last_used?.succ_opt()?;
        Utc.from_local_datetime(&next_day.and_hms_opt(0, 0, 0)?)
            .single()
    }
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// The latest write recorded in `managedFields`, else the creation time.
pub fn last_write(meta: &ObjectMeta) -> Option<DateTime<Utc>> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter_map(|entry| entry.time.as_ref().map(from_k8s_time))
        .max()
        .or_else(|| meta.creation_timestamp.as_ref().map(from_k8s_time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::status::to_k8s_time;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            namespace: Some("ns".into()),
            name: Some("n".into()),
            uid: Some("u".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
            creation_timestamp: Some(to_k8s_time(at("2024-01-01T00:00:00Z"))),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn last_write_is_the_latest_managed_fields_time() {
        let mut m = meta(&[], &[]);
        m.managed_fields = Some(vec![
            ManagedFieldsEntry {
                time: Some(to_k8s_time(at("2024-03-01T00:00:00Z"))),
                ..ManagedFieldsEntry::default()
            },
            ManagedFieldsEntry {
                time: Some(to_k8s_time(at("2024-05-01T00:00:00Z"))),
                ..ManagedFieldsEntry::default()
            },
            ManagedFieldsEntry::default(),
        ]);
        let o = InventoryObject::secret(&m, SecretType::Other).unwrap();
        assert_eq!(o.last_write, Some(at("2024-05-01T00:00:00Z")));
    }

    #[test]
    fn last_write_falls_back_to_the_creation_time() {
        let o = InventoryObject::secret(&meta(&[], &[]), SecretType::Other).unwrap();
        assert_eq!(o.last_write, Some(at("2024-01-01T00:00:00Z")));
    }

    #[test]
    fn classification_follows_label_then_type() {
        let managed = meta(&[(labels::MANAGED_BY, "keyward")], &[]);
        let plain = meta(&[], &[]);
        let other_manager = meta(&[(labels::MANAGED_BY, "helm")], &[]);
        let class = |m: &ObjectMeta, t| InventoryObject::secret(m, t).unwrap().class();
        assert_eq!(class(&managed, SecretType::Other), Class::Managed);
        assert_eq!(
            class(&managed, SecretType::ServiceAccountToken),
            Class::Managed
        );
        assert_eq!(
            class(&plain, SecretType::ServiceAccountToken),
            Class::LegacySaToken
        );
        assert_eq!(class(&plain, SecretType::Other), Class::Unmanaged);
        assert_eq!(class(&other_manager, SecretType::Other), Class::Unmanaged);
        assert_eq!(
            InventoryObject::service_account(&managed).unwrap().class(),
            Class::Managed
        );
        assert_eq!(
            InventoryObject::service_account(&plain).unwrap().class(),
            Class::Unmanaged
        );
    }

    #[test]
    fn only_managed_objects_keep_their_tenant_and_credential_labels() {
        let tenant = [
            (labels::MANAGED_BY, "keyward"),
            (labels::TENANT, "acme"),
            (labels::CREDENTIAL, "k"),
        ];
        let o = InventoryObject::secret(&meta(&tenant, &[]), SecretType::Other).unwrap();
        let kept = o.labels.unwrap();
        assert_eq!(kept.tenant.as_deref(), Some("acme"));
        assert_eq!(kept.credential.as_deref(), Some("k"));
        let o = InventoryObject::secret(&meta(&[(labels::TENANT, "acme")], &[]), SecretType::Other)
            .unwrap();
        assert_eq!(o.labels, None);
    }

    #[test]
    fn owner_annotation_is_noted() {
        let o = InventoryObject::secret(&meta(&[], &[(labels::OWNER, "alice")]), SecretType::Other)
            .unwrap();
        assert!(o.has_owner);
        assert!(
            !InventoryObject::secret(&meta(&[], &[]), SecretType::Other)
                .unwrap()
                .has_owner
        );
    }

    #[test]
    fn legacy_token_last_used_is_read_as_the_end_of_that_day() {
        let m = meta(&[(LEGACY_TOKEN_LAST_USED, "2020-01-31")], &[]);
        let o = InventoryObject::secret(&m, SecretType::ServiceAccountToken).unwrap();
        assert_eq!(o.last_used, NaiveDate::from_ymd_opt(2020, 1, 31));
        assert_eq!(o.last_used_by(), Some(at("2020-02-01T00:00:00Z")));
        let bad = meta(&[(LEGACY_TOKEN_LAST_USED, "yesterday")], &[]);
        let o = InventoryObject::secret(&bad, SecretType::ServiceAccountToken).unwrap();
        assert_eq!(o.last_used, None);
    }

    #[test]
    fn uids_are_kept_as_numbers() {
        assert_eq!(
            uid_number("0000000a-0000-0000-0000-00000000000b"),
            (10u128 << 96) | 11
        );
        assert_ne!(uid_number("not-a-uuid"), uid_number("other"));
    }

    #[test]
    fn objects_without_identity_are_skipped() {
        let mut m = meta(&[], &[]);
        m.uid = None;
        assert!(InventoryObject::secret(&m, SecretType::Other).is_none());
    }
}
