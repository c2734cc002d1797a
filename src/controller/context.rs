//! What every reconcile shares: the client, the event recorder, metrics, and the reflector
//! stores of the kinds decisions depend on.

use std::sync::{Arc, Mutex, RwLock};

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};

use super::backoff::Backoff;
use super::conflicts::Conflicts;
use super::index::Counts;
use super::owned::Owned;
use crate::api::{ApiKey, PartnerIntegration, ServiceAccountCredential, Tenant};
pub use crate::inventory::ValueCopies;
use crate::metrics::Metrics;
use crate::policy::credential::Verdict;
use crate::policy::tenancy::Tenancy;

pub use crate::store::kubernetes::FIELD_MANAGER;
/// The field manager of the rollout-restart annotation on consumers.
pub const RESTART_FIELD_MANAGER: &str = "keyward-restart";

/// A version of a credential newer than its store copy may be, and the object at that
/// version when this process has it (the response to its own status write).
#[derive(Clone)]
pub struct Known {
    pub version: String,
    pub object: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    /// `reportingInstance` of the Events this process publishes.
    pub instance: String,
    /// The last announcement this process made per object (by uid), so that a repeated
    /// pass needs no request to know it: one short name per credential.
    pub announced: Arc<Mutex<std::collections::HashMap<String, String>>>,
    /// A resourceVersion of each credential (by uid) newer than its store copy may be: the
    /// one this process's last status write returned (with the object it returned), or the
    /// one a re-list after an API server outage found. Kept until the store includes it.
    pub known_versions: Arc<Mutex<std::collections::HashMap<String, Known>>>,
    pub metrics: Arc<Metrics>,
    pub tenants: Store<Tenant>,
    pub integrations: Store<PartnerIntegration>,
    pub keys: Store<ApiKey>,
    pub sacs: Store<ServiceAccountCredential>,
    /// The Secrets and ServiceAccounts keyward controls, as its watches show them.
    pub secrets: Owned<Secret>,
    /// The credentials waiting on an object of their name that keyward does not control.
    pub conflicts: Arc<Conflicts>,
    pub accounts: Owned<ServiceAccount>,
    /// The one namespace this instance manages, if it is scoped to one.
    pub namespace: Option<String>,
    /// Where the inventory's last scan found managed values (never the values).
    pub copies: ValueCopies,
    /// The tenancy index, kept up to date by the fan-out one Tenant at a time and shared
    /// by every reconcile (never rebuilt per reconcile).
    pub tenancy: SharedTenancy,
    /// Credential counts per tenant and integration, kept up to date by the fan-out.
    pub counts: Arc<Mutex<Counts>>,
    /// Per-object error backoff.
    pub backoff: Arc<Backoff>,
    /// Woken when a reconcile could not reach the API server.
    pub unreachable: Arc<tokio::sync::Notify>,
    /// The controller's write floor (`--min-rotation-interval`).
    pub min_rotation_interval: chrono::Duration,
    /// The Vault store of ApiKey values, when `--vault-addr` is given.
    pub vault: Option<Arc<crate::store::vault::Vault>>,
    /// The bound on credential passes doing work at once (`--concurrency`), most urgent
    /// first.
    pub gate: Arc<super::gate::Gate>,
}

/// The tenancy index behind a lock: readers take a cheap snapshot (`Arc`); the fan-out
/// updates it in place unless a reader still holds the previous snapshot.
pub type SharedTenancy = Arc<RwLock<Arc<Tenancy>>>;

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        tenants: Store<Tenant>,
        integrations: Store<PartnerIntegration>,
        keys: Store<ApiKey>,
        sacs: Store<ServiceAccountCredential>,
        (secrets, accounts): (Owned<Secret>, Owned<ServiceAccount>),
        namespace: Option<String>,
        min_rotation_interval: chrono::Duration,
    ) -> Self {
        let instance = std::env::var("POD_NAME").ok();
        let reporter = Reporter {
            controller: "keyward".into(),
            instance: instance.clone(),
        };
        Self {
            instance: instance.unwrap_or_else(|| "keyward".to_owned()),
            announced: Arc::default(),
            known_versions: Arc::default(),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            tenants,
            integrations,
            keys,
            sacs,
            secrets,
            conflicts: Arc::default(),
            accounts,
            namespace,
            copies: ValueCopies::default(),
            tenancy: SharedTenancy::default(),
            counts: Arc::default(),
            backoff: Arc::default(),
            unreachable: Arc::default(),
            min_rotation_interval,
            vault: None,
            gate: super::gate::Gate::new(usize::from(super::DEFAULT_CONCURRENCY)),
        }
    }

    /// `CrossTenant=True` when the inventory found the value with `fingerprint` in a
    /// Secret of a namespace that `tenant` does not own.
    pub fn copied_elsewhere(
        &self,
        tenancy: &Tenancy,
        tenant: &str,
        fingerprint: &str,
    ) -> Option<Verdict> {
        let copies = self.copies.read().ok()?;
        crate::policy::copies::copied_elsewhere(&copies, tenancy, tenant, fingerprint)
    }

    /// A snapshot of the tenancy index.
    pub fn tenancy(&self) -> Arc<Tenancy> {
        match self.tenancy.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Announces `what` on `object` once: `record` (the audit line) then an Event whose
    /// name is derived from the object and `what` (e.g. `rotated-v4`). The Event is the
    /// durable record that it was announced: a pass that may repeat an announcement (one
    /// that did not make the write itself: `fresh` is false) first looks for that Event
    /// and announces nothing when it exists. Returns whether it announced.
    ///
    /// The audit line is written before the Event, so a crash between the two prints the
    /// line again on the next pass (same `id`), and never loses it.
    #[allow(clippy::too_many_arguments)]
    pub async fn announce_once<K>(
        &self,
        object: &K,
        what: &str,
        fresh: bool,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
        record: impl FnOnce(&str),
    ) -> bool
    where
        K: Resource<DynamicType = ()>,
    {
        use k8s_openapi::api::events::v1::Event as ApiEvent;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
        let namespace = object.namespace().unwrap_or_default();
        let uid = object.uid().unwrap_or_default();
        let name = announcement_name(&object.name_any(), &uid, what);
        let said_here = |name: &str| {
            self.announced
                .lock()
                .is_ok_and(|a| a.get(&uid).is_some_and(|n| n == name))
        };
        if said_here(&name) {
            // This process announced it (a pass repeated after a failed write, or woken
            // by its own writes before the store caught up).
            return false;
        }
        let api: kube::Api<ApiEvent> = kube::Api::namespaced(self.client.clone(), &namespace);
        if !fresh && let Ok(Some(_)) = api.get_opt(&name).await {
            return false;
        }
        record(&name);
        if let Ok(mut announced) = self.announced.lock() {
            announced.insert(uid.clone(), name.clone());
        }
        let event = ApiEvent {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(bounded_note(note)),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            regarding: Some(object.object_ref(&())),
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            reporting_controller: Some("keyward".to_owned()),
            reporting_instance: Some(self.instance.clone()),
            ..ApiEvent::default()
        };
        match api.create(&kube::api::PostParams::default(), &event).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(err) => tracing::warn!(
                namespace,
                name = object.name_any(),
                reason,
                error = %err,
                "publishing event failed"
            ),
        }
        true
    }

    /// Publishes an Event on `object`; a failure to publish is logged, never fatal.
    pub async fn event<K>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(
                namespace = object.namespace().unwrap_or_default(),
                name = object.name_any(),
                reason,
                error = %err,
                "publishing event failed"
            );
        }
    }
}

/// The name of the Event announcing `what` on an object: the object's name, the start of
/// its uid (a re-created object of the same name announces afresh), and `what`,
/// lower-cased into a DNS subdomain.
pub fn announcement_name(object: &str, uid: &str, what: &str) -> String {
    let uid: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let what: String = what
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let mut name = format!("{object}.{uid}.{what}");
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_owned()
}

/// An Event note within the API server's limit (1 kB), cut at a character boundary.
fn bounded_note(note: &str) -> String {
    const MAX: usize = 1024;
    if note.len() <= MAX {
        return note.to_owned();
    }
    let mut end = MAX - 3;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", note.get(..end).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_names_are_dns_subdomains_unique_per_object_and_deed() {
        let a = announcement_name("k", "0f3a9c2e-1111-2222", "Rotated-v4");
        assert_eq!(a, "k.0f3a9c2e.rotated-v4");
        assert_ne!(a, announcement_name("k", "1f3a9c2e-1111", "Rotated-v4"));
        assert_ne!(a, announcement_name("k", "0f3a9c2e-1111", "rotated-v5"));
        let long = announcement_name(&"a".repeat(63), "u", &"x".repeat(400));
        assert!(long.len() <= 253);
    }

    #[test]
    fn notes_are_cut_to_the_api_servers_limit_at_a_character_boundary() {
        let note = "é".repeat(2000);
        let cut = bounded_note(&note);
        assert!(cut.len() <= 1024);
        assert!(cut.ends_with("..."));
        assert_eq!(bounded_note("short"), "short");
    }
}
