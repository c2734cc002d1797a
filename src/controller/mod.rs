//! `keyward run`: one watch per kind feeds a reflector store; each store event is fanned
//! out to exactly the objects that depend on it, after the store holds it, so a reconcile
//! never decides on an older copy than the event that triggered it.

pub mod api_key;
pub mod context;
pub mod credential;
pub mod integration;
pub mod leader;
pub mod sa_credential;
pub mod status;
pub mod tenant;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use futures::channel::mpsc::{UnboundedSender, unbounded};
use futures::{Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Config, watcher};
use kube::runtime::{WatchStreamExt, reflector as reflect};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;

use crate::api::{ApiKey, PartnerIntegration, ServiceAccountCredential, Tenant, labels};
use crate::error::Error;
use crate::metrics::{CredentialKey, Metrics};
use crate::policy::credential::IntegrationFacts;
use crate::policy::tenancy::Tenancy;
use crate::server::{self, Health};
use context::Context;
use credential::Credential;

/// Options of `keyward run`.
#[derive(Clone, Debug)]
pub struct Options {
    pub metrics_addr: SocketAddr,
    /// Manage only credentials and integrations in this namespace, and only the Tenants
    /// that list it (Tenants of other namespaces are read, never written).
    pub namespace: Option<String>,
    /// Reconcile only while holding this Lease.
    pub leader_election: Option<leader::LeaseOptions>,
    /// Period of the inventory's value-copy scan.
    pub scan_interval: StdDuration,
}

/// Requeue exactly when the next thing is due, or wait for a change.
pub fn requeue_at(due: Option<DateTime<Utc>>) -> Action {
    match due {
        Some(due) => {
            let wait = (due - Utc::now()).to_std().unwrap_or(StdDuration::ZERO);
            Action::requeue(wait)
        }
        None => Action::await_change(),
    }
}

fn error_policy<K: ResourceExt>(
    object: Arc<K>,
    err: &Error,
    ctx: Arc<Context>,
    controller: &str,
) -> Action {
    tracing::warn!(
        controller,
        namespace = object.namespace().unwrap_or_default(),
        name = object.name_any(),
        error = %err,
        "reconcile failed"
    );
    ctx.metrics.reconcile_error(controller, err.metric_label());
    Action::requeue(StdDuration::from_secs(5))
}

/// Runs the controllers and the metrics server until SIGTERM or SIGINT.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let client = crate::client::counted(metrics.clone()).await?;
    let health = Health::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = {
        let rx = stop_rx.clone();
        move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }
    };

    let namespace = options.namespace.as_deref();
    let (tenants, tenant_events) = reflect_all::<Tenant>(Api::all(client.clone()));
    let (integrations, integration_events) = reflect_all(scoped(&client, namespace));
    let (keys, key_events) = reflect_all(scoped(&client, namespace));
    let (sacs, sac_events) = reflect_all(scoped(&client, namespace));
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        tenants.clone(),
        integrations.clone(),
        keys.clone(),
        sacs.clone(),
        options.namespace.clone(),
    ));

    let inventory_changes = Arc::new(tokio::sync::Notify::new());
    let (tenant_tx, tenant_rx) = unbounded();
    let (pi_tx, pi_rx) = unbounded();
    let (key_tx, key_rx) = unbounded();
    let (sac_tx, sac_rx) = unbounded();
    // A new scan result reaches the keys whose value was, or is now, found elsewhere.
    let copies_changed = Arc::new(tokio::sync::Notify::new());
    let copies_task = {
        let (copies_changed, copies, keys, key_tx) = (
            copies_changed.clone(),
            ctx.copies.clone(),
            keys.clone(),
            key_tx.clone(),
        );
        tokio::spawn(async move {
            let mut before: BTreeSet<String> = BTreeSet::new();
            loop {
                copies_changed.notified().await;
                let now: BTreeSet<String> = copies
                    .read()
                    .map(|c| c.iter().map(|c| c.fingerprint.clone()).collect())
                    .unwrap_or_default();
                for key in keys.state() {
                    let fingerprint = key.status.as_ref().and_then(|s| s.fingerprint.as_ref());
                    if fingerprint.is_some_and(|f| now.contains(f) || before.contains(f)) {
                        let _ = key_tx.unbounded_send(ObjectRef::from_obj(key.as_ref()));
                    }
                }
                before = now;
            }
        })
    };
    let fanout = Fanout {
        tenants: tenants.clone(),
        integrations: integrations.clone(),
        keys: keys.clone(),
        sacs: sacs.clone(),
        tenant_tx,
        pi_tx,
        key_tx,
        sac_tx,
        metrics: metrics.clone(),
        changes: inventory_changes.clone(),
        seen_tenants: BTreeMap::new(),
        seen_integrations: BTreeMap::new(),
    };
    let fanout_task =
        tokio::spawn(fanout.run(tenant_events, integration_events, key_events, sac_events));
    // The inventory writes nothing (findings are metrics), so every replica runs it and
    // any of them can be scraped.
    let inventory_task = tokio::spawn(crate::inventory::run(
        client.clone(),
        metrics.clone(),
        tenants.clone(),
        keys.clone(),
        sacs.clone(),
        crate::inventory::Options {
            namespace: options.namespace.clone(),
            scan_interval: options.scan_interval,
            changes: inventory_changes,
            copies: ctx.copies.clone(),
            copies_changed,
        },
    ));

    let tenant_ctl = Controller::for_stream(stream::pending(), tenants.clone())
        .reconcile_on(tenant_rx)
        .graceful_shutdown_on(stopped())
        .run(
            tenant::reconcile,
            |o, e, c| error_policy(o, e, c, "tenant"),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let integration_ctl = Controller::for_stream(stream::pending(), integrations.clone())
        .reconcile_on(pi_rx)
        .graceful_shutdown_on(stopped())
        .run(
            integration::reconcile,
            |o, e, c| error_policy(o, e, c, "partnerintegration"),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let key_ctl = Controller::for_stream(stream::pending(), keys.clone())
        .reconcile_on(key_rx)
        .owns(
            scoped::<Secret>(&client, namespace),
            Config::default().labels(labels::MANAGED_SELECTOR),
        )
        .graceful_shutdown_on(stopped())
        .run(
            api_key::reconcile,
            |o, e, c| error_policy(o, e, c, "apikey"),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let (conflicts_sa, conflicts_secret) = (sacs.clone(), sacs.clone());
    let sac_ctl = Controller::for_stream(stream::pending(), sacs.clone())
        .reconcile_on(sac_rx)
        .owns(
            scoped::<ServiceAccount>(&client, namespace),
            Config::default().labels(labels::MANAGED_SELECTOR),
        )
        .owns(
            scoped::<Secret>(&client, namespace),
            Config::default().labels(labels::MANAGED_SELECTOR),
        )
        // Objects in conflict are not keyward's and carry no label: metadata-only watches
        // of every ServiceAccount and Secret notice when one goes away.
        .watches(
            scoped::<PartialObjectMeta<ServiceAccount>>(&client, namespace),
            Config::default(),
            move |sa| sa_credential::in_conflict_with(&conflicts_sa, &sa),
        )
        .watches(
            scoped::<PartialObjectMeta<Secret>>(&client, namespace),
            Config::default(),
            move |secret| sa_credential::in_conflict_with(&conflicts_secret, &secret),
        )
        .graceful_shutdown_on(stopped())
        .run(
            sa_credential::reconcile,
            |o, e, c| error_policy(o, e, c, "serviceaccountcredential"),
            ctx.clone(),
        )
        .for_each(|_| async {});

    // No reconcile may decide before every store holds its first full list: an empty
    // Tenant store would make every credential look tenant-less and withdraw its value.
    // No reconcile may decide before every store holds its first full list: an empty
    // Tenant store would make every credential look tenant-less and withdraw its value.
    // With leader election, a standby keeps its caches warm and reconciles nothing.
    let lost_leadership = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let controllers = {
        let health = health.clone();
        let (t, p, k, s) = (
            tenants.clone(),
            integrations.clone(),
            keys.clone(),
            sacs.clone(),
        );
        let (client, lease, stop_tx, lost_flag) = (
            client.clone(),
            options.leader_election.clone(),
            stop_tx.clone(),
            lost_leadership.clone(),
        );
        let mut stop_rx = stop_rx.clone();
        async move {
            if !(synced(&t).await && synced(&p).await && synced(&k).await && synced(&s).await) {
                return;
            }
            health.set_ready(true);
            tracing::info!("caches synced; ready");
            let leadership = match &lease {
                None => None,
                Some(lease) => tokio::select! {
                    held = leader::Leadership::acquire(client, lease) => match held {
                        Ok(held) => Some(held),
                        Err(err) => {
                            tracing::error!(error = %err, "leader election failed");
                            lost_flag.store(true, std::sync::atomic::Ordering::SeqCst);
                            let _ = stop_tx.send(true);
                            return;
                        }
                    },
                    _ = stop_rx.wait_for(|s| *s) => return,
                },
            };
            if let Some(mut leadership) = leadership {
                // Losing the Lease stops this process: another replica has taken over.
                tokio::spawn(async move {
                    leadership.lost().await;
                    tracing::error!("lost leadership; stopping");
                    lost_flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    let _ = stop_tx.send(true);
                });
            }
            tokio::join!(tenant_ctl, integration_ctl, key_ctl, sac_ctl);
        }
    };
    let server = server::serve(options.metrics_addr, metrics, health, stopped());
    let signals = async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    };
    tokio::spawn(signals);
    let (served, ()) = tokio::join!(server, controllers);
    fanout_task.abort();
    inventory_task.abort();
    copies_task.abort();
    served?;
    if lost_leadership.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("leadership lost or not obtainable");
    }
    Ok(())
}

/// An Api of `K` in the managed namespace, or in all namespaces when none is given.
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Waits for a store's first full list. `Store::wait_until_ready` wakes only the last of
/// several waiters (the controller waits on the same store), so re-poll it briefly; this
/// runs only until startup completes.
async fn synced<K>(store: &Store<K>) -> bool
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    loop {
        match tokio::time::timeout(StdDuration::from_millis(100), store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_) => continue,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

type Touched<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

/// A watch of `K` feeding a store; the returned stream yields each object
/// touched (applied or deleted) after the store holds the change.
fn reflect_all<K>(api: Api<K>) -> (Store<K>, Touched<K>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let events = reflect(writer, watcher(api, Config::default()).default_backoff())
        .touched_objects()
        .boxed();
    (store, events)
}

/// Turns store events into reconcile requests for the objects that depend on them.
struct Fanout {
    tenants: Store<Tenant>,
    integrations: Store<PartnerIntegration>,
    keys: Store<ApiKey>,
    sacs: Store<ServiceAccountCredential>,
    tenant_tx: UnboundedSender<ObjectRef<Tenant>>,
    pi_tx: UnboundedSender<ObjectRef<PartnerIntegration>>,
    key_tx: UnboundedSender<ObjectRef<ApiKey>>,
    sac_tx: UnboundedSender<ObjectRef<ServiceAccountCredential>>,
    /// A deleted credential's series leave the metrics here: no reconcile runs for it.
    metrics: Arc<Metrics>,
    /// Tells the inventory that Tenants or credentials changed.
    changes: Arc<tokio::sync::Notify>,
    /// Per tenant: the generation and namespaces last seen, so a change that drops a
    /// namespace still reaches the credentials in it.
    seen_tenants: BTreeMap<String, (Option<i64>, Vec<String>)>,
    /// Per integration: what credentials read of it (generation, owner binding).
    seen_integrations: BTreeMap<(String, String), (Option<i64>, IntegrationFacts)>,
}

enum Touch {
    Tenant(Tenant),
    Integration(PartnerIntegration),
    Key(ApiKey),
    Sac(ServiceAccountCredential),
}

impl Fanout {
    async fn run(
        mut self,
        tenants: Touched<Tenant>,
        integrations: Touched<PartnerIntegration>,
        keys: Touched<ApiKey>,
        sacs: Touched<ServiceAccountCredential>,
    ) {
        let mut all = stream::select_all([
            tenants.map(|r| r.map(Touch::Tenant)).boxed(),
            integrations.map(|r| r.map(Touch::Integration)).boxed(),
            keys.map(|r| r.map(Touch::Key)).boxed(),
            sacs.map(|r| r.map(Touch::Sac)).boxed(),
        ]);
        while let Some(event) = all.next().await {
            if matches!(event, Ok(Touch::Tenant(_) | Touch::Key(_) | Touch::Sac(_))) {
                self.changes.notify_one();
            }
            match event {
                Ok(Touch::Tenant(t)) => self.tenant(&t),
                Ok(Touch::Integration(pi)) => self.integration(&pi),
                Ok(Touch::Key(k)) => self.credential(&k, &self.keys, &self.key_tx),
                Ok(Touch::Sac(s)) => self.credential(&s, &self.sacs, &self.sac_tx),
                Err(err) => tracing::warn!(error = %err, "watch failed; retrying"),
            }
        }
    }

    fn tenant(&mut self, t: &Tenant) {
        let name = t.name_any();
        let live = self.tenants.get(&ObjectRef::new(&name)).is_some();
        let generation = t.metadata.generation;
        let namespaces = t.spec.namespaces.clone().unwrap_or_default();
        let previous = if live {
            self.seen_tenants
                .insert(name.clone(), (generation, namespaces.clone()))
        } else {
            self.seen_tenants.remove(&name)
        };
        // A status-only update changes nothing anyone else reads.
        if live && previous.as_ref().is_some_and(|(g, _)| *g == generation) {
            return;
        }
        let tenancy = Tenancy::new(self.tenants.state().iter().map(|t| t.as_ref()));
        for other in tenancy.names() {
            let _ = self.tenant_tx.unbounded_send(ObjectRef::new(other));
        }
        let mut affected: BTreeSet<String> = tenancy.subtree(&name);
        affected.insert(name.clone());
        let namespaces: BTreeSet<String> = namespaces
            .into_iter()
            .chain(previous.into_iter().flat_map(|(_, ns)| ns))
            .collect();
        for pi in self.integrations.state() {
            if affected.contains(&pi.spec.tenant)
                || pi.namespace().is_some_and(|ns| namespaces.contains(&ns))
            {
                let _ = self.pi_tx.unbounded_send(ObjectRef::from_obj(pi.as_ref()));
            }
        }
        send(
            &self.key_tx,
            credential::select(&self.keys, |k| in_tenancy(k, &affected, &namespaces)),
        );
        send(
            &self.sac_tx,
            credential::select(&self.sacs, |s| in_tenancy(s, &affected, &namespaces)),
        );
    }

    fn integration(&mut self, pi: &PartnerIntegration) {
        let (Some(namespace), name) = (pi.namespace(), pi.name_any()) else {
            return;
        };
        let _ = self.pi_tx.unbounded_send(ObjectRef::from_obj(pi));
        let live = self.integrations.get(&ObjectRef::from_obj(pi)).is_some();
        let id = (namespace.clone(), name.clone());
        // Credentials read the spec and the owner binding, not the counts.
        let facts = (pi.metadata.generation, credential::integration_facts(pi));
        let previous = if live {
            self.seen_integrations.insert(id, facts.clone())
        } else {
            self.seen_integrations.remove(&id)
        };
        if live && previous.as_ref() == Some(&facts) {
            return;
        }
        let uses = |ns: Option<String>, pi: Option<&str>| {
            ns.as_deref() == Some(namespace.as_str()) && pi == Some(name.as_str())
        };
        send(
            &self.key_tx,
            credential::select(&self.keys, |k| uses(k.namespace(), k.integration())),
        );
        send(
            &self.sac_tx,
            credential::select(&self.sacs, |s| uses(s.namespace(), s.integration())),
        );
    }

    fn credential<K: Credential>(
        &self,
        touched: &K,
        store: &Store<K>,
        tx: &UnboundedSender<ObjectRef<K>>,
    ) {
        let reference = ObjectRef::from_obj(touched);
        if store.get(&reference).is_none() {
            self.metrics.observe_credential(
                CredentialKey {
                    kind: K::kind(&()).into_owned(),
                    namespace: touched.namespace().unwrap_or_default(),
                    name: touched.name_any(),
                },
                None,
            );
        }
        let _ = tx.unbounded_send(reference);
        // Counts on the tenant and the integration.
        if let Some(tenant) = touched.resolved_tenant() {
            let _ = self.tenant_tx.unbounded_send(ObjectRef::new(tenant));
        }
        if let (Some(pi), Some(ns)) = (touched.integration(), touched.namespace()) {
            let _ = self.pi_tx.unbounded_send(ObjectRef::new(pi).within(&ns));
        }
    }
}

/// Whether a credential depends on one of the `affected` tenants or lives in one of
/// their `namespaces`.
fn in_tenancy<K: Credential>(
    credential: &K,
    affected: &BTreeSet<String>,
    namespaces: &BTreeSet<String>,
) -> bool {
    credential.tenant().is_some_and(|t| affected.contains(t))
        || credential
            .namespace()
            .is_some_and(|ns| namespaces.contains(&ns))
}

fn send<K: Resource>(tx: &UnboundedSender<ObjectRef<K>>, refs: Vec<ObjectRef<K>>)
where
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    for reference in refs {
        let _ = tx.unbounded_send(reference);
    }
}
