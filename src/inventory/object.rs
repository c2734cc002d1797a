//! The compact projection of a Secret or ServiceAccount the inventory keeps (metadata only,
//! never a Secret's data, and none of `managedFields` beyond the last write time), and its
//! classification against the keyward objects that exist.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::credential::CredentialKind;
use crate::api::labels;
use crate::runtime::from_k8s_time;

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
    /// Controlled (a controller ownerReference, matching uid) by an ApiKey or
    /// ServiceAccountCredential that exists. The `managed-by` label alone is not enough:
    /// anyone who can write a Secret can set it.
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
/// hundreds of thousands (namespaces are shared, the uid is a number, and only objects a
/// keyward kind claims to control carry that claim and their labels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryObject {
    pub kind: ObjectKind,
    pub namespace: Arc<str>,
    pub name: Box<str>,
    /// `metadata.uid` as a number (see [`uid_number`]).
    pub uid: u128,
    /// `None` for ServiceAccounts.
    pub secret_type: Option<SecretType>,
    /// Its controller ownerReference and keyward labels, kept only when that reference
    /// names an ApiKey or ServiceAccountCredential. Whether that object exists is decided
    /// when the object is classified ([`InventoryObject::class`]), against the keyward
    /// objects of that moment.
    pub keyward: Option<Box<KeywardController>>,
    /// Carries a `keyward.io/owner` annotation.
    pub has_owner: bool,
    /// The latest `time` in `metadata.managedFields`, else `creationTimestamp`.
    pub last_write: Option<DateTime<Utc>>,
    /// `kubernetes.io/legacy-token-last-used` of a legacy token, when it parses.
    pub last_used: Option<NaiveDate>,
    /// The low 32 bits of `metadata.resourceVersion` as a number (0 when it is not one):
    /// after a re-list, it tells an object that changed while the watch was away from one
    /// that did not (two versions of one object 2^32 writes of the cluster apart look alike).
    pub version: u32,
}

/// What an object whose controller ownerReference names a keyward kind keeps of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeywardController {
    /// The kind the reference names.
    pub kind: CredentialKind,
    /// The uid it names, as a number.
    pub uid: u128,
    /// `keyward.io/tenant` and `keyward.io/credential`.
    pub labels: ManagedLabels,
}

/// The keyward labels of an object keyward claims to control.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedLabels {
    pub tenant: Option<String>,
    pub credential: Option<String>,
}

/// The ApiKeys and ServiceAccountCredentials that exist, by uid: the only objects whose
/// controller ownerReference makes what they control managed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Controllers(HashMap<u128, (CredentialKind, Box<str>)>);

impl Controllers {
    /// Notes an existing keyward object; one without a namespace or uid (which the API
    /// server never sends) controls nothing.
    pub fn insert(&mut self, kind: CredentialKind, namespace: Option<&str>, uid: Option<&str>) {
        if let (Some(namespace), Some(uid)) = (namespace, uid) {
            self.0.insert(uid_number(uid), (kind, namespace.into()));
        }
    }

    /// An object in `namespace` whose controller reference is `reference` is controlled by
    /// an existing keyward object: one of that kind, with that uid. OwnerReferences never
    /// cross namespaces, so a uid copied from a keyward object elsewhere controls nothing.
    fn control(&self, reference: &KeywardController, namespace: &str) -> bool {
        self.0
            .get(&reference.uid)
            .is_some_and(|(kind, ns)| *kind == reference.kind && &**ns == namespace)
    }
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
        let owned = |key| label(meta, key).map(str::to_owned);
        Some(Self {
            kind,
            namespace: meta.namespace.as_deref()?.into(),
            name: meta.name.as_deref()?.into(),
            uid: uid_number(meta.uid.as_deref()?),
            secret_type: None,
            // Only objects a keyward kind claims to control keep the claim and their labels.
            keyward: keyward_controller(meta).map(|(kind, uid)| {
                Box::new(KeywardController {
                    kind,
                    uid,
                    labels: ManagedLabels {
                        tenant: owned(labels::TENANT),
                        credential: owned(labels::CREDENTIAL),
                    },
                })
            }),
            has_owner: meta
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(labels::OWNER)),
            last_write: last_write(meta),
            last_used: None,
            version: meta
                .resource_version
                .as_deref()
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(0, |v| v as u32),
        })
    }

    /// `managed` (controlled by one of `controllers`), then `legacy-sa-token`, else
    /// `unmanaged`.
    pub fn class(&self, controllers: &Controllers) -> Class {
        if self
            .keyward
            .as_deref()
            .is_some_and(|k| controllers.control(k, &self.namespace))
        {
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

/// The kind and uid of the controller ownerReference, when it names an ApiKey or a
/// ServiceAccountCredential (of any version of the keyward group). The API server allows at
/// most one controller reference per object.
fn keyward_controller(meta: &ObjectMeta) -> Option<(CredentialKind, u128)> {
    let reference = labels::keyward_controller(meta)?;
    let kind = [
        CredentialKind::ApiKey,
        CredentialKind::ServiceAccountCredential,
    ]
    .into_iter()
    .find(|k| k.as_str() == reference.kind)?;
    Some((kind, uid_number(&reference.uid)))
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
    use crate::runtime::to_k8s_time;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference};

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

    const KEY_UID: &str = "0000000a-0000-0000-0000-00000000000b";
    const LABELS: [(&str, &str); 3] = [
        (labels::MANAGED_BY, "keyward"),
        (labels::TENANT, "acme"),
        (labels::CREDENTIAL, "k"),
    ];

    fn reference(kind: &str, uid: &str, controller: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "keyward.io/v1alpha1".into(),
            kind: kind.into(),
            name: "k".into(),
            uid: uid.into(),
            controller,
            block_owner_deletion: Some(true),
        }
    }

    /// Keyward's labels and these owner references.
    fn claimed(references: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(references),
            ..meta(&LABELS, &[])
        }
    }

    /// The ApiKey `KEY_UID` exists in namespace `ns`.
    fn existing_key() -> Controllers {
        let mut c = Controllers::default();
        c.insert(CredentialKind::ApiKey, Some("ns"), Some(KEY_UID));
        c
    }

    fn class(m: &ObjectMeta, t: SecretType, controllers: &Controllers) -> Class {
        InventoryObject::secret(m, t).unwrap().class(controllers)
    }

    #[test]
    fn the_managed_by_label_without_an_owner_reference_is_unmanaged() {
        let labelled = meta(&LABELS, &[]);
        let keys = existing_key();
        assert_eq!(class(&labelled, SecretType::Other, &keys), Class::Unmanaged);
        assert_eq!(
            class(&labelled, SecretType::ServiceAccountToken, &keys),
            Class::LegacySaToken
        );
        assert_eq!(
            InventoryObject::service_account(&labelled)
                .unwrap()
                .class(&keys),
            Class::Unmanaged
        );
    }

    #[test]
    fn a_controller_reference_to_a_uid_no_keyward_object_has_is_unmanaged() {
        let ghost = claimed(vec![reference(
            "ApiKey",
            "0000000a-0000-0000-0000-0000000000ff",
            Some(true),
        )]);
        assert_eq!(
            class(&ghost, SecretType::Other, &existing_key()),
            Class::Unmanaged
        );
        // Before any keyward object exists, nothing is managed.
        let real = claimed(vec![reference("ApiKey", KEY_UID, Some(true))]);
        assert_eq!(
            class(&real, SecretType::Other, &Controllers::default()),
            Class::Unmanaged
        );
    }

    #[test]
    fn a_controller_reference_to_an_existing_keyward_object_is_managed() {
        let keys = existing_key();
        let real = claimed(vec![reference("ApiKey", KEY_UID, Some(true))]);
        assert_eq!(class(&real, SecretType::Other, &keys), Class::Managed);
        assert_eq!(
            class(&real, SecretType::ServiceAccountToken, &keys),
            Class::Managed
        );
        assert_eq!(
            InventoryObject::service_account(&real)
                .unwrap()
                .class(&keys),
            Class::Managed
        );
        // The label is not what makes it managed.
        let unlabelled = ObjectMeta {
            labels: None,
            ..real.clone()
        };
        assert_eq!(class(&unlabelled, SecretType::Other, &keys), Class::Managed);
        // Another version of the group names the same kinds.
        let mut v1 = reference("ApiKey", KEY_UID, Some(true));
        v1.api_version = "keyward.io/v1".into();
        assert_eq!(
            class(&claimed(vec![v1]), SecretType::Other, &keys),
            Class::Managed
        );
        let mut sacs = Controllers::default();
        sacs.insert(
            CredentialKind::ServiceAccountCredential,
            Some("ns"),
            Some(KEY_UID),
        );
        let sa = claimed(vec![reference(
            "ServiceAccountCredential",
            KEY_UID,
            Some(true),
        )]);
        assert_eq!(class(&sa, SecretType::Other, &sacs), Class::Managed);
    }

    #[test]
    fn a_reference_that_is_not_the_controller_is_unmanaged() {
        let keys = existing_key();
        for controller in [Some(false), None] {
            let m = claimed(vec![reference("ApiKey", KEY_UID, controller)]);
            assert_eq!(class(&m, SecretType::Other, &keys), Class::Unmanaged);
            assert_eq!(
                InventoryObject::secret(&m, SecretType::Other)
                    .unwrap()
                    .keyward,
                None
            );
        }
        // Only the controller reference counts, wherever it is in the list.
        let m = claimed(vec![
            reference("ApiKey", KEY_UID, Some(false)),
            reference("ApiKey", "0000000a-0000-0000-0000-0000000000ff", Some(true)),
        ]);
        assert_eq!(class(&m, SecretType::Other, &keys), Class::Unmanaged);
    }

    #[test]
    fn a_controller_reference_must_name_the_kind_group_and_namespace_of_the_keyward_object() {
        let keys = existing_key();
        let wrong_kind = claimed(vec![reference(
            "ServiceAccountCredential",
            KEY_UID,
            Some(true),
        )]);
        assert_eq!(
            class(&wrong_kind, SecretType::Other, &keys),
            Class::Unmanaged
        );
        let mut other_group = reference("ApiKey", KEY_UID, Some(true));
        other_group.api_version = "evil.example/v1alpha1".into();
        let other_group = claimed(vec![other_group]);
        assert_eq!(
            class(&other_group, SecretType::Other, &keys),
            Class::Unmanaged
        );
        assert_eq!(
            InventoryObject::secret(&other_group, SecretType::Other)
                .unwrap()
                .keyward,
            None
        );
        let elsewhere = ObjectMeta {
            namespace: Some("other".into()),
            ..claimed(vec![reference("ApiKey", KEY_UID, Some(true))])
        };
        assert_eq!(
            class(&elsewhere, SecretType::Other, &keys),
            Class::Unmanaged
        );
    }

    #[test]
    fn only_objects_with_a_keyward_controller_reference_keep_the_claim_and_labels() {
        let o = InventoryObject::secret(
            &claimed(vec![reference("ApiKey", KEY_UID, Some(true))]),
            SecretType::Other,
        )
        .unwrap();
        let kept = o.keyward.unwrap();
        assert_eq!(kept.kind, CredentialKind::ApiKey);
        assert_eq!(kept.uid, uid_number(KEY_UID));
        assert_eq!(kept.labels.tenant.as_deref(), Some("acme"));
        assert_eq!(kept.labels.credential.as_deref(), Some("k"));
        // Labels alone are not kept: unrelated Secrets do not grow.
        let o = InventoryObject::secret(&meta(&LABELS, &[]), SecretType::Other).unwrap();
        assert_eq!(o.keyward, None);
        let mut foreign = reference("Deployment", KEY_UID, Some(true));
        foreign.api_version = "apps/v1".into();
        let o = InventoryObject::secret(&claimed(vec![foreign]), SecretType::Other).unwrap();
        assert_eq!(o.keyward, None);
    }

    #[test]
    fn the_keyward_claim_costs_unrelated_objects_no_memory() {
        // One pointer, null for every object no keyward kind claims: no larger than the
        // label flag and label pointer it replaced.
        assert_eq!(
            std::mem::size_of::<Option<Box<KeywardController>>>(),
            std::mem::size_of::<usize>()
        );
        assert!(std::mem::size_of::<InventoryObject>() <= 80);
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
