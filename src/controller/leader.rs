//! Leader election (`--leader-elect`) on a coordination.k8s.io/v1 Lease, in the manner of
//! client-go's leaderelection, and the [`Fence`] that keeps a replica from writing once it
//! can no longer be sure it holds the Lease.
//!
//! Expiry is judged on the local monotonic clock only: a Lease is expired when its
//! resourceVersion has not changed for its `leaseDurationSeconds` since this process first
//! saw that resourceVersion. `renewTime` is written for people, never read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use tokio::sync::watch;

use super::context::FIELD_MANAGER;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    pub namespace: String,
    pub name: String,
    /// How long a Lease outlives its holder's last renewal.
    pub duration: Duration,
}

impl LeaseOptions {
    /// The duration as written into the Lease: whole seconds (rounded up), at least one.
    fn seconds(&self) -> i32 {
        let up = self.duration.as_secs() + u64::from(self.duration.subsec_nanos() > 0);
        i32::try_from(up.max(1)).unwrap_or(i32::MAX)
    }

    /// The duration this process holds the Lease for: exactly what it writes into it.
    fn lease_duration(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.seconds()).unwrap_or(1))
    }
}

/// Why the election ended before this process held the Lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("the leader election task ended before this process held the Lease")]
    Ended,
}

/// The part of `leaseDuration` a holder gives up at the end of each term: 10 % of it, at
/// most one second. It covers a write that passed the fence just before the deadline and
/// is still on its way, and clocks that run at slightly different rates.
pub fn safety_margin(duration: Duration) -> Duration {
    (duration / 10).min(Duration::from_secs(1))
}

/// Until when a holder may write after a successful acquire or renewal whose request
/// started at `start`: no other replica can take the Lease before `start + duration`
/// (it waits that long after it saw the renewed resourceVersion, which the server wrote
/// after `start`), less the [`safety_margin`]. `None` when that instant cannot be
/// represented (the fence then stays closed).
pub fn fence_deadline(start: Instant, duration: Duration) -> Option<Instant> {
    start.checked_add(duration.saturating_sub(safety_margin(duration)))
}

/// Whether this process may send writes: held until a deadline, on the local monotonic
/// clock. The client refuses every write but the Lease's own while it is not held
/// (`crate::client`). Without leader election it is always open.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    /// Nanoseconds after `base` until which the fence is held; 0 is closed, `u64::MAX` is
    /// always held.
    until: AtomicU64,
}

const ALWAYS: u64 = u64::MAX;

impl Fence {
    /// A fence that is always held: a process without leader election.
    pub fn open() -> Self {
        Self {
            base: Instant::now(),
            until: AtomicU64::new(ALWAYS),
        }
    }

    /// A fence that is not held until an election says so.
    pub fn closed() -> Self {
        Self {
            base: Instant::now(),
            until: AtomicU64::new(0),
        }
    }

    /// Whether writes may be sent now.
    pub fn is_held(&self) -> bool {
        self.is_held_at(Instant::now())
    }

    /// Whether writes may be sent at `now`.
    pub fn is_held_at(&self, now: Instant) -> bool {
        self.offset(now) < self.until.load(Ordering::SeqCst)
    }

    /// Holds the fence until `deadline` (closed at once if it has passed). Only the
    /// election task calls it, one call at a time.
    fn hold_until(&self, deadline: Instant) {
        self.until.store(self.offset(deadline), Ordering::SeqCst);
    }

    pub(crate) fn close(&self) {
        self.until.store(0, Ordering::SeqCst);
    }

    fn offset(&self, at: Instant) -> u64 {
        let nanos = at
            .checked_duration_since(self.base)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // One below ALWAYS, so that an always-held fence stays held.
        u64::try_from(nanos).unwrap_or(ALWAYS - 1).min(ALWAYS - 1)
    }
}

/// What this process knows of the Lease: who holds it, for how long it says, and when
/// this process first saw its current resourceVersion (local monotonic clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    version: Option<String>,
    holder: Option<String>,
    duration: Duration,
    since: Instant,
}

impl Observed {
    /// The first observation of `lease` at `now`. `fallback` is the duration of a Lease
    /// that states none.
    pub fn new(lease: &Lease, fallback: Duration, now: Instant) -> Self {
        let spec = lease.spec.as_ref();
        let duration = spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(fallback);
        Self {
            version: lease.metadata.resource_version.clone(),
            holder: holder(lease).map(str::to_owned),
            duration,
            since: now,
        }
    }

    /// `lease` seen again at `now`: the clock restarts only when its resourceVersion
    /// changed.
    pub fn observe(&self, lease: &Lease, fallback: Duration, now: Instant) -> Self {
        let next = Self::new(lease, fallback, now);
        if next.version.is_some() && next.version == self.version {
            Self {
                since: self.since,
                ..next
            }
        } else {
            next
        }
    }

    /// When the Lease runs out unless it changes; `None` if never (a duration too long to
    /// add).
    pub fn expires_at(&self) -> Option<Instant> {
        self.since.checked_add(self.duration)
    }

    /// Whether `identity` may take the Lease at `now`: it is free, already its own, or
    /// has not changed for its whole duration.
    pub fn takeable(&self, identity: &str, now: Instant) -> bool {
        match self.holder.as_deref() {
            None => true,
            Some(holder) if holder == identity => true,
            Some(_) => self.expires_at().is_some_and(|at| now >= at),
        }
    }
}

fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// This process's identity in the Lease: `$POD_NAME` (or the host name), the PID and a
/// random suffix, so two processes never share one, not even a restarted container.
pub fn identity() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    let base = non_empty(std::env::var("POD_NAME").ok())
        .or_else(|| non_empty(std::env::var("HOSTNAME").ok()))
        .or_else(|| non_empty(std::fs::read_to_string("/proc/sys/kernel/hostname").ok()))
        .unwrap_or_else(|| "keyward".to_owned());
    let suffix = Alphanumeric
        .sample_string(&mut rand::rng(), 6)
        .to_ascii_lowercase();
    format!("{base}_{}_{suffix}", std::process::id())
}

fn non_empty(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Standby,
    Leading,
    /// The Lease is lost (or the election ended); the fence is closed.
    Lost,
}

/// Aborts the election task when dropped, so giving up on `acquire` stops it.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Closes the fence however the election task ends (returned, aborted or panicked).
struct CloseOnDrop(Arc<Fence>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// This process holds the Lease; renewals go on until it is lost or this is dropped.
pub struct Leadership {
    state: watch::Receiver<State>,
    identity: String,
    fence: Arc<Fence>,
    api: Api<Lease>,
    name: String,
    task: Task,
}

impl Leadership {
    /// Waits until this process holds the Lease, then keeps renewing it and holds `fence`
    /// open until each renewal's deadline. Errors only when the election task ended before
    /// that: this process never acts as leader without the Lease.
    pub async fn acquire(
        client: Client,
        options: &LeaseOptions,
        fence: Arc<Fence>,
    ) -> Result<Self, LeaderError> {
        let identity = identity();
        let (state_tx, mut state) = watch::channel(State::Standby);
        let api: Api<Lease> = Api::namespaced(client, &options.namespace);
        let election = Election {
            api: api.clone(),
            name: options.name.clone(),
            namespace: options.namespace.clone(),
            identity: identity.clone(),
            seconds: options.seconds(),
            duration: options.lease_duration(),
            fence: fence.clone(),
            state: state_tx,
        };
        tracing::info!(
            identity,
            lease = options.name,
            namespace = options.namespace,
            "waiting for leadership"
        );
        let task = Task(tokio::spawn(election.run()));
        match state.wait_for(|s| *s != State::Standby).await {
            Ok(s) if *s == State::Leading => {}
            _ => return Err(LeaderError::Ended),
        }
        Ok(Self {
            state,
            identity,
            fence,
            api,
            name: options.name.clone(),
            task,
        })
    }

    /// This process's identity in the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Resolves when the Lease is lost or the election task ended; the fence is closed by
    /// then.
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (mut state, fence) = (self.state.clone(), self.fence.clone());
        async move {
            let _ = state.wait_for(|s| *s == State::Lost).await;
            fence.close();
        }
    }

    /// Gives the Lease up when the process stops cleanly (SIGTERM: a rollout, a drain), so
    /// that a standby takes it at once instead of when it runs out. The fence closes and
    /// the renewals stop first, so nothing of this process is written once another may
    /// lead; the release is one replace conditional on the Lease as read, and only while
    /// this process holds it. Bounded: a release that cannot be sent leaves the Lease to
    /// run out, as after a crash.
    pub async fn release(mut self) {
        self.fence.close();
        self.task.0.abort();
        let _ = (&mut self.task.0).await;
        let release = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok(false);
            };
            if holder(&lease) != Some(self.identity.as_str()) {
                return Ok(false);
            }
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = None;
            spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PostParams::default()
            };
            self.api.replace(&self.name, &params, &lease).await?;
            Ok::<_, kube::Error>(true)
        };
        match tokio::time::timeout(Duration::from_secs(5), release).await {
            Ok(Ok(true)) => tracing::info!(identity = self.identity, "released the Lease"),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, identity = self.identity, "releasing the Lease failed; it runs out instead")
            }
            Err(_) => tracing::warn!(
                identity = self.identity,
                "releasing the Lease timed out; it runs out instead"
            ),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.fence.close();
    }
}

type LeaseEvents =
    std::pin::Pin<Box<dyn Stream<Item = Result<Event<Lease>, watcher::Error>> + Send>>;

struct Election {
    api: Api<Lease>,
    name: String,
    namespace: String,
    identity: String,
    /// `leaseDurationSeconds` as written.
    seconds: i32,
    duration: Duration,
    fence: Arc<Fence>,
    state: watch::Sender<State>,
}

impl Election {
    async fn run(self) {
        let _closed = CloseOnDrop(self.fence.clone());
        // One watch of the one Lease serves both roles: a standby sleeps until it changes
        // or runs out, a leader hears at once when another holder appears.
        let mut events: LeaseEvents = watcher(
            self.api.clone(),
            watcher::Config::default().fields(&format!("metadata.name={}", self.name)),
        )
        .backoff(super::watch_backoff())
        .boxed();
        let Some((lease, start)) = self.stand_by(&mut events).await else {
            return;
        };
        let _ = self.state.send_replace(State::Leading);
        tracing::info!(
            identity = self.identity,
            lease = self.name,
            namespace = self.namespace,
            "became leader"
        );
        let reason = self.lead(lease, start, &mut events).await;
        self.fence.close();
        tracing::error!(
            identity = self.identity,
            lease = self.name,
            namespace = self.namespace,
            reason,
            "lost leadership"
        );
        let _ = self.state.send_replace(State::Lost);
    }

    /// How long to wait before retrying a failed request.
    fn retry(&self) -> Duration {
        (self.duration / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// Waits until this process has taken the Lease; returns it as written and when the
    /// request that took it started, with the fence held. `None` when the Lease watch ended.
    async fn stand_by(&self, events: &mut LeaseEvents) -> Option<(Lease, Instant)> {
        let mut lease = self.read_or_create().await;
        let mut seen = Observed::new(&lease, self.duration, Instant::now());
        loop {
            if seen.takeable(&self.identity, Instant::now()) {
                match self.write(&lease, true).await {
                    Ok((taken, start)) => {
                        if let Some(deadline) = fence_deadline(start, self.duration) {
                            self.fence.hold_until(deadline);
                        }
                        return Some((taken, start));
                    }
                    Err(err) => {
                        if !is_conflict(&err) {
                            self.retrying("taking the Lease", &err);
                            tokio::time::sleep(self.retry()).await;
                        }
                        // Someone else wrote it first: see what they wrote.
                        lease = self.read_or_create().await;
                        seen = seen.observe(&lease, self.duration, Instant::now());
                        continue;
                    }
                }
            }
            let wake = seen
                .expires_at()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                event = events.next() => match event? {
                    Ok(Event::Apply(current) | Event::InitApply(current)) => {
                        lease = current;
                        seen = seen.observe(&lease, self.duration, Instant::now());
                    }
                    Ok(Event::Delete(_)) => {
                        lease = self.read_or_create().await;
                        seen = seen.observe(&lease, self.duration, Instant::now());
                    }
                    Ok(Event::Init | Event::InitDone) => {}
                    Err(err) => self.retrying("watching the Lease", &err),
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Renews the Lease (taken by a request that started at `start`) every third of its
    /// duration until it is lost; returns why.
    async fn lead(
        &self,
        mut lease: Lease,
        start: Instant,
        events: &mut LeaseEvents,
    ) -> &'static str {
        let mut deadline = fence_deadline(start, self.duration).unwrap_or(start);
        let mut next = start.checked_add(self.duration / 3).unwrap_or(deadline);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {
                    if Instant::now() >= deadline {
                        return "no renewal succeeded before the fence deadline";
                    }
                    let renewal = self.write(&lease, false);
                    let until_deadline = tokio::time::Instant::from_std(deadline);
                    match tokio::time::timeout_at(until_deadline, renewal).await {
                        Err(_) => return "no renewal succeeded before the fence deadline",
                        Ok(Ok((renewed, start))) => {
                            let Some(until) = fence_deadline(start, self.duration) else {
                                return "the fence deadline cannot be represented";
                            };
                            self.fence.hold_until(until);
                            deadline = until;
                            lease = renewed;
                            next = start.checked_add(self.duration / 3).unwrap_or(until);
                        }
                        Ok(Err(err)) if is_conflict(&err) => {
                            return "another writer changed the Lease";
                        }
                        Ok(Err(err)) => {
                            self.retrying("renewing the Lease", &err);
                            next = Instant::now().checked_add(self.retry()).unwrap_or(deadline);
                        }
                    }
                }
                event = events.next() => {
                    let shown = match event {
                        None => return "the Lease watch ended",
                        Some(Ok(Event::Apply(shown) | Event::InitApply(shown))) => Some(shown),
                        Some(Ok(Event::Delete(_))) => None,
                        Some(Ok(Event::Init | Event::InitDone)) => continue,
                        Some(Err(err)) => {
                            self.retrying("watching the Lease", &err);
                            continue;
                        }
                    };
                    if shown.as_ref().and_then(holder) == Some(self.identity.as_str()) {
                        // Our own write (perhaps an older one): nothing to learn.
                        continue;
                    }
                    // Another holder, or no Lease. The event may predate our own last
                    // write (watch events can lag): a quorum read decides.
                    let read = tokio::time::timeout_at(
                        tokio::time::Instant::from_std(deadline),
                        self.api.get_opt(&self.name),
                    );
                    match read.await {
                        Ok(Ok(Some(current))) if same_version(&current, &lease) => {}
                        Ok(Ok(_)) => return "another holder took the Lease",
                        Ok(Err(_)) | Err(_) => {
                            return "another holder appeared and the Lease could not be read";
                        }
                    }
                }
            }
        }
    }

    /// The Lease, created (free) if there is none; retried until it can be read.
    async fn read_or_create(&self) -> Lease {
        loop {
            let failure = match self.api.get_opt(&self.name).await {
                Ok(Some(lease)) => return lease,
                Ok(None) => {
                    let fresh = Lease {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            namespace: Some(self.namespace.clone()),
                            ..ObjectMeta::default()
                        },
                        spec: Some(LeaseSpec {
                            lease_duration_seconds: Some(self.seconds),
                            lease_transitions: Some(0),
                            ..LeaseSpec::default()
                        }),
                    };
                    match self.api.create(&self.params(), &fresh).await {
                        Ok(lease) => return lease,
                        // Another replica created it first: read theirs.
                        Err(err) if is_conflict(&err) => continue,
                        Err(err) => err,
                    }
                }
                Err(err) => err,
            };
            self.retrying("reading the Lease", &failure);
            tokio::time::sleep(self.retry()).await;
        }
    }

    /// Takes (`take`) or renews `lease` with one replace that carries the resourceVersion
    /// read, so it fails with a conflict if anyone wrote the Lease since. Returns the Lease
    /// as written and when the request started.
    async fn write(&self, lease: &Lease, take: bool) -> Result<(Lease, Instant), kube::Error> {
        let start = Instant::now();
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut next = lease.clone();
        let spec = next.spec.get_or_insert_with(LeaseSpec::default);
        if take && spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.lease_duration_seconds = Some(self.seconds);
        spec.renew_time = Some(now);
        let written = self.api.replace(&self.name, &self.params(), &next).await?;
        Ok((written, start))
    }

    fn retrying(&self, step: &'static str, err: &dyn std::fmt::Display) {
        tracing::warn!(error = %err, lease = self.name, step, "Lease request failed; retrying");
    }

    fn params(&self) -> PostParams {
        PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        }
    }
}

fn same_version(a: &Lease, b: &Lease) -> bool {
    a.metadata.resource_version.is_some()
        && a.metadata.resource_version == b.metadata.resource_version
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.is_conflict())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(version: &str, holder: Option<&str>, seconds: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some(version.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: seconds,
                ..LeaseSpec::default()
            }),
        }
    }

    const FOUR: Duration = Duration::from_secs(4);

    #[test]
    fn a_held_lease_expires_only_after_its_version_stood_still_for_its_duration() {
        let t0 = Instant::now();
        let seen = Observed::new(&lease("7", Some("other"), Some(4)), FOUR, t0);
        assert!(!seen.takeable("me", t0));
        assert!(!seen.takeable("me", t0 + Duration::from_millis(3999)));
        assert!(seen.takeable("me", t0 + FOUR));
    }

    #[test]
    fn a_renewal_restarts_the_expiry_clock() {
        let t0 = Instant::now();
        let seen = Observed::new(&lease("7", Some("other"), Some(4)), FOUR, t0);
        let renewed = seen.observe(
            &lease("8", Some("other"), Some(4)),
            FOUR,
            t0 + Duration::from_secs(3),
        );
        assert!(!renewed.takeable("me", t0 + Duration::from_secs(6)));
        assert!(renewed.takeable("me", t0 + Duration::from_secs(7)));
    }

    #[test]
    fn seeing_the_same_version_again_keeps_the_first_observation() {
        // A re-list repeats the Lease; that is no renewal.
        let t0 = Instant::now();
        let seen = Observed::new(&lease("7", Some("other"), Some(4)), FOUR, t0);
        let again = seen.observe(
            &lease("7", Some("other"), Some(4)),
            FOUR,
            t0 + Duration::from_secs(3),
        );
        assert!(again.takeable("me", t0 + FOUR));
    }

    #[test]
    fn expiry_ignores_the_remote_renew_time() {
        // A renewTime far in the future (or past) on the holder's wall clock changes nothing.
        let t0 = Instant::now();
        let mut future = lease("7", Some("other"), Some(4));
        if let Some(spec) = future.spec.as_mut() {
            spec.renew_time = Some(MicroTime(
                k8s_openapi::jiff::Timestamp::from_second(4_000_000_000).unwrap(),
            ));
        }
        let seen = Observed::new(&future, FOUR, t0);
        assert!(seen.takeable("me", t0 + FOUR));
        assert!(!seen.takeable("me", t0 + Duration::from_secs(3)));
    }

    #[test]
    fn the_holders_stated_duration_decides_its_expiry() {
        let t0 = Instant::now();
        let seen = Observed::new(&lease("7", Some("other"), Some(15)), FOUR, t0);
        assert!(!seen.takeable("me", t0 + Duration::from_secs(14)));
        assert!(seen.takeable("me", t0 + Duration::from_secs(15)));
        // A Lease stating none (or nonsense) lasts our own duration.
        let none = Observed::new(&lease("7", Some("other"), Some(0)), FOUR, t0);
        assert!(none.takeable("me", t0 + FOUR));
    }

    #[test]
    fn a_free_lease_or_our_own_is_takeable_at_once() {
        let t0 = Instant::now();
        for free in [lease("1", None, Some(4)), lease("1", Some(""), Some(4))] {
            assert!(Observed::new(&free, FOUR, t0).takeable("me", t0));
        }
        assert!(Observed::new(&lease("1", Some("me"), Some(4)), FOUR, t0).takeable("me", t0));
    }

    #[test]
    fn the_fence_deadline_is_the_request_start_plus_the_duration_less_the_margin() {
        let start = Instant::now();
        assert_eq!(safety_margin(FOUR), Duration::from_millis(400));
        assert_eq!(
            safety_margin(Duration::from_secs(15)),
            Duration::from_secs(1)
        );
        assert_eq!(
            fence_deadline(start, FOUR),
            Some(start + Duration::from_millis(3600))
        );
        assert_eq!(
            fence_deadline(start, Duration::from_secs(15)),
            Some(start + Duration::from_secs(14))
        );
    }

    #[test]
    fn the_fence_deadline_comes_before_a_standby_may_take_over() {
        // The standby first sees the renewed version no earlier than the renewal started.
        for seconds in [1, 2, 4, 15, 60, 3600] {
            let duration = Duration::from_secs(seconds);
            let start = Instant::now();
            let seen = Observed::new(
                &lease("9", Some("leader"), i32::try_from(seconds).ok()),
                duration,
                start,
            );
            let deadline = fence_deadline(start, duration).unwrap();
            assert!(!seen.takeable("standby", deadline));
            assert!(deadline < seen.expires_at().unwrap());
        }
    }

    #[test]
    fn a_fence_is_held_until_its_deadline_and_not_after() {
        let fence = Fence::closed();
        let now = Instant::now();
        assert!(!fence.is_held_at(now));
        fence.hold_until(now + Duration::from_secs(2));
        assert!(fence.is_held_at(now + Duration::from_millis(1999)));
        assert!(!fence.is_held_at(now + Duration::from_secs(2)));
        fence.close();
        assert!(!fence.is_held_at(now));
    }

    #[test]
    fn a_fence_held_until_a_past_instant_is_closed() {
        let fence = Fence::closed();
        let past = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        fence.hold_until(past);
        assert!(!fence.is_held());
    }

    #[test]
    fn without_leader_election_the_fence_is_always_held() {
        let fence = Fence::open();
        assert!(fence.is_held());
        assert!(fence.is_held_at(Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)));
    }

    #[test]
    fn two_processes_never_share_an_identity() {
        let (a, b) = (identity(), identity());
        assert_ne!(a, b);
        assert!(a.contains(&format!("_{}_", std::process::id())));
    }

    #[test]
    fn the_lease_duration_is_whole_seconds_rounded_up() {
        let options = |duration| LeaseOptions {
            namespace: "ns".into(),
            name: "keyward".into(),
            duration,
        };
        assert_eq!(options(FOUR).seconds(), 4);
        assert_eq!(options(Duration::from_millis(4500)).seconds(), 5);
        assert_eq!(options(Duration::ZERO).seconds(), 1);
        assert_eq!(
            options(Duration::from_millis(4500)).lease_duration(),
            Duration::from_secs(5)
        );
    }
}
