//! `keyward run`: one watch per kind feeds a reflector store; each store event is fanned
//! out to exactly the objects that depend on it, after the store holds it, so a reconcile
//! never decides on an older copy than the event that triggered it.

pub mod api_key;
pub mod backoff;
pub mod conflicts;
pub mod context;
pub mod credential;
pub mod gate;
pub mod index;
pub mod integration;
pub mod leader;
pub mod owned;
pub mod sa_credential;
pub mod status;
pub mod tenant;
pub mod vault;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt, stream};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Config, watcher};
use kube::runtime::{WatchStreamExt, reflector as reflect};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::api::{ApiKey, PartnerIntegration, ServiceAccountCredential, Tenant, labels};
use crate::error::Error;
use crate::metrics::{CredentialKey, Metrics};
use crate::policy::credential::IntegrationFacts;
use crate::policy::tenancy::Tenancy;
use crate::server::{self, Health};
use backoff::ObjectId;
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
    /// The write floor: the shortest effective rotation interval or token refresh period.
    pub min_rotation_interval: chrono::Duration,
    /// Credential passes doing work at once (`--concurrency`), admitted by urgency; also
    /// the bound of the Tenant and PartnerIntegration controllers each.
    pub concurrency: u16,
    /// The client-side rate limit (`--kube-qps`, `--kube-burst`).
    pub rate_limit: crate::client::RateLimit,
    /// The Vault store of ApiKey values (`--vault-addr` and the other `--vault-*` flags).
    pub vault: Option<crate::store::vault::VaultConfig>,
}

/// Default of `--concurrency`.
pub const DEFAULT_CONCURRENCY: u16 = 16;

pub use crate::runtime::{MAX_REQUEUE, watch_backoff};

/// Requeue exactly when the next thing is due, or wait for a change.
pub fn requeue_at(due: Option<DateTime<Utc>>) -> Action {
    match due {
        Some(due) => {
            let wait = (due - Utc::now()).to_std().unwrap_or(StdDuration::ZERO);
            Action::requeue(wait.min(MAX_REQUEUE))
        }
        None => Action::await_change(),
    }
}

fn object_id<K: ResourceExt>(kind: &'static str, object: &K) -> ObjectId {
    (kind, object.namespace(), object.name_any())
}

/// Wraps a reconcile: a panic becomes an error of that one object (it backs off like any
/// other error and the controller keeps governing the rest), and a success resets the
/// object's backoff. A gated pass first takes its place at the credential gate
/// ([`gate`]): the one held for it if the gate handed it out, else a free one if nobody
/// waits; otherwise it does nothing now and waits at the gate to be handed out.
fn guarded<K, F, Fut>(
    kind: &'static str,
    gated: Option<Gated<K>>,
    reconcile: F,
) -> impl FnMut(Arc<K>, Arc<Context>) -> BoxFuture<'static, Result<Action, Error>>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    move |object, ctx| {
        let id = object_id(kind, object.as_ref());
        let reconcile = reconcile.clone();
        async move {
            let _permit = match gated {
                Some(gated) => {
                    let permit = ctx
                        .gate
                        .take_ticket(&id)
                        .or_else(|| ctx.gate.try_admit(&id));
                    let Some(permit) = permit else {
                        ctx.gate
                            .push(id, (gated.due)(object.as_ref(), ctx.as_ref()));
                        return Ok(Action::await_change());
                    };
                    Some(permit)
                }
                None => None,
            };
            // A task of its own: the passes run on every worker thread rather than all in
            // the one task that drives the controllers. Dropped (the controller stopped
            // without waiting for it), the pass is aborted with it.
            let pass = Box::pin(reconcile(object, ctx.clone()));
            let task = AbortOnDropHandle::new(tokio::spawn(
                async move {
                    match std::panic::AssertUnwindSafe(pass).catch_unwind().await {
                        Ok(result) => result,
                        Err(payload) => Err(Error::Panicked(panic_message(payload.as_ref()))),
                    }
                }
                .in_current_span(),
            ));
            // The pass catches its own panic: the task ends otherwise only when aborted.
            let result = task
                .await
                .unwrap_or_else(|err| Err(Error::Panicked(format!("pass ended: {err}"))));
            if result.is_ok() {
                ctx.backoff.succeeded(&id);
            }
            result
        }
        .boxed()
    }
}

/// How a credential controller's passes go through the gate: the urgency of a pass.
struct Gated<K: Resource<DynamicType = ()> + Clone + 'static> {
    due: fn(&K, &Context) -> gate::Due,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Clone for Gated<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Copy for Gated<K> {}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".to_owned());
    text.chars().take(200).collect()
}

fn error_policy<K: ResourceExt>(
    object: Arc<K>,
    err: &Error,
    ctx: Arc<Context>,
    controller: &str,
    kind: &'static str,
) -> Action {
    let wait = ctx.backoff.failed(object_id(kind, object.as_ref()));
    if err.is_unreachable() {
        ctx.unreachable.notify_one();
    }
    tracing::warn!(
        controller,
        namespace = object.namespace().unwrap_or_default(),
        name = object.name_any(),
        error = %err,
        retry_in_ms = wait.as_millis() as u64,
        "reconcile failed"
    );
    ctx.metrics.reconcile_error(controller, err.metric_label());
    Action::requeue(wait)
}

/// Where reconcile requests go, per kind. Requests are held only while the controllers
/// run: until then (at startup, and on a standby that never leads) they are dropped, so a
/// standby accumulates nothing, and starting the controllers enqueues every object once,
/// which is all the first lists would have enqueued.
#[derive(Clone)]
struct Queues {
    tenant: Queue<Tenant>,
    pi: Queue<PartnerIntegration>,
    key: Queue<ApiKey>,
    sac: Queue<ServiceAccountCredential>,
    running: Arc<std::sync::atomic::AtomicBool>,
}

/// The reconcile requests of one kind; see [`Queues`].
struct Queue<K: Resource<DynamicType = ()>> {
    tx: UnboundedSender<ObjectRef<K>>,
    running: Arc<std::sync::atomic::AtomicBool>,
}

impl<K: Resource<DynamicType = ()>> Clone for Queue<K> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            running: self.running.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Queue<K> {
    fn new(
        tx: UnboundedSender<ObjectRef<K>>,
        running: &Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Self {
            tx,
            running: running.clone(),
        }
    }

    fn push(&self, reference: ObjectRef<K>) {
        if !self.running.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let _ = self.tx.unbounded_send(reference);
    }

    fn push_all(&self, store: &Store<K>)
    where
        K: Clone,
    {
        for object in store.state() {
            self.push(ObjectRef::from_obj(object.as_ref()));
        }
    }
}

type Receivers = (
    UnboundedReceiver<ObjectRef<Tenant>>,
    UnboundedReceiver<ObjectRef<PartnerIntegration>>,
    UnboundedReceiver<ObjectRef<ApiKey>>,
    UnboundedReceiver<ObjectRef<ServiceAccountCredential>>,
);

impl Queues {
    /// Queues that hold nothing until [`Queues::start`]. The credential kinds' go to the
    /// gate ([`dispatch`]), the others' to their controller.
    fn new() -> (Self, Receivers) {
        let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tenant, tenant_rx) = unbounded();
        let (pi, pi_rx) = unbounded();
        let (key, key_rx) = unbounded();
        let (sac, sac_rx) = unbounded();
        let queues = Self {
            tenant: Queue::new(tenant, &running),
            pi: Queue::new(pi, &running),
            key: Queue::new(key, &running),
            sac: Queue::new(sac, &running),
            running,
        };
        (queues, (tenant_rx, pi_rx, key_rx, sac_rx))
    }

    /// The controllers run: requests are held from now on, and every object of the four
    /// stores is enqueued once. The queues open first, so a change the fan-out sends in
    /// between is either held or already in the store.
    fn start(&self, ctx: &Context) {
        self.running
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.tenant.push_all(&ctx.tenants);
        self.pi.push_all(&ctx.integrations);
        self.key.push_all(&ctx.keys);
        self.sac.push_all(&ctx.sacs);
    }

    /// The controllers stop (leadership lost): requests are dropped again.
    fn stop(&self) {
        self.running
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn send(&self, (kind, namespace, name): &ObjectId) {
        fn at<K: Resource<DynamicType = ()>>(
            name: &str,
            namespace: &Option<String>,
        ) -> ObjectRef<K> {
            match namespace {
                Some(ns) => ObjectRef::new(name).within(ns),
                None => ObjectRef::new(name),
            }
        }
        match *kind {
            tenant::KIND => self.tenant.push(ObjectRef::new(name)),
            integration::KIND => self.pi.push(at(name, namespace)),
            api_key::KIND => self.key.push(at(name, namespace)),
            _ => self.sac.push(at(name, namespace)),
        }
    }
}

/// How the fan-out came to see a credential.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// In a (re-)list.
    Listed,
    /// Changed or deleted, as its watch shows.
    Changed,
    /// Exactly as this process's own last status write left it.
    OwnWrite,
}

/// Requests for credential passes wait at the gate, by urgency, rather than in
/// kube-runtime's runner; each is handed to its controller once there is room for it
/// ([`gate::Gate`]). A request for an object the store no longer has is dropped: its
/// deletion was the last change, and kube-runtime would find nothing to reconcile.
async fn dispatch(
    ctx: Arc<Context>,
    (mut keys, mut sacs): (
        UnboundedReceiver<ObjectRef<ApiKey>>,
        UnboundedReceiver<ObjectRef<ServiceAccountCredential>>,
    ),
    (to_keys, to_sacs): (
        UnboundedSender<ObjectRef<ApiKey>>,
        UnboundedSender<ObjectRef<ServiceAccountCredential>>,
    ),
) {
    fn at<K: Resource<DynamicType = ()>>((_, namespace, name): &ObjectId) -> ObjectRef<K> {
        match namespace {
            Some(ns) => ObjectRef::new(name).within(ns),
            None => ObjectRef::new(name),
        }
    }
    loop {
        // What came in is placed before anything is handed out: the most urgent of a
        // burst goes first.
        tokio::select! {
            biased;
            Some(reference) = keys.next() => {
                if let Some(key) = ctx.keys.get(&reference) {
                    let id = object_id(api_key::KIND, key.as_ref());
                    ctx.gate.push(id, api_key::due(&key, &ctx));
                }
            }
            Some(reference) = sacs.next() => {
                if let Some(sac) = ctx.sacs.get(&reference) {
                    let id = object_id(sa_credential::KIND, sac.as_ref());
                    ctx.gate.push(id, sa_credential::due(&sac, &ctx));
                }
            }
            id = ctx.gate.next() => {
                let sent = if id.0 == api_key::KIND {
                    to_keys.unbounded_send(at(&id)).is_ok()
                } else {
                    to_sacs.unbounded_send(at(&id)).is_ok()
                };
                if !sent {
                    ctx.gate.forget(&id);
                }
            }
        }
    }
}

/// The end of a credential controller's pass: one kube-runtime could not start, its
/// object gone from the store, gives back the place the gate held for it.
fn pass_ended<E: std::fmt::Debug, Q: std::fmt::Debug>(
    ctx: &Context,
    kind: &'static str,
    ended: Result<(ObjectRef<impl Resource>, Action), kube::runtime::controller::Error<E, Q>>,
) {
    if let Err(kube::runtime::controller::Error::ObjectNotFound(reference)) = ended {
        ctx.gate
            .forget(&(kind, reference.namespace.clone(), reference.name.clone()));
    }
}

/// After a reconcile found the API server unreachable, or a watch failed: waits until it
/// answers again (asking its `/readyz` twice a second, only while it is away), then retries
/// at once, and twice more over the next 3 s, every object whose reconcile failed, instead
/// of leaving each to its backoff; and when it was away, the credentials changed meanwhile
/// (`changed_while_away`).
async fn retry_when_reachable(client: Client, ctx: Arc<Context>, queues: Queues) {
    loop {
        ctx.unreachable.notified().await;
        // Whether the server was away, rather than answering with an error (a 429, or a
        // webhook's 500) that no re-list would change.
        let mut away = false;
        loop {
            tokio::time::sleep(StdDuration::from_millis(500)).await;
            let ready = http::Request::get("/readyz").body(Vec::new());
            if let Ok(ready) = ready
                && client.request_text(ready).await.is_ok()
            {
                break;
            }
            away = true;
        }
        // A restarted API server answers before it serves every resource (custom resources
        // come up a moment later): what fails again in that window is retried twice more.
        for wait in [0, 1000, 2000] {
            tokio::time::sleep(StdDuration::from_millis(wait)).await;
            let failing = ctx.backoff.failing();
            let mut changed = Vec::new();
            if away {
                changed = changed_while_away(&ctx, &ctx.keys, api_key::KIND).await;
                changed.extend(changed_while_away(&ctx, &ctx.sacs, sa_credential::KIND).await);
            }
            tracing::info!(
                objects = failing.len(),
                changed = changed.len(),
                "API server reachable again; retrying failed reconciles and credentials changed meanwhile"
            );
            for id in failing.iter().chain(&changed) {
                queues.send(id);
            }
        }
    }
}

/// After an outage the watches cannot be trusted for a while: a restarted API server ends
/// the watches of custom resources with 410 a few seconds after it reports ready, and
/// they re-list then. So the credentials are listed once (a consistent, paged read of
/// their metadata): each one whose resourceVersion differs from its store copy is marked
/// as newer (its next pass reads it, see `credential::current`) and returned, to be
/// reconciled. None when the list fails (the next round lists again).
async fn changed_while_away<K: Credential>(
    ctx: &Context,
    store: &Store<K>,
    kind: &'static str,
) -> Vec<ObjectId> {
    let api: Api<K> = scoped(&ctx.client, ctx.namespace.as_deref());
    let mut changed = Vec::new();
    let mut params = kube::api::ListParams::default().limit(500);
    loop {
        let Ok(page) = api.list_metadata(&params).await else {
            return Vec::new();
        };
        for item in &page.items {
            let (Some(name), Some(uid), Some(version)) = (
                item.metadata.name.as_deref(),
                item.metadata.uid.clone(),
                item.metadata.resource_version.clone(),
            ) else {
                continue;
            };
            let reference = ObjectRef::<K>::new(name).within(&item.namespace().unwrap_or_default());
            let cached = store
                .get(&reference)
                .and_then(|o| o.meta().resource_version.clone());
            if cached.as_deref() != Some(version.as_str()) {
                credential::known_version(ctx, uid, version);
                changed.push((kind, reference.namespace.clone(), reference.name.clone()));
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    changed
}

/// Runs parts of the controller as tasks and notices when one ends or panics.
struct Supervisor {
    tasks: JoinSet<(&'static str, bool)>,
}

impl Supervisor {
    fn spawn(
        &mut self,
        name: &'static str,
        part: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.tasks.spawn(async move {
            let panicked = std::panic::AssertUnwindSafe(part)
                .catch_unwind()
                .await
                .is_err();
            (name, panicked)
        });
    }

    /// Waits until the controllers have stopped after a shutdown request, or until a part
    /// ends without one: then marks the process unhealthy, asks everything to stop, and
    /// returns the part's name.
    async fn wait(
        mut self,
        health: &Health,
        stop_tx: &watch::Sender<bool>,
    ) -> Option<&'static str> {
        let mut failed = None;
        while let Some(joined) = self.tasks.join_next().await {
            let (name, panicked) = joined.unwrap_or(("a task", true));
            let stopping = *stop_tx.borrow();
            if !stopping && failed.is_none() {
                tracing::error!(
                    part = name,
                    panicked,
                    "a part of the controller stopped; stopping the process"
                );
                health.set_failed();
                failed = Some(name);
                let _ = stop_tx.send(true);
            }
            if name == CONTROLLERS {
                break;
            }
            if *stop_tx.borrow() && failed.is_some() {
                // Give the controllers a moment to finish the passes in flight.
                let _ = tokio::time::timeout(StdDuration::from_secs(10), async {
                    while let Some(Ok((name, _))) = self.tasks.join_next().await {
                        if name == CONTROLLERS {
                            break;
                        }
                    }
                })
                .await;
                break;
            }
        }
        self.tasks.abort_all();
        failed
    }
}

const CONTROLLERS: &str = "controllers";

/// Runs the controllers and the metrics server until SIGTERM or SIGINT, or until a part of
/// the controller stops (then with an error, so the process exits non-zero).
pub async fn run(options: Options) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    // With leader election, nothing but the Lease is written until this process holds it.
    let fence = Arc::new(match options.leader_election {
        Some(_) => leader::Fence::closed(),
        None => leader::Fence::open(),
    });
    let client = crate::client::counted(metrics.clone(), fence.clone(), options.rate_limit).await?;
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
    // One watch each of the Secrets and ServiceAccounts keyward controls, shared by both
    // credential controllers: a change wakes the credential that controls the object.
    let (owned_secrets, secret_changes) =
        owned::Owned::<Secret>::watch(scoped(&client, namespace), labels::MANAGED_SELECTOR);
    let (owned_accounts, account_changes) =
        owned::Owned::<ServiceAccount>::watch(scoped(&client, namespace), labels::MANAGED_SELECTOR);
    let mut ctx = Context::new(
        client.clone(),
        metrics.clone(),
        tenants.clone(),
        integrations.clone(),
        keys.clone(),
        sacs.clone(),
        (owned_secrets.clone(), owned_accounts.clone()),
        options.namespace.clone(),
        options.min_rotation_interval,
    );
    ctx.gate = gate::Gate::new(usize::from(options.concurrency));
    if let Some(config) = options.vault.clone() {
        tracing::info!(
            addr = config.addr,
            prefix = config.prefix,
            role = config.role,
            "Vault store configured"
        );
        ctx.vault = Some(Arc::new(crate::store::vault::Vault::new(
            config,
            metrics.clone(),
        )?));
    }
    let ctx = Arc::new(ctx);

    let mut parts = Supervisor {
        tasks: JoinSet::new(),
    };
    let inventory_changes = Arc::new(tokio::sync::Notify::new());
    let (queues, (tenant_rx, pi_rx, key_in, sac_in)) = Queues::new();
    // A new scan result reaches the keys whose value was, or is now, found elsewhere.
    let copies_changed = Arc::new(tokio::sync::Notify::new());
    {
        let (copies_changed, copies, keys, key_tx) = (
            copies_changed.clone(),
            ctx.copies.clone(),
            keys.clone(),
            queues.key.clone(),
        );
        parts.spawn("value-copy fan-out", async move {
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
                        key_tx.push(ObjectRef::from_obj(key.as_ref()));
                    }
                }
                before = now;
            }
        });
    }
    {
        let queues = queues.clone();
        parts.spawn(
            "owned-object watches",
            futures::stream::select(secret_changes, account_changes).for_each(move |id| {
                queues.send(&id);
                futures::future::ready(())
            }),
        );
    }
    // An object in conflict is not keyward's and carries no label: the inventory's
    // metadata watches of every Secret and ServiceAccount wake the credentials waiting on
    // one when it changes or goes away. (Both run on the governing replica only, as do
    // the passes that wait.)
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    {
        let (queues, conflicts) = (queues.clone(), ctx.clone());
        parts.spawn("conflict wake-ups", async move {
            while let Some(change) = seen_rx.recv().await {
                for id in conflicts.conflicts.woken_by(&change) {
                    queues.send(&id);
                }
            }
        });
    }
    let (tenancy_ready_tx, tenancy_ready) = watch::channel(false);
    let fanout = Fanout {
        ctx: ctx.clone(),
        queues: queues.clone(),
        changes: inventory_changes.clone(),
        seen_tenants: BTreeMap::new(),
        seen_integrations: BTreeMap::new(),
        tenancy_ready: tenancy_ready_tx,
        listed: BTreeSet::new(),
        seen_versions: std::collections::HashMap::new(),
        relist: Relist::default(),
    };
    parts.spawn(
        "fan-out",
        fanout.run(tenant_events, integration_events, key_events, sac_events),
    );
    parts.spawn(
        "API server recovery",
        retry_when_reachable(client.clone(), ctx.clone(), queues.clone()),
    );
    // The inventory reads Secret data (the value-copy scan and the reads of changed
    // Secrets): only the replica that governs runs it, once it does.
    let (leading_tx, mut leading) = watch::channel(false);
    let inventory = crate::inventory::run(
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
            seen: Some(seen_tx),
        },
    );
    parts.spawn("inventory", async move {
        if leading.wait_for(|l| *l).await.is_ok() {
            inventory.await;
        } else {
            std::future::pending::<()>().await;
        }
    });

    // Tenant and integration statuses only carry counts and consistency: a short debounce
    // folds a wave of credential changes into one status write.
    let bounded = kube::runtime::controller::Config::default().concurrency(options.concurrency);
    let counts_debounce = bounded.debounce(StdDuration::from_millis(500));
    // The credential controllers are given a pass once the gate, shared by both, has room
    // for it, the most urgent first ([`dispatch`]); kube-runtime starts at once what it is
    // given, and what it starts by itself (a requeue, a retry) takes its place at the gate.
    let gated = kube::runtime::controller::Config::default();
    let (to_keys, key_rx) = unbounded();
    let (to_sacs, sac_rx) = unbounded();
    let dispatcher = {
        let inputs = (key_in, sac_in);
        let dispatched = dispatch(ctx.clone(), inputs, (to_keys, to_sacs));
        let stopped = stopped();
        async move {
            tokio::select! {
                () = dispatched => {}
                () = stopped => {}
            }
        }
    };
    let tenant_ctl = Controller::for_stream(stream::pending(), tenants.clone())
        .with_config(counts_debounce.clone())
        .reconcile_on(tenant_rx)
        .graceful_shutdown_on(stopped())
        .run(
            guarded(tenant::KIND, None, tenant::reconcile),
            |o, e, c| error_policy(o, e, c, "tenant", tenant::KIND),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let integration_ctl = Controller::for_stream(stream::pending(), integrations.clone())
        .with_config(counts_debounce)
        .reconcile_on(pi_rx)
        .graceful_shutdown_on(stopped())
        .run(
            guarded(integration::KIND, None, integration::reconcile),
            |o, e, c| error_policy(o, e, c, "partnerintegration", integration::KIND),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let key_ctl = Controller::for_stream(stream::pending(), keys.clone())
        .with_config(gated.clone())
        .trigger_backoff(watch_backoff())
        .reconcile_on(key_rx)
        .graceful_shutdown_on(stopped())
        .run(
            guarded(
                api_key::KIND,
                Some(Gated { due: api_key::due }),
                api_key::reconcile,
            ),
            |o, e, c| error_policy(o, e, c, "apikey", api_key::KIND),
            ctx.clone(),
        )
        .for_each({
            let ctx = ctx.clone();
            move |ended| {
                pass_ended(&ctx, api_key::KIND, ended);
                async {}
            }
        });
    let sac_ctl = Controller::for_stream(stream::pending(), sacs.clone())
        .with_config(gated)
        .trigger_backoff(watch_backoff())
        .reconcile_on(sac_rx)
        .graceful_shutdown_on(stopped())
        .run(
            guarded(
                sa_credential::KIND,
                Some(Gated {
                    due: sa_credential::due,
                }),
                sa_credential::reconcile,
            ),
            |o, e, c| error_policy(o, e, c, "serviceaccountcredential", sa_credential::KIND),
            ctx.clone(),
        )
        .for_each({
            let ctx = ctx.clone();
            move |ended| {
                pass_ended(&ctx, sa_credential::KIND, ended);
                async {}
            }
        });

    // No reconcile may decide before every store holds its first full list and the
    // tenancy index holds every Tenant: an empty index would make every credential look
    // tenant-less and withdraw its value. With leader election, a standby keeps its caches
    // warm and reconciles nothing.
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
        let (fence, queues, ctx) = (fence.clone(), queues.clone(), ctx.clone());
        let mut stop_rx = stop_rx.clone();
        let mut tenancy_ready = tenancy_ready;
        async move {
            let startup = async {
                synced(&t).await
                    && synced(&p).await
                    && synced(&k).await
                    && synced(&s).await
                    && owned_secrets.ready().await
                    && owned_accounts.ready().await
                    && tenancy_ready.wait_for(|r| *r).await.is_ok()
            };
            let started = tokio::select! {
                ok = startup => ok,
                _ = stop_rx.wait_for(|s| *s) => return,
            };
            if !started {
                return;
            }
            health.set_ready(true);
            tracing::info!("caches synced; ready");
            let leadership = match &lease {
                None => None,
                Some(lease) => tokio::select! {
                    held = leader::Leadership::acquire(client, lease, fence) => match held {
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
            if let Some(leadership) = &leadership {
                // Losing the Lease stops this process: another replica takes over. The
                // fence closed before, so the passes still in flight write nothing.
                let queues = queues.clone();
                let (lost, identity) = (leadership.lost(), leadership.identity().to_owned());
                tokio::spawn(async move {
                    lost.await;
                    queues.stop();
                    tracing::error!(identity, "lost leadership; stopping");
                    lost_flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    let _ = stop_tx.send(true);
                });
            }
            queues.start(&ctx);
            let _ = leading_tx.send(true);
            tokio::join!(tenant_ctl, integration_ctl, key_ctl, sac_ctl, dispatcher);
            // Stopped (the passes in flight have finished): hand the Lease over.
            if let Some(leadership) = leadership {
                leadership.release().await;
            }
        }
    };
    parts.spawn(CONTROLLERS, controllers);
    {
        let server = server::serve(options.metrics_addr, metrics, health.clone(), stopped());
        parts.spawn("metrics server", async move {
            if let Err(err) = server.await {
                tracing::error!(error = %err, "metrics server failed");
            }
        });
    }
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
    }
    let failed = parts.wait(&health, &stop_tx).await;
    if lost_leadership.load(std::sync::atomic::Ordering::SeqCst) {
        anyhow::bail!("leadership lost or not obtainable");
    }
    if let Some(part) = failed {
        anyhow::bail!("{part} stopped");
    }
    Ok(())
}

/// Watch settings of the controllers' own watches: every (re)list is a consistent read.
/// After an API server restart its watch cache starts afresh; a list served from it
/// (kube's default, `resourceVersion=0`) can return a resourceVersion the new cache no
/// longer serves watches from, so the watch fails with 410 and the list is repeated, for
/// seconds, while the store stays stale. A consistent list costs one etcd read per re-list,
/// which is rare. (The inventory's watches of every Secret keep the cached list.)
fn fresh_lists() -> Config {
    Config::default().list_semantic(watcher::ListSemantic::MostRecent)
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

type Events<K> =
    std::pin::Pin<Box<dyn Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send>>;

/// A watch of `K` feeding a store; the returned stream yields each watch event after the
/// store holds it.
fn reflect_all<K>(api: Api<K>) -> (Store<K>, Events<K>)
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
    let events = reflect(
        writer,
        watcher(api, fresh_lists())
            .backoff(watch_backoff())
            .modify(strip_bookkeeping),
    )
    .boxed();
    (store, events)
}

/// Drops what no decision reads and what costs the most memory per object: who wrote which
/// field (`managedFields`, a tree of maps per manager) and the copy of the whole object
/// that `kubectl apply` keeps in an annotation. At 10,000 ApiKeys they were most of what
/// the stores held.
fn strip_bookkeeping<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// Turns store events into reconcile requests for the objects that depend on them, and
/// keeps the shared tenancy index and credential counts up to date.
struct Fanout {
    ctx: Arc<Context>,
    queues: Queues,
    /// Tells the inventory that Tenants or credentials changed.
    changes: Arc<tokio::sync::Notify>,
    /// Per tenant: the generation and namespaces last seen, so a change that drops a
    /// namespace still reaches the credentials in it.
    seen_tenants: BTreeMap<String, (Option<i64>, Vec<String>)>,
    /// Per integration: what credentials read of it (generation, owner binding).
    seen_integrations: BTreeMap<(String, String), (Option<i64>, IntegrationFacts)>,
    /// Set once the tenancy index holds the first full list of Tenants.
    tenancy_ready: watch::Sender<bool>,
    /// The credential kinds whose first full list is complete: a later list is a re-list.
    listed: BTreeSet<&'static str>,
    /// The resourceVersion of each credential as last seen, so a re-list reconciles only
    /// what changed while the watch was away (an annotation changes no generation).
    seen_versions: std::collections::HashMap<ObjectId, String>,
    /// Objects of a (re-)list in progress. The store swaps in a list only when it is
    /// complete, so they are fanned out then, when reconciles see them as listed.
    relist: Relist,
}

#[derive(Default)]
struct Relist {
    tenants: Vec<Tenant>,
    integrations: Vec<PartnerIntegration>,
    keys: Vec<ApiKey>,
    sacs: Vec<ServiceAccountCredential>,
}

enum Touch {
    Tenant(watcher::Event<Tenant>),
    Integration(watcher::Event<PartnerIntegration>),
    Key(watcher::Event<ApiKey>),
    Sac(watcher::Event<ServiceAccountCredential>),
}

impl Fanout {
    async fn run(
        mut self,
        tenants: Events<Tenant>,
        integrations: Events<PartnerIntegration>,
        keys: Events<ApiKey>,
        sacs: Events<ServiceAccountCredential>,
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
                Ok(Touch::Tenant(e)) => match e {
                    watcher::Event::Init => self.relist.tenants.clear(),
                    watcher::Event::InitApply(t) => self.relist.tenants.push(t),
                    watcher::Event::InitDone => {
                        let listed = std::mem::take(&mut self.relist.tenants);
                        if *self.tenancy_ready.borrow() {
                            for t in &listed {
                                self.tenant(t);
                            }
                        } else {
                            // The first list: every credential of the first lists is
                            // reconciled anyway, so only the Tenants themselves are.
                            for t in &listed {
                                let name = t.name_any();
                                let namespaces = t.spec.namespaces.clone().unwrap_or_default();
                                self.seen_tenants
                                    .insert(name.clone(), (t.metadata.generation, namespaces));
                                self.queues.tenant.push(ObjectRef::new(&name));
                            }
                        }
                        self.tenants_listed();
                    }
                    watcher::Event::Apply(t) | watcher::Event::Delete(t) => self.tenant(&t),
                },
                Ok(Touch::Integration(e)) => match e {
                    watcher::Event::Init => self.relist.integrations.clear(),
                    watcher::Event::InitApply(pi) => self.relist.integrations.push(pi),
                    watcher::Event::InitDone => {
                        let listed = std::mem::take(&mut self.relist.integrations);
                        if self.listed.insert(integration::KIND) {
                            // The first list: its credentials are reconciled anyway.
                            for pi in &listed {
                                let Some(namespace) = pi.namespace() else {
                                    continue;
                                };
                                let facts =
                                    (pi.metadata.generation, credential::integration_facts(pi));
                                self.seen_integrations
                                    .insert((namespace, pi.name_any()), facts);
                                self.queues.pi.push(ObjectRef::from_obj(pi));
                            }
                        } else {
                            for pi in &listed {
                                self.integration(pi);
                            }
                        }
                    }
                    watcher::Event::Apply(pi) | watcher::Event::Delete(pi) => self.integration(&pi),
                },
                Ok(Touch::Key(e)) => self.credential_event(e, api_key::KIND),
                Ok(Touch::Sac(e)) => self.credential_event(e, sa_credential::KIND),
                Err(err) => {
                    tracing::warn!(error = %err, "watch failed; retrying");
                    // A quiet cluster has no failing reconcile to say the server went away:
                    // the recovery task checks, and re-lists if it was.
                    self.ctx.unreachable.notify_one();
                }
            }
        }
    }

    fn credential_event<K: Credential>(&mut self, event: watcher::Event<K>, kind: &'static str)
    where
        Self: Sends<K>,
    {
        match event {
            watcher::Event::Init => Self::buffer(&mut self.relist).clear(),
            watcher::Event::InitApply(object) => Self::buffer(&mut self.relist).push(object),
            watcher::Event::InitDone => {
                for object in std::mem::take(Self::buffer(&mut self.relist)) {
                    credential::caught_up(&self.ctx, &object);
                    self.credential(&object, kind, Seen::Listed);
                }
                self.credentials_listed::<K>(kind);
            }
            watcher::Event::Apply(object) => {
                let seen = if credential::own_echo(&self.ctx, &object) {
                    Seen::OwnWrite
                } else {
                    Seen::Changed
                };
                credential::caught_up(&self.ctx, &object);
                self.credential(&object, kind, seen)
            }
            watcher::Event::Delete(object) => self.credential(&object, kind, Seen::Changed),
        }
    }

    /// A (re-)list of Tenants is complete: the index is rebuilt from the store, which now
    /// holds exactly the Tenants that exist (a deletion missed while the watch was down is
    /// not an event of its own), and what changed is fanned out.
    fn tenants_listed(&mut self) {
        let tenants = self.ctx.tenants.state();
        let live: BTreeSet<String> = tenants.iter().map(|t| t.name_any()).collect();
        let gone: Vec<String> = self
            .seen_tenants
            .keys()
            .filter(|name| !live.contains(*name))
            .cloned()
            .collect();
        let rebuilt = Tenancy::new(tenants.iter().map(|t| t.as_ref()));
        match self.ctx.tenancy.write() {
            Ok(mut index) => *index = Arc::new(rebuilt),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(rebuilt),
        }
        for name in gone {
            let (_, namespaces) = self.seen_tenants.remove(&name).unwrap_or_default();
            self.ctx
                .backoff
                .succeeded(&(tenant::KIND, None, name.clone()));
            self.tenant_changed(&name, namespaces);
        }
        let _ = self.tenancy_ready.send(true);
    }

    fn tenant(&mut self, t: &Tenant) {
        let name = t.name_any();
        let live = self.ctx.tenants.get(&ObjectRef::new(&name)).is_some();
        let generation = t.metadata.generation;
        let namespaces = t.spec.namespaces.clone().unwrap_or_default();
        let previous = if live {
            self.seen_tenants
                .insert(name.clone(), (generation, namespaces.clone()))
        } else {
            // A deleted object's failures are forgotten with it.
            self.ctx
                .backoff
                .succeeded(&(tenant::KIND, None, name.clone()));
            self.seen_tenants.remove(&name)
        };
        // A status-only update changes nothing anyone else reads.
        if live && previous.as_ref().is_some_and(|(g, _)| *g == generation) {
            return;
        }
        {
            let mut index = match self.ctx.tenancy.write() {
                Ok(index) => index,
                Err(poisoned) => poisoned.into_inner(),
            };
            let index = Arc::make_mut(&mut index);
            match self.ctx.tenants.get(&ObjectRef::new(&name)) {
                Some(current) => index.apply(&current),
                None => index.remove(&name),
            }
        }
        let mut listed: Vec<String> = previous.map(|(_, ns)| ns).unwrap_or_default();
        listed.extend(namespaces);
        self.tenant_changed(&name, listed);
    }

    /// Reconciles what a change of Tenant `name` affects: itself and the tenants below it
    /// (state and policy cascade down), the tenants that list one of the namespaces it
    /// lists or listed (namespace conflicts), and the integrations and credentials of those
    /// tenants or in those namespaces. Nothing else.
    fn tenant_changed(&mut self, name: &str, namespaces: Vec<String>) {
        let tenancy = self.ctx.tenancy();
        let namespaces: BTreeSet<String> = namespaces.into_iter().collect();
        let mut affected: BTreeSet<String> = tenancy.subtree(name);
        affected.insert(name.to_owned());
        let mut statuses = affected.clone();
        statuses.extend(tenancy.claimants(&namespaces));
        for tenant in &statuses {
            self.queues.tenant.push(ObjectRef::new(tenant));
        }
        for pi in self.ctx.integrations.state() {
            if affected.contains(&pi.spec.tenant)
                || pi.namespace().is_some_and(|ns| namespaces.contains(&ns))
            {
                self.queues.pi.push(ObjectRef::from_obj(pi.as_ref()));
            }
        }
        self.wake(credential::select(&self.ctx.keys, |k| {
            in_tenancy(k, &affected, &namespaces)
        }));
        self.wake(credential::select(&self.ctx.sacs, |s| {
            in_tenancy(s, &affected, &namespaces)
        }));
    }

    fn integration(&mut self, pi: &PartnerIntegration) {
        let (Some(namespace), name) = (pi.namespace(), pi.name_any()) else {
            return;
        };
        let live = self
            .ctx
            .integrations
            .get(&ObjectRef::from_obj(pi))
            .is_some();
        let id = (namespace.clone(), name.clone());
        // Credentials read the spec and the owner binding, not the counts.
        let facts = (pi.metadata.generation, credential::integration_facts(pi));
        let previous = if live {
            self.seen_integrations.insert(id, facts.clone())
        } else {
            self.ctx
                .backoff
                .succeeded(&object_id(integration::KIND, pi));
            self.seen_integrations.remove(&id)
        };
        if live && previous.as_ref() == Some(&facts) {
            return;
        }
        self.queues.pi.push(ObjectRef::from_obj(pi));
        let uses = |ns: Option<String>, pi: Option<&str>| {
            ns.as_deref() == Some(namespace.as_str()) && pi == Some(name.as_str())
        };
        self.wake(credential::select(&self.ctx.keys, |k| {
            uses(k.namespace(), k.integration())
        }));
        self.wake(credential::select(&self.ctx.sacs, |s| {
            uses(s.namespace(), s.integration())
        }));
    }

    fn credential<K: Credential>(&mut self, touched: &K, kind: &'static str, seen: Seen)
    where
        Self: Sends<K>,
    {
        let reference = ObjectRef::from_obj(touched);
        let live = Self::store(&self.ctx).get(&reference);
        if live.is_none() {
            self.ctx.backoff.succeeded(&object_id(kind, touched));
            if let Some(uid) = touched.uid() {
                credential::forget(&self.ctx, &uid);
            }
            self.ctx.conflicts.set(object_id(kind, touched), None);
            self.ctx.metrics.observe_credential(
                CredentialKey {
                    kind: K::kind(&()).into_owned(),
                    namespace: touched.namespace().unwrap_or_default(),
                    name: touched.name_any(),
                },
                None,
            );
        }
        // Counts on the tenant and the integration: only when this credential moves one.
        let changed = match self.ctx.counts.lock() {
            Ok(mut counts) => {
                counts.update(kind, live.as_deref().unwrap_or(touched), live.is_some())
            }
            Err(_) => Default::default(),
        };
        self.counts_changed(changed);
        // The first list reaches every credential (its timers live in this process only); a
        // re-list repeats every object, and only those that changed while the watch was
        // away, or that the controller has not settled (failing), need another pass.
        let id = object_id(kind, touched);
        let version = live
            .as_ref()
            .and_then(|l| l.meta().resource_version.clone());
        let unchanged = match &version {
            Some(v) => self.seen_versions.insert(id.clone(), v.clone()).as_ref() == Some(v),
            None => {
                self.seen_versions.remove(&id);
                false
            }
        };
        let relisted_unchanged = seen == Seen::Listed
            && self.listed.contains(kind)
            && unchanged
            && !self.ctx.backoff.is_failing(&id);
        // The echo of this process's own status write wakes nobody: the pass that wrote it
        // requeued itself for what is due next. (Sent to the gate, it would take a place
        // for a pass that has nothing to do, behind every rotation of a wave.)
        if relisted_unchanged || seen == Seen::OwnWrite {
            return;
        }
        self.wake(vec![reference]);
    }

    /// Sends credentials to their controller, by way of the credential gate: one whose
    /// pass waits there has its urgency decided again from what it and its tenancy say
    /// now, so a key revoked or suspended while it waits behind a backlog of rotations
    /// goes first.
    fn wake<K: Credential>(&self, references: Vec<ObjectRef<K>>)
    where
        Self: Sends<K>,
    {
        for reference in references {
            self.send_credential(reference);
        }
    }

    /// A (re-)list of credentials is complete: those the counts still hold but the store
    /// no longer has were deleted while the watch was down.
    fn credentials_listed<K: Credential>(&mut self, kind: &'static str)
    where
        Self: Sends<K>,
    {
        self.listed.insert(kind);
        let known = self
            .ctx
            .counts
            .lock()
            .map(|c| c.known(kind))
            .unwrap_or_default();
        for (namespace, name) in known {
            let reference = ObjectRef::<K>::new(&name).within(&namespace);
            if Self::store(&self.ctx).get(&reference).is_some() {
                continue;
            }
            let id = (kind, Some(namespace.clone()), name.clone());
            self.seen_versions.remove(&id);
            self.ctx.backoff.succeeded(&id);
            self.ctx.metrics.observe_credential(
                CredentialKey {
                    kind: kind.to_owned(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                },
                None,
            );
            let changed = match self.ctx.counts.lock() {
                Ok(mut counts) => counts.remove(kind, &namespace, &name),
                Err(_) => Default::default(),
            };
            self.counts_changed(changed);
        }
    }

    fn counts_changed(&self, changed: index::Changed) {
        for tenant in changed.tenants {
            self.queues.tenant.push(ObjectRef::new(&tenant));
        }
        for (ns, pi) in changed.integrations {
            self.queues.pi.push(ObjectRef::new(&pi).within(&ns));
        }
    }
}

/// The store and queue of each credential kind.
trait Sends<K: Credential> {
    fn store(ctx: &Context) -> &Store<K>;
    fn buffer(relist: &mut Relist) -> &mut Vec<K>;
    fn send_credential(&self, reference: ObjectRef<K>);
}

impl Sends<ApiKey> for Fanout {
    fn store(ctx: &Context) -> &Store<ApiKey> {
        &ctx.keys
    }
    fn buffer(relist: &mut Relist) -> &mut Vec<ApiKey> {
        &mut relist.keys
    }
    fn send_credential(&self, reference: ObjectRef<ApiKey>) {
        self.queues.key.push(reference);
    }
}

impl Sends<ServiceAccountCredential> for Fanout {
    fn store(ctx: &Context) -> &Store<ServiceAccountCredential> {
        &ctx.sacs
    }
    fn buffer(relist: &mut Relist) -> &mut Vec<ServiceAccountCredential> {
        &mut relist.sacs
    }
    fn send_credential(&self, reference: ObjectRef<ServiceAccountCredential>) {
        self.queues.sac.push(reference);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_hold_nothing_until_the_controllers_start_and_after_they_stop() {
        let (queues, (mut tenants, _, mut keys, _)) = Queues::new();
        let key = || (api_key::KIND, Some("team-a".to_owned()), "k".to_owned());
        queues.tenant.push(ObjectRef::new("acme"));
        queues.send(&key());
        assert!(tenants.try_recv().is_err());
        assert!(keys.try_recv().is_err());

        // What `start` does before it enqueues the stores' objects.
        queues
            .running
            .store(true, std::sync::atomic::Ordering::SeqCst);
        queues.send(&key());
        assert_eq!(
            keys.try_recv().ok(),
            Some(ObjectRef::new("k").within("team-a"))
        );

        queues.stop();
        queues.send(&key());
        assert!(keys.try_recv().is_err());
    }
}
