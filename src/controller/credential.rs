//! What the two credential controllers (ApiKey, ServiceAccountCredential) share: reading
//! either kind generically, deciding the lifecycle from the stores, the five conditions,
//! status writes, and announcing what happened (Event, audit line, metrics).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::context::{Context, Known};
use super::status::{condition, find, prior_owner};
use crate::api::{
    ApiKey, CredentialState, PartnerIntegration, ServiceAccountCredential, Timestamp,
};
use crate::audit::{self, AuditAction, AuditRecord, ObjectRef as AuditObject};
use crate::error::Result;
use crate::metrics::{CredentialKey, CredentialSnapshot, RotationResult};
use crate::policy::credential::{
    CredentialInput, CredentialSpec, IntegrationFacts, Lifecycle, Verdict, apply_rotation_floor,
    decide, reason,
};
use crate::policy::sa_credential::SERVICE_ACCOUNT_CONFLICT;
use crate::policy::tenancy::Tenancy;
use crate::runtime::lock;

/// A credential kind, as fan-out, counts and reports read it.
pub trait Credential:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// `spec.integration`.
    fn integration(&self) -> Option<&str>;
    /// `spec.tenant`.
    fn spec_tenant(&self) -> Option<&str>;
    /// `status.tenant`: the tenant as last resolved.
    fn resolved_tenant(&self) -> Option<&str>;
    /// `status.state`.
    fn state(&self) -> Option<CredentialState>;
    /// What the lifecycle decision reads of the last status.
    fn prior_status(&self) -> PriorStatus<'_>;

    /// The tenant it depends on: as resolved, else as written.
    fn tenant(&self) -> Option<&str> {
        self.resolved_tenant().or(self.spec_tenant())
    }
}

/// Both kinds keep these fields under the same names.
macro_rules! credential_kind {
    ($kind:ty) => {
        impl Credential for $kind {
            fn integration(&self) -> Option<&str> {
                self.spec.integration.as_deref()
            }
            fn spec_tenant(&self) -> Option<&str> {
                self.spec.tenant.as_deref()
            }
            fn resolved_tenant(&self) -> Option<&str> {
                self.status.as_ref().and_then(|s| s.tenant.as_deref())
            }
            fn state(&self) -> Option<CredentialState> {
                self.status.as_ref().and_then(|s| s.state)
            }
            fn prior_status(&self) -> PriorStatus<'_> {
                let status = self.status.as_ref();
                PriorStatus {
                    observed_generation: status.and_then(|s| s.observed_generation),
                    renewed_at: status.and_then(|s| s.renewed_at),
                    owner: status.and_then(|s| s.owner.as_deref()),
                    conditions: status.map(|s| s.conditions.as_slice()).unwrap_or_default(),
                }
            }
        }
    };
}
credential_kind!(ApiKey);
credential_kind!(ServiceAccountCredential);

/// References to the credentials of `store` that `depends` selects.
pub fn select<K: Credential>(store: &Store<K>, depends: impl Fn(&K) -> bool) -> Vec<ObjectRef<K>> {
    store
        .state()
        .iter()
        .filter(|c| depends(c))
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}

/// A PartnerIntegration as credential decisions see it.
pub fn integration_facts(pi: &PartnerIntegration) -> IntegrationFacts {
    let conditions = pi
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    IntegrationFacts {
        name: pi.name_any(),
        tenant: pi.spec.tenant.clone(),
        owner: pi.spec.owner.clone(),
        expires_at: pi.spec.expires_at.map(|t| t.0),
        suspended: pi.spec.suspended.unwrap_or(false),
        owner_binding: prior_owner(conditions, Some(&pi.spec.owner)).binding,
    }
}

/// What the lifecycle decision reads of the last status.
pub struct PriorStatus<'a> {
    pub observed_generation: Option<i64>,
    pub renewed_at: Option<Timestamp>,
    pub owner: Option<&'a str>,
    pub conditions: &'a [Condition],
}

/// Decides a credential's lifecycle from the Tenant and PartnerIntegration stores and its
/// last status.
pub fn lifecycle<K: Credential>(
    ctx: &Context,
    tenancy: &Tenancy,
    credential: &K,
    namespace: &str,
    spec: &CredentialSpec,
    now: DateTime<Utc>,
) -> Lifecycle {
    let prior = credential.prior_status();
    let integration = spec.integration.as_ref().map(|pi| {
        ctx.integrations
            .get(&ObjectRef::new(pi).within(namespace))
            .map(|pi| integration_facts(&pi))
    });
    let mut lifecycle = decide(&CredentialInput {
        namespace,
        generation: credential.meta().generation.unwrap_or_default(),
        spec,
        integration: integration.as_ref().map(Option::as_ref),
        tenancy,
        observed_generation: prior.observed_generation,
        renewed_at: prior.renewed_at.map(|t| t.0),
        prior_owner: prior_owner(prior.conditions, prior.owner),
        now,
    });
    apply_rotation_floor(&mut lifecycle, ctx.min_rotation_interval);
    lifecycle
}

/// Marks a lifecycle Invalid because its own spec cannot be used: `Ready=False
/// reason=InvalidSpec`, the message naming the field; no value is served and nothing is
/// due until the spec changes.
pub fn invalid_spec(lifecycle: &mut Lifecycle, problem: String) {
    lifecycle.state = CredentialState::Invalid;
    lifecycle.reason = reason::INVALID_SPEC.to_owned();
    lifecycle.message = problem;
    lifecycle.next_due = None;
}

/// `Ready`, `Synced`, `OwnerBound`, `CrossTenant` and `PolicyCompliant`, each keeping its
/// transition time unless its status changed.
pub fn conditions(
    l: &Lifecycle,
    synced: &Verdict,
    generation: Option<i64>,
    prior: &[Condition],
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let ready = Verdict {
        status: l.is_active(),
        reason: l.reason.clone(),
        message: l.message.clone(),
    };
    [
        ("Ready", &ready),
        ("Synced", synced),
        ("OwnerBound", &l.owner_bound),
        ("CrossTenant", &l.cross_tenant),
        ("PolicyCompliant", &l.policy_compliant),
    ]
    .into_iter()
    .map(|(type_, verdict)| condition(type_, verdict, generation, prior, now))
    .collect()
}

/// Writes `status` (the whole status, server-side applied) of a namespaced credential.
pub async fn write_status<K: Credential>(
    ctx: &Context,
    credential: &K,
    namespace: &str,
    status: &impl Serialize,
) -> Result<()> {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(
            namespace,
            name = credential.name_any(),
            fields = ?changed_fields(
                &serde_json::to_value(credential)
                    .ok()
                    .and_then(|v| v.get("status").cloned())
                    .unwrap_or_default(),
                &serde_json::to_value(status).unwrap_or_default(),
            ),
            "status write"
        );
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let written = super::status::apply_status(&api, &credential.name_any(), status).await?;
    if let (Some(uid), Some(version)) = (written.uid(), written.resource_version()) {
        let object: Arc<dyn std::any::Any + Send + Sync> = Arc::new(written);
        lock(&ctx.known_versions).insert(
            uid,
            Known {
                version,
                object: Some(object),
            },
        );
    }
    Ok(())
}

/// The credential as it is now. The store's copy, unless it is older than a version this
/// process knows of (its own last status write, or what a re-list after an outage found):
/// then the watch lags (its echo of this process's own write is still on its way; or a
/// restarted API server ended the watches of custom resources a few seconds after it was
/// ready, and they re-list), and a pass deciding on the older copy would miss a rotation
/// request, or wait for its own write to be recorded instead of going on. So the object
/// its own write returned is used, and the object is read only when there is none (after
/// an outage). `None` when it no longer exists.
///
/// The store is looked at again here, after what this process knows: the copy the pass
/// was started with was taken from the store a moment earlier, and the echo of the last
/// write may have reached the store (and let go of what this process knew) in between.
pub async fn current<K: Credential>(
    ctx: &Context,
    store: &Store<K>,
    object: Arc<K>,
) -> Result<Option<Arc<K>>> {
    let Some(uid) = object.uid() else {
        return Ok(Some(object));
    };
    let known = lock(&ctx.known_versions).get(&uid).cloned();
    let object = latest(store, object, &uid);
    let Some(known) = known else {
        return Ok(Some(object));
    };
    if super::owned::includes(object.meta().resource_version.as_deref(), &known.version) {
        lock(&ctx.known_versions).remove(&uid);
        return Ok(Some(object));
    }
    if let Some(written) = known.object.and_then(|o| o.downcast::<K>().ok()) {
        return Ok(Some(written));
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let read = api.get_opt(&object.name_any()).await?;
    Ok(read
        .filter(|o| o.uid().as_deref() == Some(uid.as_str()))
        .map(Arc::new))
}

/// The names of the status fields (and condition types) a write changes, never their
/// values: what a debug line says of why a status was written.
fn changed_fields(prior: &serde_json::Value, next: &serde_json::Value) -> BTreeSet<String> {
    use serde_json::Value;
    fn fields(v: &Value) -> BTreeMap<&str, &Value> {
        v.as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }
    fn by_type(v: Option<&Value>) -> BTreeMap<&str, &Value> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| (c["type"].as_str().unwrap_or_default(), c))
            .collect()
    }
    let (before, after) = (fields(prior), fields(next));
    let mut changed = BTreeSet::new();
    for name in before.keys().chain(after.keys()) {
        if before.get(name) == after.get(name) {
            continue;
        }
        if *name == "conditions" {
            let (b, a) = (
                by_type(before.get(name).copied()),
                by_type(after.get(name).copied()),
            );
            changed.extend(
                b.keys()
                    .chain(a.keys())
                    .filter(|t| b.get(*t) != a.get(*t))
                    .map(|t| format!("conditions[{t}]")),
            );
        } else {
            changed.insert((*name).to_owned());
        }
    }
    changed
}

/// The newer of `object` and the store's copy of it now.
fn latest<K: Credential>(store: &Store<K>, object: Arc<K>, uid: &str) -> Arc<K> {
    match store.get(&ObjectRef::from_obj(object.as_ref())) {
        Some(stored)
            if stored.uid().as_deref() == Some(uid)
                && stored.resource_version().is_some_and(|v| {
                    super::owned::includes(
                        Some(&v),
                        object.resource_version().as_deref().unwrap_or("0"),
                    )
                }) =>
        {
            stored
        }
        _ => object,
    }
}

/// The resourceVersion of this process's last status write of the credential `uid`, while
/// its store copy is older.
pub fn written_version(ctx: &Context, uid: &str) -> Option<String> {
    lock(&ctx.known_versions)
        .get(uid)
        .map(|k| k.version.clone())
}

/// Remembers that the credential with `uid` exists at `version`, newer than its store copy.
pub fn known_version(ctx: &Context, uid: String, version: String) {
    lock(&ctx.known_versions).insert(
        uid,
        Known {
            version,
            object: None,
        },
    );
}

/// Whether `object` is exactly what this process's last status write of it returned (the
/// watch's echo of that write): the pass that wrote it knew all of it and has already
/// decided when it is due next, so the echo needs no pass.
pub fn own_echo(ctx: &Context, object: &impl Resource) -> bool {
    let (Some(uid), Some(version)) = (
        object.meta().uid.as_deref(),
        object.meta().resource_version.as_deref(),
    ) else {
        return false;
    };
    lock(&ctx.known_versions)
        .get(uid)
        .is_some_and(|k| k.object.is_some() && k.version == version)
}

/// The store now holds `object`: what this process knew to be newer than its copy (and
/// the object its write returned) is let go once the copy includes it.
pub fn caught_up(ctx: &Context, object: &impl Resource) {
    let (Some(uid), Some(version)) = (
        object.meta().uid.as_deref(),
        object.meta().resource_version.as_deref(),
    ) else {
        return;
    };
    let mut known = lock(&ctx.known_versions);
    if known
        .get(uid)
        .is_some_and(|k| super::owned::includes(Some(version), &k.version))
    {
        known.remove(uid);
    }
}

/// Forgets what this process remembers of a credential that was deleted.
pub fn forget(ctx: &Context, uid: &str) {
    lock(&ctx.known_versions).remove(uid);
    lock(&ctx.announced).remove(uid);
}

/// A pass that could not write what it planned: writes Synced=False and keeps every other
/// field of the last status as it was (the status is applied whole, under the field
/// manager that owns all of it, so a partial status would drop the fields left out:
/// `version`, `renewedAt`, `lastRotationRequest`, the owner-grace clock). Counts a failed
/// rotation when the pass was replacing a value.
pub async fn report_sync_failure<K: Credential>(
    ctx: &Context,
    credential: &K,
    l: &Lifecycle,
    rotating: bool,
    synced: Verdict,
    now: DateTime<Utc>,
) {
    if rotating {
        let tenant = l.tenant.as_deref().unwrap_or_default();
        ctx.metrics
            .rotation(&K::kind(&()), tenant, RotationResult::Failure);
    }
    let prior = credential.prior_status().conditions;
    let condition = condition("Synced", &synced, credential.meta().generation, prior, now);
    if find(prior, "Synced") == Some(&condition) {
        return;
    }
    let namespace = credential.namespace().unwrap_or_default();
    let status = match with_condition(credential, condition) {
        Ok(status) => status,
        Err(err) => {
            tracing::warn!(namespace, name = credential.name_any(), error = %err, "writing Synced=False failed");
            return;
        }
    };
    if let Err(err) = write_status(ctx, credential, &namespace, &status).await {
        tracing::warn!(namespace, name = credential.name_any(), error = %err, "writing Synced=False failed");
    }
}

/// The last status of `credential`, whole, with `condition` in place of the one of its type.
fn with_condition<K: Credential>(
    credential: &K,
    condition: Condition,
) -> serde_json::Result<serde_json::Value> {
    let mut status = serde_json::to_value(credential)?
        .get("status")
        .cloned()
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| json!({}));
    let mut conditions: Vec<Condition> = credential.prior_status().conditions.to_vec();
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(slot) => *slot = condition,
        None => conditions.push(condition),
    }
    if let Some(map) = status.as_object_mut() {
        map.insert("conditions".to_owned(), serde_json::to_value(conditions)?);
    }
    Ok(status)
}

/// `status.state` as metrics label it.
pub fn state_name(state: Option<CredentialState>) -> String {
    state
        .map(|s| format!("{s:?}"))
        .unwrap_or_else(|| "Pending".into())
}

pub fn ts(t: Option<DateTime<Utc>>) -> Option<Timestamp> {
    t.map(Timestamp)
}

/// Whether the state or the Ready reason differs from the last status: the changes that are
/// announced once.
pub fn state_changed(
    prior_state: Option<CredentialState>,
    prior_conditions: &[Condition],
    l: &Lifecycle,
) -> bool {
    let prior_reason = find(prior_conditions, "Ready").map(|c| c.reason.as_str());
    prior_state != Some(l.state) || prior_reason != Some(l.reason.as_str())
}

/// A new value served this pass.
pub struct Deed {
    /// `Issued` or `Rotated`.
    pub action: AuditAction,
    pub note: String,
    /// The Event's action when it is not the same word as its reason. Events of one
    /// reason and action on one object within minutes become one series (kube's
    /// `Recorder`), so a token refresh (`Issued`, action `Refresh`) counts up its own
    /// series instead of hiding in the first issue's.
    pub event_action: Option<&'static str>,
    /// What it announces, unique per object (e.g. `rotated-v4`): names its Event, so it
    /// is announced once however often a pass is repeated.
    pub what: String,
}

/// What the status just written says of the served value, in the terms metrics and audit
/// lines use for every kind.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub version: Option<i64>,
    pub fingerprint: Option<String>,
    pub issued_at: Option<Timestamp>,
    pub last_rotated_at: Option<Timestamp>,
    pub next_rotation_at: Option<Timestamp>,
    pub previous_valid_until: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub token_expires_at: Option<Timestamp>,
}

/// Announces what a pass did (before its status is written: a pass that dies after
/// announcing repeats the announcement, which its Event's name makes a no-op) and records
/// the credential in the metrics. `fresh`: this pass made the write announced, so no
/// earlier pass can have announced it. Returns whether the announcement is new.
pub async fn report<K: Credential>(
    ctx: &Context,
    credential: &K,
    l: &Lifecycle,
    deed: Option<Deed>,
    changed: bool,
    fresh: bool,
    facts: Facts,
) -> bool {
    let new = announce(ctx, credential, l, deed, changed, fresh, &facts).await;
    ctx.metrics.observe_credential(
        CredentialKey {
            kind: K::kind(&()).into_owned(),
            namespace: credential.namespace().unwrap_or_default(),
            name: credential.name_any(),
        },
        Some(CredentialSnapshot {
            tenant: l.tenant.clone().unwrap_or_default(),
            owner: l.owner.clone().unwrap_or_default(),
            state: state_name(Some(l.state)),
            expires_at: facts.expires_at.map(|t| t.0),
            next_rotation_at: facts.next_rotation_at.map(|t| t.0),
        }),
    );
    new
}

/// Publishes the Event and the audit line for what happened, once, and counts a
/// revocation: `deed` when a value was served, otherwise the state change (when
/// `changed`). Returns whether anything new was announced.
async fn announce<K: Credential>(
    ctx: &Context,
    credential: &K,
    l: &Lifecycle,
    deed: Option<Deed>,
    changed: bool,
    fresh: bool,
    facts: &Facts,
) -> bool {
    let kind = K::kind(&());
    let why = || format!("{}: {}", l.reason, l.message);
    // A state change's Event takes the condition reason as its action, so that a second
    // cause (TenantNotFound, then NamespaceNotOwned) is an Event of its own.
    let transition = |action: AuditAction| {
        format!(
            "{action:?}-{}-v{}-g{}",
            l.reason,
            facts.version.unwrap_or(0),
            credential.meta().generation.unwrap_or(0)
        )
    };
    let (action, note, event_action, what) = match (deed, l.state) {
        (Some(deed), _) => (
            deed.action,
            deed.note,
            deed.event_action.map(str::to_owned),
            deed.what,
        ),
        _ if !changed => return false,
        (None, CredentialState::Expired) => (
            AuditAction::Expired,
            why(),
            Some(l.reason.clone()),
            transition(AuditAction::Expired),
        ),
        (None, CredentialState::Revoked) => (
            AuditAction::Revoked,
            why(),
            Some(l.reason.clone()),
            transition(AuditAction::Revoked),
        ),
        (None, CredentialState::Invalid) => (
            AuditAction::Refused,
            why(),
            Some(l.reason.clone()),
            transition(AuditAction::Refused),
        ),
        (None, CredentialState::Pending)
            if l.reason == reason::SECRET_CONFLICT || l.reason == SERVICE_ACCOUNT_CONFLICT =>
        {
            (
                AuditAction::Conflict,
                why(),
                Some(l.reason.clone()),
                transition(AuditAction::Conflict),
            )
        }
        _ => return false,
    };
    let type_ = match action {
        AuditAction::Issued | AuditAction::Rotated | AuditAction::Expired => EventType::Normal,
        AuditAction::Revoked | AuditAction::Refused | AuditAction::Conflict => EventType::Warning,
    };
    let event_reason = format!("{action:?}");
    let event_action = event_action.unwrap_or_else(|| event_reason.clone());
    let mut record = AuditRecord::new(
        action,
        AuditObject {
            kind: kind.clone().into_owned(),
            namespace: credential.namespace(),
            name: credential.name_any(),
            uid: credential.uid(),
        },
        l.reason.clone(),
        note.clone(),
    );
    record.tenant = l.tenant.clone();
    record.owner = l.owner.clone();
    record.integration = credential.integration().map(str::to_owned);
    record.version = facts.version;
    record.fingerprint = facts.fingerprint.clone();
    record.issued_at = facts.issued_at.map(|t| t.0);
    record.last_rotated_at = facts.last_rotated_at.map(|t| t.0);
    record.next_rotation_at = facts.next_rotation_at.map(|t| t.0);
    record.previous_valid_until = facts.previous_valid_until.map(|t| t.0);
    record.expires_at = facts.expires_at.map(|t| t.0);
    record.token_expires_at = facts.token_expires_at.map(|t| t.0);
    let announced = ctx
        .announce_once(
            credential,
            &what,
            fresh,
            type_,
            &event_reason,
            &event_action,
            &note,
            |id| {
                record.id = Some(id.to_owned());
                audit::emit(&record);
            },
        )
        .await;
    if announced && action == AuditAction::Revoked {
        let tenant = l.tenant.as_deref().unwrap_or_default();
        ctx.metrics.revocation(&kind, tenant, &l.reason);
    }
    announced
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher;

    fn key(uid: &str, version: &str) -> Arc<ApiKey> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "keyward.io/v1alpha1", "kind": "ApiKey",
                "metadata": {"name": "k", "namespace": "team-a", "uid": uid, "resourceVersion": version},
                "spec": {"owner": "alice"},
            }))
            .unwrap(),
        )
    }

    fn store_with(object: Arc<ApiKey>) -> Store<ApiKey> {
        let (store, mut writer) = kube::runtime::reflector::store();
        writer.apply_watcher_event(&watcher::Event::Apply((*object).clone()));
        store
    }

    #[test]
    fn a_pass_takes_the_stores_copy_when_it_became_newer_than_the_one_it_started_with() {
        let started = key("u1", "10");
        let newer = store_with(key("u1", "12"));
        assert_eq!(
            latest(&newer, started.clone(), "u1")
                .resource_version()
                .as_deref(),
            Some("12")
        );
        // An older store copy, or another object of that name, is never taken.
        let older = store_with(key("u1", "9"));
        assert_eq!(
            latest(&older, started.clone(), "u1")
                .resource_version()
                .as_deref(),
            Some("10")
        );
        let recreated = store_with(key("u2", "40"));
        assert_eq!(
            latest(&recreated, started.clone(), "u1").uid().as_deref(),
            Some("u1")
        );
        let empty = kube::runtime::reflector::store::<ApiKey>().0;
        assert_eq!(
            latest(&empty, started, "u1").resource_version().as_deref(),
            Some("10")
        );
    }

    #[test]
    fn a_status_write_is_described_by_the_names_of_what_it_changes_never_the_values() {
        let prior = json!({
            "version": 1, "fingerprint": "sha256:aaaa", "owner": "alice",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Issued"},
                {"type": "Synced", "status": "True", "reason": "Synced"},
            ],
        });
        let next = json!({
            "version": 2, "fingerprint": "sha256:bbbb", "owner": "alice",
            "lastRotationRequest": "r1",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Issued"},
                {"type": "Synced", "status": "False", "reason": "SyncFailed"},
            ],
        });
        let changed = changed_fields(&prior, &next);
        assert_eq!(
            changed.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "conditions[Synced]",
                "fingerprint",
                "lastRotationRequest",
                "version"
            ]
        );
        let said = format!("{changed:?}");
        assert!(!said.contains("bbbb") && !said.contains("r1"), "{said}");
        assert!(changed_fields(&next, &next).is_empty());
        // A status that is not an object (none yet) names every field written.
        assert_eq!(
            changed_fields(&serde_json::Value::Null, &next)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            [
                "conditions[Ready]",
                "conditions[Synced]",
                "fingerprint",
                "lastRotationRequest",
                "owner",
                "version"
            ]
        );
    }
}
