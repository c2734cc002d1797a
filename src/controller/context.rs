//! What every reconcile shares: the client, the event recorder, metrics, and the reflector
//! stores of the kinds decisions depend on.

use std::sync::{Arc, Mutex, RwLock};

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use super::backoff::Backoff;
use super::index::Counts;
use crate::api::{ApiKey, PartnerIntegration, ServiceAccountCredential, Tenant};
use crate::inventory::scan::ValueCopy;
use crate::metrics::Metrics;
use crate::policy::credential::Verdict;
use crate::policy::tenancy::Tenancy;

/// The field manager of every write keyward makes.
pub const FIELD_MANAGER: &str = "keyward";
/// The field manager of the rollout-restart annotation on consumers.
pub const RESTART_FIELD_MANAGER: &str = "keyward-restart";

#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub tenants: Store<Tenant>,
    pub integrations: Store<PartnerIntegration>,
    pub keys: Store<ApiKey>,
    pub sacs: Store<ServiceAccountCredential>,
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
}

/// The tenancy index behind a lock: readers take a cheap snapshot (`Arc`); the fan-out
/// updates it in place unless a reader still holds the previous snapshot.
pub type SharedTenancy = Arc<RwLock<Arc<Tenancy>>>;

/// The value copies found by the inventory's last scan, shared with the controllers.
pub type ValueCopies = Arc<std::sync::RwLock<Vec<ValueCopy>>>;

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        tenants: Store<Tenant>,
        integrations: Store<PartnerIntegration>,
        keys: Store<ApiKey>,
        sacs: Store<ServiceAccountCredential>,
        namespace: Option<String>,
        min_rotation_interval: chrono::Duration,
    ) -> Self {
        let reporter = Reporter {
            controller: "keyward".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            tenants,
            integrations,
            keys,
            sacs,
            namespace,
            copies: ValueCopies::default(),
            tenancy: SharedTenancy::default(),
            counts: Arc::default(),
            backoff: Arc::default(),
            unreachable: Arc::default(),
            min_rotation_interval,
        }
    }

    /// `CrossTenant=True` when the last scan found the value with `fingerprint` in a
    /// Secret of a namespace that `tenant` does not own.
    pub fn copied_elsewhere(
        &self,
        tenancy: &Tenancy,
        tenant: &str,
        fingerprint: &str,
    ) -> Option<Verdict> {
        let copies = self.copies.read().ok()?;
        let found: Vec<String> = copies
            .iter()
            .filter(|c| {
                c.fingerprint == fingerprint
                    && tenancy.namespace_owner(&c.namespace).tenant() != Some(tenant)
            })
            .map(|c| format!("Secret {}/{} (key {:?})", c.namespace, c.secret, c.key))
            .collect();
        (!found.is_empty()).then(|| {
            Verdict::new(
                true,
                "ValueCopied",
                format!(
                    "the value is also in {}, outside the namespaces of tenant {tenant}",
                    found.join(", ")
                ),
            )
        })
    }

    /// A snapshot of the tenancy index.
    pub fn tenancy(&self) -> Arc<Tenancy> {
        match self.tenancy.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
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
