//! The Secrets that serve ApiKey values: reading what a Secret records of the value it
//! serves, and building the Secret that should exist.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use kube::Resource;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::value::Value;
use crate::api::labels;
use crate::policy::api_key::{SecretState, Served};
use crate::policy::format_time;

/// The field manager of every write keyward makes.
pub const FIELD_MANAGER: &str = "keyward";

/// The data key that serves the previous value during an overlap.
pub fn previous_key(key: &str) -> String {
    format!("{key}-previous")
}

/// What a Secret holds for an ApiKey.
#[derive(Clone, Debug)]
pub struct Observed {
    pub state: SecretState,
    pub current: Option<Value>,
    pub previous: Option<Value>,
}

/// Whether `secret` is controlled by the object with `owner_uid`.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == owner_uid)
}

fn parse_time(annotations: &BTreeMap<String, String>, key: &str) -> Option<DateTime<Utc>> {
    annotations
        .get(key)
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Reads what `secret` records. A Secret of ours whose records are unreadable, or whose
/// value does not match its recorded fingerprint, counts as absent so that a fresh value
/// replaces it.
pub fn observe(secret: Option<&Secret>, owner_uid: &str, key: &str) -> Observed {
    let absent = Observed {
        state: SecretState::Absent,
        current: None,
        previous: None,
    };
    let Some(secret) = secret else { return absent };
    if !is_controlled_by(&secret.metadata, owner_uid) {
        return Observed {
            state: SecretState::Foreign,
            current: None,
            previous: None,
        };
    }
    let empty = BTreeMap::new();
    let annotations = secret.metadata.annotations.as_ref().unwrap_or(&empty);
    let data = secret.data.as_ref();
    let value = |k: &str| {
        data.and_then(|d| d.get(k))
            .and_then(|b| Value::from_bytes(&b.0))
    };
    let current = value(key);
    let (Some(current), Some(version), Some(fingerprint), Some(issued_at), Some(rotated_at)) = (
        current,
        annotations
            .get(labels::VERSION)
            .and_then(|v| v.parse::<i64>().ok()),
        annotations.get(labels::FINGERPRINT),
        parse_time(annotations, labels::ISSUED_AT),
        parse_time(annotations, labels::ROTATED_AT),
    ) else {
        return absent;
    };
    if current.fingerprint().as_str() != fingerprint {
        return absent;
    }
    let previous_valid_until = parse_time(annotations, labels::PREVIOUS_VALID_UNTIL);
    let previous = previous_valid_until.and(value(&previous_key(key)));
    Observed {
        state: SecretState::Ours(Served {
            version,
            fingerprint: fingerprint.clone(),
            issued_at,
            rotated_at,
            previous_valid_until: previous.as_ref().and(previous_valid_until),
            rotation_request: annotations.get(labels::ROTATION_REQUEST).cloned(),
        }),
        current: Some(current),
        previous,
    }
}

/// Everything a served Secret is built from.
pub struct Desired<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub owner_reference: OwnerReference,
    pub tenant: &'a str,
    pub credential: &'a str,
    pub owner: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
    pub key: &'a str,
    pub served: &'a Served,
    pub current: &'a Value,
    pub previous: Option<&'a Value>,
}

/// The whole Secret as keyward wants it; applied with server-side apply, so fields left
/// out here (an ended overlap's previous value) are removed.
pub fn build(d: &Desired<'_>) -> Secret {
    let mut annotations = BTreeMap::from([
        (labels::OWNER.to_owned(), d.owner.to_owned()),
        (labels::VERSION.to_owned(), d.served.version.to_string()),
        (
            labels::FINGERPRINT.to_owned(),
            d.current.fingerprint().to_string(),
        ),
        (
            labels::ISSUED_AT.to_owned(),
            format_time(d.served.issued_at),
        ),
        (
            labels::ROTATED_AT.to_owned(),
            format_time(d.served.rotated_at),
        ),
    ]);
    if let Some(at) = d.expires_at {
        annotations.insert(labels::EXPIRES_AT.to_owned(), format_time(at));
    }
    if let Some(request) = &d.served.rotation_request {
        annotations.insert(labels::ROTATION_REQUEST.to_owned(), request.clone());
    }
    let mut data = BTreeMap::from([(
        d.key.to_owned(),
        ByteString(d.current.expose().as_bytes().to_vec()),
    )]);
    if let (Some(previous), Some(until)) = (d.previous, d.served.previous_valid_until) {
        annotations.insert(labels::PREVIOUS_VALID_UNTIL.to_owned(), format_time(until));
        data.insert(
            previous_key(d.key),
            ByteString(previous.expose().as_bytes().to_vec()),
        );
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(d.name.to_owned()),
            namespace: Some(d.namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (
                    labels::MANAGED_BY.to_owned(),
                    labels::MANAGED_BY_VALUE.to_owned(),
                ),
                (labels::TENANT.to_owned(), d.tenant.to_owned()),
                (labels::CREDENTIAL.to_owned(), d.credential.to_owned()),
            ])),
            annotations: Some(annotations),
            owner_references: Some(vec![d.owner_reference.clone()]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Whether an annotation or label key is keyward's own: on a Secret or ServiceAccount
/// keyward controls, it sets every such key and removes those it no longer sets.
fn is_keyward_key(key: &str) -> bool {
    key.starts_with("keyward.io/")
}

/// Pauses before a write that follows a read, for fault-injection tests of the window
/// between the two (`KEYWARD_FAULT_WRITE_DELAY_MS`); never set in production.
pub async fn fault_delay() {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("KEYWARD_FAULT_WRITE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis)
    });
    if let Some(delay) = delay {
        tokio::time::sleep(*delay).await;
    }
}

/// Writes `desired` as the object `existing` (as read) should become, never taking over
/// one keyward does not control:
/// - when none was read, a create: if one of that name appeared since, the create fails
///   (409) and nothing is touched;
/// - otherwise (the caller checked that keyward controls it) a replace conditional on the
///   resourceVersion read: if it was changed, deleted or replaced since, the write fails
///   (409) and the next pass reads it again. Labels and annotations others set are kept;
///   keyward's own (`keyward.io/*`) and the data are keyward's to set.
pub async fn write<K>(api: &Api<K>, existing: Option<&K>, desired: K) -> Result<K, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug + HasData,
{
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    fault_delay().await;
    let Some(existing) = existing else {
        return api.create(&params, &desired).await;
    };
    let mut next = existing.clone();
    let name = existing.meta().name.clone().unwrap_or_default();
    {
        let want = desired.meta();
        let have = next.meta_mut();
        let merge = |have: &mut Option<BTreeMap<String, String>>,
                     want: &Option<BTreeMap<String, String>>| {
            let map = have.get_or_insert_with(BTreeMap::new);
            map.retain(|k, _| !is_keyward_key(k));
            map.extend(want.iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
        };
        merge(&mut have.labels, &want.labels);
        merge(&mut have.annotations, &want.annotations);
        let refs = have.owner_references.get_or_insert_with(Vec::new);
        for wanted in want.owner_references.iter().flatten() {
            if !refs.iter().any(|r| r.uid == wanted.uid) {
                refs.push(wanted.clone());
            }
        }
        have.managed_fields = None;
    }
    next.set_data_from(&desired);
    api.replace(&name, &params, &next).await
}

/// The content keyward sets besides metadata.
pub trait HasData {
    fn set_data_from(&mut self, desired: &Self);
}

impl HasData for Secret {
    fn set_data_from(&mut self, desired: &Self) {
        self.data = desired.data.clone();
        self.string_data = None;
    }
}

/// Deletes exactly the object `meta` describes (a UID precondition): a successor of the
/// same name is never deleted by mistake. Already gone counts as done.
pub async fn delete_exact<K>(api: &Api<K>, meta: &ObjectMeta) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let Some(name) = meta.name.as_deref() else {
        return Ok(());
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(err) => Err(err),
    }
}

/// Whether `existing` differs from `desired` in anything keyward sets.
pub fn differs(existing: &Secret, desired: &Secret) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>,
                  have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let stale_annotation = existing
        .metadata
        .annotations
        .iter()
        .flatten()
        .any(|(k, _)| {
            is_keyward_key(k)
                && !desired
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|d| d.contains_key(k))
        });
    existing.data != desired.data
        || !subset(&desired.metadata.labels, &existing.metadata.labels)
        || !subset(
            &desired.metadata.annotations,
            &existing.metadata.annotations,
        )
        || stale_annotation
        || desired.metadata.owner_references.iter().flatten().any(|r| {
            !existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|e| e.uid == r.uid)
        })
}
