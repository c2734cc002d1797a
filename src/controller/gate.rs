//! Admission of credential passes by urgency: at most `--concurrency` passes of ApiKeys
//! and ServiceAccountCredentials do work at once, and when more are due, a pass that
//! withdraws a value (an expiry, a revocation, the end of an overlap) goes first, then one
//! that issues or rotates, then the rest (status refreshes, the passes woken by the
//! operator's own writes). Within one urgency, passes go in the order they came.
//!
//! A waiting pass holds only its object's name, what its urgency was decided from, and a
//! place in the queue: the pass itself is built once it is admitted. A waiting pass does
//! not keep the urgency it came with: a change to what it depends on (its object, its
//! Tenant, its PartnerIntegration) decides it again ([`Gate::redecide`]), and so does the
//! time passing the moment it would become more urgent (its expiry, its rotation), so a
//! key that expires or is revoked while it waits behind a backlog of rotations goes first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::backoff::ObjectId;

/// How soon a pass must run, most urgent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    /// A value stops being served: expiry, revocation, the end of an overlap, deletion.
    Withdraw,
    /// A value is issued or rotated.
    Rotate,
    /// Nothing about the value is due: a status refresh, or nothing at all.
    Refresh,
}

impl Urgency {
    const ALL: [Urgency; 3] = [Urgency::Withdraw, Urgency::Rotate, Urgency::Refresh];

    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Withdraw => "withdraw",
            Urgency::Rotate => "rotate",
            Urgency::Refresh => "refresh",
        }
    }
}

/// What a credential pass's urgency is decided from: its status as the pass finds it, and
/// its lifecycle now. Nothing here needs a request.
#[derive(Clone, Debug, Default)]
pub struct Due {
    /// The object is being deleted.
    pub deleting: bool,
    /// The status says a value is served (state Active).
    pub served: bool,
    /// The lifecycle, decided now, lets a value be served.
    pub active: bool,
    /// When the lifecycle next changes by itself (an expiry, the end of an owner's grace):
    /// from then on a served value is to be withdrawn.
    pub ends_at: Option<DateTime<Utc>>,
    /// When the served value is next rotated (or a token refreshed).
    pub renew_at: Option<DateTime<Utc>>,
    /// When the previous value's overlap ends, while one is open.
    pub overlap_ends: Option<DateTime<Utc>>,
    /// A rotation request (`keyward.io/rotate`) stands unanswered.
    pub requested: bool,
}

/// The urgency of a pass at `now`: withdrawing a served value (its lifecycle no longer
/// lets it be served or ends, its overlap ended, or its object is going) before issuing or
/// rotating one, and both before anything else.
pub fn urgency(due: &Due, now: DateTime<Utc>) -> Urgency {
    let passed = |at: Option<DateTime<Utc>>| at.is_some_and(|at| at <= now);
    let active = due.active && !passed(due.ends_at);
    if due.deleting || (due.served && !active) || passed(due.overlap_ends) {
        Urgency::Withdraw
    } else if active && (!due.served || due.requested || passed(due.renew_at)) {
        Urgency::Rotate
    } else {
        Urgency::Refresh
    }
}

/// The first moment after `now` at which the urgency of `due` rises, and to what.
pub fn rises(due: &Due, now: DateTime<Utc>) -> Option<(DateTime<Utc>, Urgency)> {
    let current = urgency(due, now);
    let mut moments: Vec<DateTime<Utc>> = [due.ends_at, due.renew_at, due.overlap_ends]
        .into_iter()
        .flatten()
        .filter(|at| *at > now)
        .collect();
    moments.sort();
    moments
        .into_iter()
        .map(|at| (at, urgency(due, at)))
        .find(|(_, then)| *then < current)
}

/// The bound shared by the credential controllers.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
}

#[derive(Debug)]
struct Waiter {
    id: ObjectId,
    due: Due,
    /// When its urgency rises by the clock alone (its key in `rising`).
    rises_at: Option<DateTime<Utc>>,
    tx: oneshot::Sender<Permit>,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// The next place in line: a waiter keeps its place when its urgency changes.
    next: u64,
    /// Waiters by urgency (most urgent first), each in the order they came.
    waiting: [BTreeMap<u64, Waiter>; 3],
    /// Where each object's waiter stands.
    places: HashMap<ObjectId, (Urgency, u64)>,
    /// When a waiter's urgency rises by the clock alone.
    rising: BTreeMap<(DateTime<Utc>, u64), ()>,
}

impl State {
    fn queue(&mut self, urgency: Urgency) -> &mut BTreeMap<u64, Waiter> {
        let [withdraw, rotate, refresh] = &mut self.waiting;
        match urgency {
            Urgency::Withdraw => withdraw,
            Urgency::Rotate => rotate,
            Urgency::Refresh => refresh,
        }
    }

    fn queue_ref(&self, urgency: Urgency) -> &BTreeMap<u64, Waiter> {
        let [withdraw, rotate, refresh] = &self.waiting;
        match urgency {
            Urgency::Withdraw => withdraw,
            Urgency::Rotate => rotate,
            Urgency::Refresh => refresh,
        }
    }

    /// Puts the waiter at `place` where its urgency at `now` says, and notes when that
    /// rises next.
    fn place(&mut self, place: u64, mut waiter: Waiter, now: DateTime<Utc>) {
        let urgency = urgency(&waiter.due, now);
        waiter.rises_at = rises(&waiter.due, now).map(|(at, _)| at);
        if let Some(at) = waiter.rises_at {
            self.rising.insert((at, place), ());
        }
        self.places.insert(waiter.id.clone(), (urgency, place));
        self.queue(urgency).insert(place, waiter);
    }

    fn take(&mut self, urgency: Urgency, place: u64) -> Option<Waiter> {
        let waiter = self.queue(urgency).remove(&place)?;
        if let Some(at) = waiter.rises_at {
            self.rising.remove(&(at, place));
        }
        if self
            .places
            .get(&waiter.id)
            .is_some_and(|(_, p)| *p == place)
        {
            self.places.remove(&waiter.id);
        }
        Some(waiter)
    }

    /// Waiters whose moment came are decided again.
    fn rise(&mut self, now: DateTime<Utc>) {
        while let Some(&(at, place)) = self.rising.keys().next() {
            if at > now {
                break;
            }
            self.rising.remove(&(at, place));
            let found = Urgency::ALL.into_iter().find_map(|u| self.take(u, place));
            if let Some(waiter) = found {
                self.place(place, waiter, now);
            }
        }
    }
}

/// A pass's place among the `--concurrency` that do work at once; handed to the next
/// waiter when dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Option<Arc<Gate>>,
}

impl Gate {
    /// A gate that admits `capacity` passes at once (at least one).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: capacity.max(1),
                next: 0,
                waiting: Default::default(),
                places: HashMap::new(),
                rising: BTreeMap::new(),
            }),
        })
    }

    /// Waits until the pass of `id` may run: at once while fewer than the capacity run,
    /// otherwise after every more urgent waiter and every earlier one of its urgency.
    pub async fn admit(self: &Arc<Self>, id: ObjectId, due: Due) -> Permit {
        let admitted = {
            let mut state = lock(&self.state);
            if state.free > 0 {
                state.free -= 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                let place = state.next;
                state.next += 1;
                let waiter = Waiter {
                    id,
                    due,
                    rises_at: None,
                    tx,
                };
                state.place(place, waiter, Utc::now());
                Some(rx)
            }
        };
        match admitted {
            None => Permit {
                gate: Some(self.clone()),
            },
            // The queue is dropped only with the gate, which this caller holds.
            Some(rx) => rx.await.unwrap_or(Permit { gate: None }),
        }
    }

    /// Whether a pass of `id` waits (one that went away, its pass cancelled, does not:
    /// it is only cleared once its turn comes, and must not hold back new requests).
    pub fn waits(&self, id: &ObjectId) -> bool {
        let state = lock(&self.state);
        state.places.get(id).is_some_and(|&(urgency, place)| {
            state
                .queue_ref(urgency)
                .get(&place)
                .is_some_and(|waiter| !waiter.tx.is_closed())
        })
    }

    /// Decides the urgency of `id`'s waiting pass again, from what its object and what it
    /// depends on say now; it keeps its place among the waiters of its new urgency.
    pub fn redecide(&self, id: &ObjectId, due: Due) {
        let mut state = lock(&self.state);
        let Some(&(urgency, place)) = state.places.get(id) else {
            return;
        };
        if let Some(mut waiter) = state.take(urgency, place) {
            waiter.due = due;
            state.place(place, waiter, Utc::now());
        }
    }

    /// Passes waiting, by urgency.
    pub fn waiting(&self) -> [(Urgency, usize); 3] {
        let state = lock(&self.state);
        Urgency::ALL.map(|u| (u, state.queue_ref(u).len()))
    }

    fn release(self: &Arc<Self>) {
        let mut state = lock(&self.state);
        state.rise(Utc::now());
        for urgency in Urgency::ALL {
            while let Some(place) = state.queue_ref(urgency).keys().next().copied() {
                let Some(waiter) = state.take(urgency, place) else {
                    continue;
                };
                match waiter.tx.send(Permit {
                    gate: Some(self.clone()),
                }) {
                    Ok(()) => return,
                    // That waiter went away (its pass was cancelled): the next one.
                    Err(mut unwanted) => drop(unwanted.gate.take()),
                }
            }
        }
        state.free += 1;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_served_value_its_lifecycle_ends_is_withdrawn_first() {
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        let served = Due {
            served: true,
            active: true,
            renew_at: Some(now + hour),
            ..Due::default()
        };
        assert_eq!(urgency(&served, now), Urgency::Refresh);
        // Expired, revoked, suspended: the lifecycle no longer lets it be served.
        let ended = Due {
            active: false,
            ..served.clone()
        };
        assert_eq!(urgency(&ended, now), Urgency::Withdraw);
        // Its rotation is due as well: the withdrawal still decides.
        let ended_and_due = Due {
            renew_at: Some(now - hour),
            ..ended.clone()
        };
        assert_eq!(urgency(&ended_and_due, now), Urgency::Withdraw);
        let overlap_over = Due {
            overlap_ends: Some(now),
            ..served.clone()
        };
        assert_eq!(urgency(&overlap_over, now), Urgency::Withdraw);
        let overlap_open = Due {
            overlap_ends: Some(now + hour),
            ..served.clone()
        };
        assert_eq!(urgency(&overlap_open, now), Urgency::Refresh);
        let deleting = Due {
            deleting: true,
            ..Due::default()
        };
        assert_eq!(urgency(&deleting, now), Urgency::Withdraw);
    }

    #[test]
    fn an_issue_a_due_rotation_or_a_request_comes_next_and_nothing_due_last() {
        let now = Utc::now();
        let hour = chrono::Duration::hours(1);
        let unissued = Due {
            active: true,
            ..Due::default()
        };
        assert_eq!(urgency(&unissued, now), Urgency::Rotate);
        let due = Due {
            served: true,
            active: true,
            renew_at: Some(now - hour),
            ..Due::default()
        };
        assert_eq!(urgency(&due, now), Urgency::Rotate);
        let requested = Due {
            renew_at: Some(now + hour),
            requested: true,
            ..due.clone()
        };
        assert_eq!(urgency(&requested, now), Urgency::Rotate);
        // Never served and not to be: nothing to withdraw or issue.
        let invalid = Due::default();
        assert_eq!(urgency(&invalid, now), Urgency::Refresh);
    }

    /// Starts a waiter that records its name once admitted and holds its permit until
    /// told to let go.
    fn waiter(
        gate: &Arc<Gate>,
        urgency: Urgency,
        name: &'static str,
        order: &tokio::sync::mpsc::UnboundedSender<&'static str>,
    ) -> (tokio::task::JoinHandle<()>, oneshot::Sender<()>) {
        waiter_due(gate, due_of(urgency), name, order)
    }

    /// What a pass of this urgency is decided from.
    fn due_of(urgency: Urgency) -> Due {
        match urgency {
            Urgency::Withdraw => Due {
                deleting: true,
                ..Due::default()
            },
            Urgency::Rotate => Due {
                active: true,
                ..Due::default()
            },
            Urgency::Refresh => Due::default(),
        }
    }

    fn id(name: &str) -> ObjectId {
        ("ApiKey", Some("ns".into()), name.into())
    }

    fn waiter_due(
        gate: &Arc<Gate>,
        due: Due,
        name: &'static str,
        order: &tokio::sync::mpsc::UnboundedSender<&'static str>,
    ) -> (tokio::task::JoinHandle<()>, oneshot::Sender<()>) {
        let (done_tx, done_rx) = oneshot::channel();
        let (gate, order) = (gate.clone(), order.clone());
        let task = tokio::spawn(async move {
            let _permit = gate.admit(id(name), due).await;
            order.send(name).ok();
            done_rx.await.ok();
        });
        (task, done_tx)
    }

    async fn queued(gate: &Gate, n: usize) {
        while gate.waiting().iter().map(|(_, n)| n).sum::<usize>() < n {
            tokio::task::yield_now().await;
        }
    }

    /// Lets each admitted pass finish in turn and returns the order the gate ran them in.
    async fn run_in_turn(
        mut release: std::collections::HashMap<&'static str, oneshot::Sender<()>>,
        order: &mut tokio::sync::mpsc::UnboundedReceiver<&'static str>,
        first: &'static str,
        n: usize,
    ) -> Vec<&'static str> {
        let mut ran = Vec::new();
        let mut finishing = first;
        while ran.len() < n {
            if let Some(done) = release.remove(finishing) {
                done.send(()).ok();
            }
            match order.recv().await {
                Some(name) => {
                    ran.push(name);
                    finishing = name;
                }
                None => break,
            }
        }
        ran
    }

    #[test]
    fn the_urgency_rises_when_a_served_value_ends_or_its_rotation_comes() {
        let now = Utc::now();
        let minute = chrono::Duration::minutes(1);
        let served = Due {
            served: true,
            active: true,
            renew_at: Some(now + minute),
            ends_at: Some(now + minute * 2),
            ..Due::default()
        };
        assert_eq!(urgency(&served, now), Urgency::Refresh);
        assert_eq!(rises(&served, now), Some((now + minute, Urgency::Rotate)));
        assert_eq!(
            rises(&served, now + minute),
            Some((now + minute * 2, Urgency::Withdraw))
        );
        assert_eq!(urgency(&served, now + minute * 2), Urgency::Withdraw);
        assert_eq!(rises(&served, now + minute * 2), None);
        // Expiring before its rotation: straight to a withdrawal.
        let expiring_first = Due {
            ends_at: Some(now + minute),
            renew_at: Some(now + minute * 2),
            ..served.clone()
        };
        assert_eq!(
            rises(&expiring_first, now),
            Some((now + minute, Urgency::Withdraw))
        );
        // Nothing served, nothing to serve: nothing rises.
        assert_eq!(rises(&Due::default(), now), None);
    }

    #[tokio::test]
    async fn a_waiting_rotation_revoked_meanwhile_goes_first() {
        let gate = Gate::new(1);
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let (_, busy) = waiter(&gate, Urgency::Refresh, "running", &order_tx);
        assert_eq!(order.recv().await, Some("running"));
        let mut release = std::collections::HashMap::from([("running", busy)]);
        let served = Due {
            served: true,
            active: true,
            requested: true,
            ..Due::default()
        };
        for (n, name) in ["rotate a", "rotate b", "rotate c"].into_iter().enumerate() {
            let (_, done) = waiter_due(&gate, served.clone(), name, &order_tx);
            release.insert(name, done);
            queued(&gate, n + 1).await;
        }
        assert!(gate.waits(&id("rotate c")));
        assert!(!gate.waits(&id("elsewhere")));
        // Its integration is suspended while it waits: the value is to be withdrawn.
        gate.redecide(
            &id("rotate c"),
            Due {
                active: false,
                ..served.clone()
            },
        );
        assert_eq!(gate.waiting()[0], (Urgency::Withdraw, 1));
        let ran = run_in_turn(release, &mut order, "running", 3).await;
        assert_eq!(ran, ["rotate c", "rotate a", "rotate b"]);
    }

    #[tokio::test]
    async fn a_waiting_pass_whose_value_expires_meanwhile_goes_first() {
        let gate = Gate::new(1);
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let (_, busy) = waiter(&gate, Urgency::Refresh, "running", &order_tx);
        assert_eq!(order.recv().await, Some("running"));
        let mut release = std::collections::HashMap::from([("running", busy)]);
        let (_, done) = waiter(&gate, Urgency::Rotate, "rotate a", &order_tx);
        release.insert("rotate a", done);
        queued(&gate, 1).await;
        let ends_at = Utc::now() + chrono::Duration::milliseconds(20);
        let expiring = Due {
            served: true,
            active: true,
            ends_at: Some(ends_at),
            ..Due::default()
        };
        let (_, done) = waiter_due(&gate, expiring, "expires", &order_tx);
        release.insert("expires", done);
        queued(&gate, 2).await;
        assert_eq!(gate.waiting()[2], (Urgency::Refresh, 1));
        // Its expiry passes while it waits; the next pass to be admitted is decided after.
        while Utc::now() <= ends_at {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let ran = run_in_turn(release, &mut order, "running", 2).await;
        assert_eq!(ran, ["expires", "rotate a"]);
    }

    #[tokio::test]
    async fn withdrawals_go_before_earlier_rotations_and_rotations_before_refreshes() {
        let gate = Gate::new(1);
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let (_, busy) = waiter(&gate, Urgency::Refresh, "running", &order_tx);
        assert_eq!(order.recv().await, Some("running"));

        let mut release = std::collections::HashMap::from([("running", busy)]);
        let arrivals = [
            (Urgency::Refresh, "refresh 1"),
            (Urgency::Rotate, "rotate 1"),
            (Urgency::Rotate, "rotate 2"),
            (Urgency::Withdraw, "expire 1"),
            (Urgency::Refresh, "refresh 2"),
            (Urgency::Withdraw, "revoke 2"),
        ];
        for (n, (urgency, name)) in arrivals.into_iter().enumerate() {
            let (_, done) = waiter(&gate, urgency, name, &order_tx);
            release.insert(name, done);
            queued(&gate, n + 1).await;
        }
        // Each admitted pass finishes in turn; the order they ran in is the gate's.
        let ran = run_in_turn(release, &mut order, "running", 6).await;
        assert_eq!(
            ran,
            [
                "expire 1",
                "revoke 2",
                "rotate 1",
                "rotate 2",
                "refresh 1",
                "refresh 2"
            ]
        );
    }

    #[tokio::test]
    async fn no_more_than_the_capacity_run_at_once() {
        let gate = Gate::new(2);
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let (_, first) = waiter(&gate, Urgency::Rotate, "a", &order_tx);
        let (_, _second) = waiter(&gate, Urgency::Rotate, "b", &order_tx);
        let (_, _third) = waiter(&gate, Urgency::Withdraw, "c", &order_tx);
        let mut admitted = vec![order.recv().await, order.recv().await];
        admitted.sort();
        assert_eq!(admitted, [Some("a"), Some("b")]);
        // The third waits (it is in the queue, and said nothing) until one of the two ends.
        queued(&gate, 1).await;
        assert!(order.try_recv().is_err(), "a third pass ran beside two");
        first.send(()).ok();
        assert_eq!(order.recv().await, Some("c"));
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_does_not_keep_its_place() {
        let gate = Gate::new(1);
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let (_, busy) = waiter(&gate, Urgency::Rotate, "running", &order_tx);
        assert_eq!(order.recv().await, Some("running"));
        let (cancelled, _keep) = waiter(&gate, Urgency::Withdraw, "cancelled", &order_tx);
        queued(&gate, 1).await;
        let (_, _after) = waiter(&gate, Urgency::Refresh, "after", &order_tx);
        queued(&gate, 2).await;
        assert!(gate.waits(&id("cancelled")));
        cancelled.abort();
        let _ = cancelled.await;
        // Gone, it no longer counts as waiting, though its place is cleared only later.
        assert!(!gate.waits(&id("cancelled")));
        busy.send(()).ok();
        assert_eq!(order.recv().await, Some("after"));
    }
}
