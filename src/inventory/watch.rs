//! The inventory inside `keyward run`: metadata-only watches of Secrets and ServiceAccounts
//! kept as compact projections, RBAC watches, the periodic value-copy scan, and the
//! `keyward_inventory_findings` gauge recomputed (at most once a second) when any of it changes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{FutureExt, Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::Store;
use kube::runtime::watcher::{self, Config, Event, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc};
use tokio_util::task::AbortOnDropHandle;

use super::credential::{CredentialKind, ManagedCredential};
use super::findings::{Inputs, count};
use super::object::{
    Controllers, InventoryObject, LEGACY_TOKEN_SELECTOR, OTHER_SECRETS_SELECTOR, SecretType,
    uid_number,
};
use super::rbac::{self, Binding, Rbac, RoleKey};
use super::scan::{self, ValueCopy};
use super::{InventoryError, fingerprints};
use crate::api::{ApiKey, ServiceAccountCredential, Tenant};
use crate::metrics::Metrics;
use crate::policy::tenancy::Tenancy;

/// Default period of the full value-copy re-scan (`--scan-interval`): between two, each
/// Secret seen created or changed is read once.
pub const DEFAULT_SCAN_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Logged (with the object counts and the time taken) once every watch has listed and the
/// first findings are out; the benchmark waits for it.
pub const SYNCED_MESSAGE: &str = "inventory synced";
/// Findings are recomputed at most this often, however fast objects change.
const DEBOUNCE: Duration = Duration::from_secs(1);
/// Wait before retrying a scan that failed.
const SCAN_RETRY: Duration = Duration::from_secs(30);
/// Wait before reading again a changed Secret whose read failed.
const READ_RETRY: Duration = Duration::from_secs(5);

/// What the inventory's metadata watches of Secrets and ServiceAccounts saw, told to whoever
/// waits on objects keyward does not control (the controllers' conflict index).
#[derive(Clone, Debug, PartialEq)]
pub enum ObjectChange {
    /// This object (kind, namespace, name) was created, changed or deleted.
    Object((&'static str, String, String)),
    /// A (re-)list of this kind ended: a deletion missed while the watch was away is no
    /// event of its own.
    Relisted(&'static str),
}

/// How the inventory runs inside `keyward run`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Inventory only this namespace (as `keyward run --namespace`); `None`: the cluster.
    pub namespace: Option<String>,
    /// Period of the full value-copy re-scan; zero: never.
    pub scan_interval: Duration,
    /// Notified whenever a Tenant, ApiKey or ServiceAccountCredential store changes (the
    /// controller's fan-out does it), so findings are recomputed on change, never polled.
    /// Which objects are managed is decided at each recompute from the ApiKeys and
    /// ServiceAccountCredentials in the stores then, so a keyward object appearing or going
    /// away reclassifies what it controls through this too.
    pub changes: Arc<Notify>,
    /// The last scan's copies, shared with the controllers, and notified when they change
    /// (ApiKeys report a copy in their `CrossTenant` condition).
    pub copies: super::ValueCopies,
    pub copies_changed: Arc<Notify>,
    /// Told of every Secret and ServiceAccount change the watches see (Secrets of the
    /// types the inventory watches: not Helm release records).
    pub seen: Option<mpsc::UnboundedSender<ObjectChange>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: None,
            scan_interval: DEFAULT_SCAN_INTERVAL,
            changes: Arc::new(Notify::new()),
            copies: Default::default(),
            copies_changed: Arc::new(Notify::new()),
            seen: None,
        }
    }
}

/// Keeps `keyward_inventory_findings` current until dropped (abort its task, or drop it in
/// a `select!` with the shutdown signal). Reads Tenants, ApiKeys and
/// ServiceAccountCredentials from the controller's stores; watches the rest itself.
pub async fn run(
    client: Client,
    metrics: Arc<Metrics>,
    tenants: Store<Tenant>,
    keys: Store<ApiKey>,
    sacs: Store<ServiceAccountCredential>,
    options: Options,
) {
    let started = Instant::now();
    let namespace = options.namespace.as_deref();
    let mut updates = updates(&client, namespace);
    let mut state = State {
        seen: options.seen.clone(),
        ..State::default()
    };
    let (scan_tx, mut scan_rx) = mpsc::channel::<ScanResult>(1);
    let mut scanning: Option<AbortOnDropHandle<()>> = None;
    let mut next_scan = (!options.scan_interval.is_zero()).then(Instant::now);
    // Secrets seen created or changed are read (and hashed) by the reader; what it found
    // comes back here. What it found during a scan wins over the scan's older page.
    let (read_tx, read_rx) = mpsc::unbounded_channel::<Read>();
    let (found_tx, mut found_rx) = mpsc::unbounded_channel::<Found>();
    let _reader = AbortOnDropHandle::new(tokio::spawn(reader(
        client.clone(),
        keys.clone(),
        sacs.clone(),
        (read_tx.clone(), read_rx),
        found_tx,
    )));
    let mut read_during_scan: HashMap<SecretName, Vec<ValueCopy>> = HashMap::new();
    let mut dirty = true;
    let mut announced = false;
    let mut last_publish: Option<Instant> = None;
    let mut next_change: Option<DateTime<Utc>> = None;
    // The controller's stores: wait for their first full list before any finding is drawn.
    for ready in [
        synced(&tenants).boxed(),
        synced(&keys).boxed(),
        synced(&sacs).boxed(),
    ] {
        ready.await;
    }

    loop {
        // Sleep until the next thing is due: the debounce after a change, a time-based
        // finding, or the next scan. Nothing wakes this loop while nothing changes.
        let wake = if !state.synced() {
            None
        } else if dirty {
            Some(last_publish.map_or_else(Instant::now, |t| t + DEBOUNCE))
        } else {
            let change = next_change.map(|t| {
                let wait = (t - Utc::now())
                    .to_std()
                    .unwrap_or_default()
                    .min(crate::runtime::MAX_REQUEUE);
                Instant::now() + wait
            });
            let scan = next_scan.filter(|_| scanning.is_none());
            [change, scan].into_iter().flatten().min()
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(update) = updates.next() => {
                dirty |= state.apply(update);
                for read in state.unread.drain(..) {
                    let _ = read_tx.send(read);
                }
                if std::mem::take(&mut state.copies_changed) {
                    share(&options, &state.copies);
                    dirty = true;
                }
            }
            Some(found) = found_rx.recv() => {
                for (secret, copies) in found {
                    if scanning.is_some() {
                        read_during_scan.insert(secret.clone(), copies.clone());
                    }
                    state.replace_copies(&secret, copies);
                }
                if std::mem::take(&mut state.copies_changed) {
                    share(&options, &state.copies);
                    dirty = true;
                }
            }
            () = options.changes.notified() => dirty = true,
            Some((result, took)) = scan_rx.recv() => {
                scanning = None;
                match result {
                    Ok(copies) => {
                        tracing::info!(copies = copies.len(), took_ms = took.as_millis() as u64, "value-copy scan finished");
                        state.copies = copies;
                        for (secret, copies) in read_during_scan.drain() {
                            state.replace_copies(&secret, copies);
                        }
                        state.copies.sort();
                        state.copies_changed = false;
                        share(&options, &state.copies);
                        dirty = true;
                        next_scan = Some(Instant::now() + options.scan_interval);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "value-copy scan failed; retrying");
                        read_during_scan.clear();
                        next_scan = Some(Instant::now() + SCAN_RETRY.min(options.scan_interval));
                    }
                }
            }
            () = sleep => {
                if next_change.is_some_and(|t| t <= Utc::now()) {
                    dirty = true;
                }
                let scan_due =
                    scanning.is_none() && next_scan.is_some_and(|t| Instant::now() >= t);
                let credentials = credentials(&keys, &sacs);
                if dirty {
                    dirty = false;
                    last_publish = Some(Instant::now());
                    let controllers = controllers(&keys, &sacs);
                    // A copy of a value since rotated away is no longer a managed value.
                    let wanted = fingerprints(&credentials);
                    let before = state.copies.len();
                    state.copies.retain(|c| wanted.contains(&c.fingerprint));
                    if state.copies.len() != before {
                        share(&options, &state.copies);
                    }
                    next_change =
                        state.publish(&metrics, &tenants, &controllers, &credentials);
                    if !announced {
                        announced = true;
                        tracing::info!(
                            secrets = state.secrets(),
                            service_accounts = state.service_accounts.live.len(),
                            took_ms = started.elapsed().as_millis() as u64,
                            "{SYNCED_MESSAGE}"
                        );
                    }
                }
                if scan_due {
                    read_during_scan.clear();
                    let wanted = fingerprints(&credentials);
                    // Copies matter wherever they are, so even a namespace-scoped instance
                    // looks for its own values across the cluster.
                    let (client, tx) = (client.clone(), scan_tx.clone());
                    scanning = Some(AbortOnDropHandle::new(tokio::spawn(async move {
                        let begun = Instant::now();
                        let result = scan::scan(&client, None, &wanted).await;
                        let _ = tx.send((result, begun.elapsed())).await;
                    })));
                }
            }
        }
    }
}

/// A finished scan and how long it took.
type ScanResult = (Result<Vec<ValueCopy>, InventoryError>, Duration);

/// A Secret by namespace and name.
type SecretName = (Arc<str>, Box<str>);

/// A Secret to read, and about how many objects its namespace holds.
type Read = (SecretName, usize);

/// What reading some Secrets found in each.
type Found = Vec<(SecretName, Vec<ValueCopy>)>;

/// Publishes the copies to the controllers when they differ from what they hold.
fn share(options: &Options, copies: &[ValueCopy]) {
    if let Ok(mut shared) = options.copies.write()
        && *shared != copies
    {
        *shared = copies.to_vec();
        options.copies_changed.notify_one();
    }
}

/// Reads each Secret sent to it once, batching what arrives together by namespace, and
/// sends back the copies of managed values each holds now. Nothing is read while there is
/// no managed value to look for; a failed read is retried after [`READ_RETRY`].
async fn reader(
    client: Client,
    keys: Store<ApiKey>,
    sacs: Store<ServiceAccountCredential>,
    (retry, mut reads): (mpsc::UnboundedSender<Read>, mpsc::UnboundedReceiver<Read>),
    found: mpsc::UnboundedSender<Found>,
) {
    while let Some(first) = reads.recv().await {
        let mut batch: BTreeMap<Arc<str>, (BTreeSet<String>, usize)> = BTreeMap::new();
        let mut add = |((namespace, name), size): Read| {
            let entry = batch.entry(namespace).or_default();
            entry.0.insert(name.into());
            entry.1 = entry.1.max(size);
        };
        add(first);
        while let Ok(more) = reads.try_recv() {
            add(more);
        }
        let wanted = fingerprints(&credentials(&keys, &sacs));
        if wanted.is_empty() {
            continue;
        }
        for (namespace, (names, size)) in batch {
            match scan::read(&client, &namespace, &names, size, &wanted).await {
                Ok(read) => {
                    let copies = read
                        .into_iter()
                        .map(|(name, copies)| ((namespace.clone(), name.into()), copies))
                        .collect();
                    if found.send(copies).is_err() {
                        return;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, namespace = %namespace, secrets = names.len(), "reading changed Secrets failed; retrying");
                    let retry = retry.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(READ_RETRY).await;
                        for name in names {
                            let _ = retry.send(((namespace.clone(), name.into()), size));
                        }
                    });
                }
            }
        }
    }
}

/// Waits for a store's first full list. The controller waits on the same store, and a
/// store's readiness wakes only its last waiter, so re-poll briefly; this runs only at
/// startup.
async fn synced<K: Resource<DynamicType = ()> + Clone + 'static>(store: &Store<K>) {
    while tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready())
        .await
        .is_err()
    {}
}

fn credentials(
    keys: &Store<ApiKey>,
    sacs: &Store<ServiceAccountCredential>,
) -> Vec<ManagedCredential> {
    keys.state()
        .iter()
        .map(|k| ManagedCredential::from(k.as_ref()))
        .chain(
            sacs.state()
                .iter()
                .map(|s| ManagedCredential::from(s.as_ref())),
        )
        .collect()
}

/// The keyward objects in the stores now: what makes an inventoried object managed.
fn controllers(keys: &Store<ApiKey>, sacs: &Store<ServiceAccountCredential>) -> Controllers {
    let mut out = Controllers::default();
    for k in keys.state() {
        let meta = &k.metadata;
        out.insert(
            CredentialKind::ApiKey,
            meta.namespace.as_deref(),
            meta.uid.as_deref(),
        );
    }
    for s in sacs.state() {
        let meta = &s.metadata;
        out.insert(
            CredentialKind::ServiceAccountCredential,
            meta.namespace.as_deref(),
            meta.uid.as_deref(),
        );
    }
    out
}

/// A watched object reduced to its uid (as a number, to keep large maps small) and its
/// projection; `None` when the object is of no interest (a binding of no ServiceAccount).
type Projected<V> = (u128, Option<V>);

enum Update {
    LegacyTokens(Event<Projected<InventoryObject>>),
    OtherSecrets(Event<Projected<InventoryObject>>),
    ServiceAccounts(Event<Projected<InventoryObject>>),
    Roles(Event<Projected<(RoleKey, bool)>>),
    ClusterRoles(Event<Projected<(RoleKey, bool)>>),
    RoleBindings(Event<Projected<Binding>>),
    ClusterRoleBindings(Event<Projected<Binding>>),
    Failed(watcher::Error),
}

type Updates = std::pin::Pin<Box<dyn Stream<Item = Update> + Send>>;

fn updates(client: &Client, namespace: Option<&str>) -> Updates {
    let mut streams: Vec<Updates> = vec![
        watch(
            scoped::<PartialObjectMeta<Secret>>(client, namespace),
            Config::default().fields(LEGACY_TOKEN_SELECTOR),
            |m| InventoryObject::secret(&m.metadata, SecretType::ServiceAccountToken),
            Update::LegacyTokens,
        ),
        watch(
            scoped::<PartialObjectMeta<Secret>>(client, namespace),
            Config::default().fields(OTHER_SECRETS_SELECTOR),
            |m| InventoryObject::secret(&m.metadata, SecretType::Other),
            Update::OtherSecrets,
        ),
        watch(
            scoped::<PartialObjectMeta<ServiceAccount>>(client, namespace),
            Config::default(),
            |m| InventoryObject::service_account(&m.metadata),
            Update::ServiceAccounts,
        ),
        watch(
            scoped::<Role>(client, namespace),
            Config::default(),
            |r| Some(rbac::role(r)),
            Update::Roles,
        ),
        // RoleBindings may name any ClusterRole, so ClusterRoles are watched in both modes.
        watch(
            Api::<ClusterRole>::all(client.clone()),
            Config::default(),
            |r| Some(rbac::cluster_role(r)),
            Update::ClusterRoles,
        ),
        watch(
            scoped::<RoleBinding>(client, namespace),
            Config::default(),
            Binding::from_role_binding,
            Update::RoleBindings,
        ),
    ];
    if namespace.is_none() {
        streams.push(watch(
            Api::<ClusterRoleBinding>::all(client.clone()),
            Config::default(),
            Binding::from_cluster_role_binding,
            Update::ClusterRoleBindings,
        ));
    }
    stream::select_all(streams).boxed()
}

/// A watch whose events carry projections only: each object is dropped (its
/// `managedFields` with it) as soon as it is projected.
fn watch<K, V>(
    api: Api<K>,
    config: Config,
    project: fn(&K) -> Option<V>,
    wrap: fn(Event<Projected<V>>) -> Update,
) -> Updates
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    V: Send + 'static,
{
    watcher(api, config)
        .backoff(crate::runtime::watch_backoff())
        .map(move |result| match result {
            Ok(event) => wrap(map_event(event, |k| {
                (
                    uid_number(k.meta().uid.as_deref().unwrap_or_default()),
                    project(k),
                )
            })),
            Err(err) => Update::Failed(err),
        })
        .boxed()
}

fn map_event<K, V>(event: Event<K>, f: impl Fn(&K) -> V) -> Event<V> {
    match event {
        Event::Apply(k) => Event::Apply(f(&k)),
        Event::Delete(k) => Event::Delete(f(&k)),
        Event::Init => Event::Init,
        Event::InitApply(k) => Event::InitApply(f(&k)),
        Event::InitDone => Event::InitDone,
    }
}

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

/// The objects of one watch, as of its latest complete list plus the changes since.
struct Mirror<V> {
    live: HashMap<u128, V>,
    /// Filled during a (re-)list; replaces `live` when the list completes, so objects
    /// deleted while the watch was down disappear.
    pending: Option<HashMap<u128, V>>,
    synced: bool,
}

impl<V> Default for Mirror<V> {
    fn default() -> Self {
        Self {
            live: HashMap::new(),
            pending: None,
            synced: false,
        }
    }
}

impl<V> Mirror<V> {
    /// Applies one event; true when what the findings read changed.
    fn apply(&mut self, event: Event<Projected<V>>) -> bool {
        match event {
            Event::Init => {
                self.pending = Some(HashMap::new());
                false
            }
            Event::InitApply((uid, value)) => {
                if let (Some(pending), Some(value)) = (&mut self.pending, value) {
                    pending.insert(uid, value);
                }
                false
            }
            Event::InitDone => {
                if let Some(mut pending) = self.pending.take() {
                    pending.shrink_to_fit();
                    self.live = pending;
                }
                self.synced = true;
                true
            }
            Event::Apply((uid, Some(value))) => {
                self.live.insert(uid, value);
                true
            }
            Event::Apply((uid, None)) | Event::Delete((uid, _)) => self.live.remove(&uid).is_some(),
        }
    }
}

/// One shared copy of each namespace name: a namespace holds many objects.
#[derive(Default)]
struct Namespaces(HashSet<Arc<str>>);

impl Namespaces {
    fn intern(
        &mut self,
        mut event: Event<Projected<InventoryObject>>,
    ) -> Event<Projected<InventoryObject>> {
        if let Event::Apply((_, Some(o))) | Event::InitApply((_, Some(o))) = &mut event {
            match self.0.get(&o.namespace) {
                Some(shared) => o.namespace = shared.clone(),
                None => {
                    self.0.insert(o.namespace.clone());
                }
            }
        }
        event
    }

    /// Forgets namespaces no object refers to any more.
    fn prune(&mut self) {
        self.0.retain(|ns| Arc::strong_count(ns) > 1);
    }
}

#[derive(Default)]
struct State {
    legacy_tokens: Mirror<InventoryObject>,
    other_secrets: Mirror<InventoryObject>,
    service_accounts: Mirror<InventoryObject>,
    roles: Mirror<(RoleKey, bool)>,
    cluster_roles: Mirror<(RoleKey, bool)>,
    role_bindings: Mirror<Binding>,
    cluster_role_bindings: Mirror<Binding>,
    copies: Vec<ValueCopy>,
    /// Told of each Secret and ServiceAccount change.
    seen: Option<mpsc::UnboundedSender<ObjectChange>>,
    /// The copies changed since the loop last shared them.
    copies_changed: bool,
    /// Secrets seen created or changed, to be read.
    unread: Vec<Read>,
    namespaces: Namespaces,
}

impl State {
    fn apply(&mut self, update: Update) -> bool {
        match update {
            Update::LegacyTokens(e) => {
                self.tell("Secret", &e);
                self.legacy_tokens.apply(self.namespaces.intern(e))
            }
            Update::OtherSecrets(e) => {
                self.tell("Secret", &e);
                let e = self.namespaces.intern(e);
                self.note(&e);
                let relisted = matches!(e, Event::InitDone);
                let changed = self.other_secrets.apply(e);
                if relisted {
                    self.forget_missing();
                }
                changed
            }
            Update::ServiceAccounts(e) => {
                self.tell("ServiceAccount", &e);
                self.service_accounts.apply(self.namespaces.intern(e))
            }
            Update::Roles(e) => self.roles.apply(e),
            Update::ClusterRoles(e) => self.cluster_roles.apply(e),
            Update::RoleBindings(e) => self.role_bindings.apply(e),
            Update::ClusterRoleBindings(e) => self.cluster_role_bindings.apply(e),
            Update::Failed(err) => {
                tracing::warn!(error = %err, "inventory watch failed; retrying");
                false
            }
        }
    }

    /// Tells `seen` of a change (a re-list as a whole, once it is complete).
    fn tell(&self, kind: &'static str, event: &Event<Projected<InventoryObject>>) {
        let Some(seen) = &self.seen else {
            return;
        };
        let change = match event {
            Event::Apply((_, Some(o))) | Event::Delete((_, Some(o))) => {
                ObjectChange::Object((kind, o.namespace.to_string(), o.name.to_string()))
            }
            Event::InitDone => ObjectChange::Relisted(kind),
            _ => return,
        };
        let _ = seen.send(change);
    }

    /// Notes what a Secret event means for the copies: a Secret created or changed (or,
    /// in a re-list, changed while the watch was away) is to be read, unless keyward
    /// controls it; a deleted one holds no copy any more.
    fn note(&mut self, event: &Event<Projected<InventoryObject>>) {
        let mirror = &self.other_secrets;
        let changed = match event {
            Event::Apply((_, Some(o))) => Some(o),
            Event::InitApply((uid, Some(o))) if mirror.synced => mirror
                .live
                .get(uid)
                .is_none_or(|before| o.version == 0 || before.version != o.version)
                .then_some(o),
            Event::Delete((_, Some(o))) => {
                self.replace_copies(&(o.namespace.clone(), o.name.clone()), Vec::new());
                None
            }
            _ => None,
        };
        if let Some(o) = changed.filter(|o| o.keyward.is_none()) {
            // Each object of a namespace shares its name: the count is its size.
            let size = Arc::strong_count(&o.namespace);
            self.unread
                .push(((o.namespace.clone(), o.name.clone()), size));
        }
    }

    /// Replaces what is known of one Secret's copies.
    fn replace_copies(&mut self, (namespace, name): &SecretName, copies: Vec<ValueCopy>) {
        let before = self.copies.len();
        self.copies
            .retain(|c| !(*c.namespace == **namespace && *c.secret == **name));
        if before == self.copies.len() && copies.is_empty() {
            return;
        }
        self.copies.extend(copies);
        self.copies.sort();
        self.copies.dedup();
        self.copies_changed = true;
    }

    /// After a re-list: the copies in Secrets that are gone.
    fn forget_missing(&mut self) {
        if self.copies.is_empty() {
            return;
        }
        let live: HashSet<(&str, &str)> = self
            .other_secrets
            .live
            .values()
            .map(|o| (&*o.namespace, &*o.name))
            .collect();
        let before = self.copies.len();
        self.copies
            .retain(|c| live.contains(&(c.namespace.as_str(), c.secret.as_str())));
        self.copies_changed |= before != self.copies.len();
    }

    /// Every watch has listed once. (The ClusterRoleBinding watch does not run in
    /// namespace mode; its mirror then stays empty, which is what it should be.)
    fn synced(&self) -> bool {
        self.legacy_tokens.synced
            && self.other_secrets.synced
            && self.service_accounts.synced
            && self.roles.synced
            && self.cluster_roles.synced
            && self.role_bindings.synced
    }

    fn secrets(&self) -> usize {
        self.legacy_tokens.live.len() + self.other_secrets.live.len()
    }

    /// Recomputes the findings, publishes their counts, and returns when time alone will
    /// change them next.
    fn publish(
        &mut self,
        metrics: &Metrics,
        tenants: &Store<Tenant>,
        controllers: &Controllers,
        credentials: &[ManagedCredential],
    ) -> Option<DateTime<Utc>> {
        self.namespaces.prune();
        let tenants = tenants.state();
        let tenancy = Tenancy::new(tenants.iter().map(|t| t.as_ref()));
        let rbac = Rbac::new(
            self.roles
                .live
                .values()
                .chain(self.cluster_roles.live.values())
                .cloned(),
            self.role_bindings
                .live
                .values()
                .chain(self.cluster_role_bindings.live.values())
                .cloned(),
        );
        let objects = self
            .legacy_tokens
            .live
            .values()
            .chain(self.other_secrets.live.values())
            .chain(self.service_accounts.live.values());
        let counts = count(
            Inputs {
                tenancy: &tenancy,
                objects,
                controllers,
                credentials,
                rbac: &rbac,
                copies: &self.copies,
            },
            Utc::now(),
        );
        let series = counts.series();
        tracing::debug!(series = series.len(), "inventory findings updated");
        metrics.set_findings(series);
        counts.next_change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> InventoryObject {
        InventoryObject {
            kind: super::super::object::ObjectKind::Secret,
            namespace: "ns".into(),
            name: name.into(),
            uid: 0,
            secret_type: Some(SecretType::Other),
            keyward: None,
            has_owner: false,
            last_write: None,
            last_used: None,
            version: 0,
        }
    }

    #[test]
    fn a_relist_replaces_the_mirror_when_it_completes() {
        let mut m = Mirror::default();
        m.apply(Event::Init);
        m.apply(Event::InitApply((1, Some(object("a")))));
        assert!(!m.synced);
        assert!(m.apply(Event::InitDone));
        assert!(m.synced);
        assert!(m.apply(Event::Apply((2, Some(object("b"))))));
        // The watch restarts; "a" was deleted meanwhile.
        m.apply(Event::Init);
        m.apply(Event::InitApply((2, Some(object("b")))));
        assert_eq!(
            m.live.len(),
            2,
            "the old view stays until the list completes"
        );
        m.apply(Event::InitDone);
        assert_eq!(m.live.keys().collect::<Vec<_>>(), vec![&2]);
    }

    #[test]
    fn an_object_that_stops_being_of_interest_leaves_the_mirror() {
        let mut m = Mirror::default();
        m.apply(Event::Apply((1, Some(object("a")))));
        assert!(m.apply(Event::Apply((1, None))));
        assert!(m.live.is_empty());
        assert!(!m.apply(Event::Delete((1, None))));
    }

    #[test]
    fn a_keyward_object_appearing_or_going_away_reclassifies_what_it_controls() {
        use super::super::object::{KeywardController, ManagedLabels};
        use kube::runtime::reflector;
        let key_uid = "0000000a-0000-0000-0000-00000000000b";
        let (tenants, mut tenant_writer) = reflector::store::<Tenant>();
        tenant_writer.apply_watcher_event(&Event::Apply(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "keyward.io/v1alpha1", "kind": "Tenant",
                "metadata": {"name": "acme"},
                "spec": {"namespaces": ["ns"], "owners": [{"name": "alice", "kind": "User"}]},
            }))
            .unwrap(),
        ));
        let key: ApiKey = serde_json::from_value(serde_json::json!({
            "apiVersion": "keyward.io/v1alpha1", "kind": "ApiKey",
            "metadata": {"name": "k", "namespace": "ns", "uid": key_uid},
            "spec": {"tenant": "acme", "owner": "alice"},
        }))
        .unwrap();
        let (keys, mut key_writer) = reflector::store::<ApiKey>();
        let (sacs, _sac_writer) = reflector::store::<ServiceAccountCredential>();
        let mut state = State::default();
        state.other_secrets.apply(Event::Apply((
            1,
            Some(InventoryObject {
                keyward: Some(Box::new(KeywardController {
                    kind: CredentialKind::ApiKey,
                    uid: uid_number(key_uid),
                    labels: ManagedLabels::default(),
                })),
                ..object("k")
            }),
        )));
        let metrics = Metrics::new();
        let unowned = |state: &mut State| {
            state.publish(&metrics, &tenants, &controllers(&keys, &sacs), &[]);
            metrics
                .encode()
                .contains("keyward_inventory_findings{tenant=\"acme\",finding=\"Unowned\"} 1")
        };
        assert!(unowned(&mut state), "no ApiKey controls it yet");
        key_writer.apply_watcher_event(&Event::Apply(key.clone()));
        assert!(!unowned(&mut state), "its ApiKey exists");
        key_writer.apply_watcher_event(&Event::Delete(key));
        assert!(unowned(&mut state), "its ApiKey is gone");
    }

    #[test]
    fn findings_counts_reach_the_metric() {
        let metrics = Metrics::new();
        let mut state = State::default();
        let (store, _writer) = kube::runtime::reflector::store::<Tenant>();
        assert_eq!(
            state.publish(&metrics, &store, &Controllers::default(), &[]),
            None
        );
        assert!(!metrics.encode().contains("keyward_inventory_findings{"));
    }
}
