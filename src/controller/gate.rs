//! Admission of credential passes by urgency: at most `--concurrency` passes of ApiKeys
//! and ServiceAccountCredentials do work at once, and when more are due, a pass that
//! withdraws a value (an expiry, a revocation, the end of an overlap) goes first, then one
//! that issues or rotates, then the rest (status refreshes, the passes woken by the
//! operator's own writes). Within one urgency, passes go in the order they came.
//!
//! A waiting pass holds only its object's name, what its urgency was decided from, and a
//! place in the queue: kube-runtime is given the pass once there is room for it. A waiting
//! pass does not keep the urgency it came with: a change to what it depends on (its
//! object, its Tenant, its PartnerIntegration) decides it again (a second [`Gate::push`]),
//! and so does the time passing the moment it would become more urgent (its expiry, its
//! rotation), so a key that expires or is revoked while it waits behind a backlog of
//! rotations goes first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

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

/// The bound shared by the credential controllers, and the passes waiting for it.
///
/// Requests for credential passes come to [`Gate::push`] rather than to kube-runtime: a
/// waiting pass is a name in this queue, not a started future inside the controller's
/// runner (which polls every future it started on each wake, so 10,000 waiting passes
/// would cost 10,000 polls per finished pass). [`Gate::next`] hands out the most urgent
/// waiter whenever fewer than the capacity do work, and holds a ticket for it: the pass
/// takes its ticket ([`Gate::take_ticket`]) once kube-runtime starts it, and gives the
/// place back when it ends. A pass kube-runtime starts by itself (a requeue at its due
/// time, a retry after an error) runs at once while there is room and nobody waits
/// ([`Gate::try_admit`]), and otherwise takes its place in the queue.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Debug)]
struct Waiter {
    id: ObjectId,
    due: Due,
    /// When its urgency rises by the clock alone (its key in `rising`).
    rises_at: Option<DateTime<Utc>>,
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
    /// Passes handed out by [`Gate::next`] that have not started yet; each holds a place.
    tickets: HashSet<ObjectId>,
    /// Objects whose pass holds a place now. A request for one of them waits until that
    /// pass ends: kube-runtime would hold it back until then anyway, and a ticket handed
    /// out meanwhile would keep a place idle.
    running: HashSet<ObjectId>,
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
        self.places.remove(&waiter.id);
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

    fn nobody_waits(&self) -> bool {
        self.places.is_empty()
    }

    /// The most urgent waiter whose object has no pass running, if there is room for it;
    /// its place is held by a ticket.
    fn pop(&mut self, now: DateTime<Utc>) -> Option<ObjectId> {
        if self.free == 0 || self.nobody_waits() {
            return None;
        }
        self.rise(now);
        // At most as many waiters are passed over as there are passes running.
        let (urgency, place) = Urgency::ALL.into_iter().find_map(|urgency| {
            let place = self
                .queue_ref(urgency)
                .iter()
                .find(|(_, w)| !self.running.contains(&w.id))
                .map(|(place, _)| *place)?;
            Some((urgency, place))
        })?;
        let waiter = self.take(urgency, place)?;
        // A ticket not yet taken already holds a place for this object: kube-runtime
        // runs the two requests as one pass, which takes one ticket.
        if self.tickets.insert(waiter.id.clone()) {
            self.free -= 1;
        }
        Some(waiter.id)
    }
}

/// A pass's place among the `--concurrency` that do work at once; given back when dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
    id: ObjectId,
}

impl Gate {
    /// A gate that lets `capacity` passes do work at once (at least one).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: capacity.max(1),
                next: 0,
                waiting: Default::default(),
                places: HashMap::new(),
                rising: BTreeMap::new(),
                tickets: HashSet::new(),
                running: HashSet::new(),
            }),
            ready: Notify::new(),
        })
    }

    /// A pass of `id` is wanted: it waits behind every more urgent waiter and every earlier
    /// one of its urgency. One that already waits keeps its place, its urgency decided
    /// again from `due`, what its object and what it depends on say now.
    pub fn push(&self, id: ObjectId, due: Due) {
        let mut state = lock(&self.state);
        let now = Utc::now();
        let (place, waiter) = match state.places.get(&id).copied() {
            Some((urgency, place)) => match state.take(urgency, place) {
                Some(mut waiter) => {
                    waiter.due = due;
                    (place, waiter)
                }
                None => return,
            },
            None => {
                let place = state.next;
                state.next += 1;
                let waiter = Waiter {
                    id,
                    due,
                    rises_at: None,
                };
                (place, waiter)
            }
        };
        state.place(place, waiter, now);
        drop(state);
        self.ready.notify_one();
    }

    /// The next pass to start, once there is room for it: the most urgent waiter, decided
    /// at that moment. Its place is held until the pass takes its ticket (or is
    /// [forgotten](Gate::forget)). Meant for one caller at a time; cancel-safe.
    pub async fn next(&self) -> ObjectId {
        loop {
            if let Some(id) = lock(&self.state).pop(Utc::now()) {
                return id;
            }
            self.ready.notified().await;
        }
    }

    /// The place [`Gate::next`] held for the pass of `id`, if it did.
    pub fn take_ticket(self: &Arc<Self>, id: &ObjectId) -> Option<Permit> {
        let mut state = lock(&self.state);
        if !state.tickets.remove(id) {
            return None;
        }
        state.running.insert(id.clone());
        Some(Permit {
            gate: self.clone(),
            id: id.clone(),
        })
    }

    /// A place for a pass of `id` that did not come through the queue, if one is free and
    /// nobody waits for it.
    pub fn try_admit(self: &Arc<Self>, id: &ObjectId) -> Option<Permit> {
        let mut state = lock(&self.state);
        if state.free == 0 || !state.nobody_waits() {
            return None;
        }
        state.free -= 1;
        state.running.insert(id.clone());
        Some(Permit {
            gate: self.clone(),
            id: id.clone(),
        })
    }

    /// The pass handed out for `id` will not run (its object is gone): its place is free.
    pub fn forget(&self, id: &ObjectId) {
        let mut state = lock(&self.state);
        if state.tickets.remove(id) {
            state.free += 1;
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Whether a pass of `id` waits.
    #[cfg(test)]
    pub fn waits(&self, id: &ObjectId) -> bool {
        lock(&self.state).places.contains_key(id)
    }

    /// Passes waiting, by urgency.
    #[cfg(test)]
    pub fn waiting(&self) -> [(Urgency, usize); 3] {
        let state = lock(&self.state);
        Urgency::ALL.map(|u| (u, state.queue_ref(u).len()))
    }

    fn release(&self, id: &ObjectId) {
        let mut state = lock(&self.state);
        state.free += 1;
        state.running.remove(id);
        drop(state);
        self.ready.notify_one();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release(&self.id);
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
    use futures::FutureExt;

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

    /// A gate of capacity one, its place taken by a pass that came by itself.
    fn busy_gate() -> (Arc<Gate>, Permit) {
        let gate = Gate::new(1);
        let running = gate
            .try_admit(&id("by-itself"))
            .expect("an empty gate has room");
        (gate, running)
    }

    /// Lets the running pass and each one handed out after it finish in turn, and returns
    /// the order the gate handed them out in.
    fn run_in_turn(gate: &Arc<Gate>, running: Permit) -> Vec<String> {
        let mut ran = Vec::new();
        let mut running = Some(running);
        while let Some(finished) = running.take() {
            drop(finished);
            if let Some(next) = gate.next().now_or_never() {
                running = Some(gate.take_ticket(&next).expect("a ticket is held"));
                ran.push(next.2);
            }
        }
        ran
    }

    #[test]
    fn withdrawals_go_before_earlier_rotations_and_rotations_before_refreshes() {
        let (gate, running) = busy_gate();
        let arrivals = [
            (Urgency::Refresh, "refresh 1"),
            (Urgency::Rotate, "rotate 1"),
            (Urgency::Rotate, "rotate 2"),
            (Urgency::Withdraw, "expire 1"),
            (Urgency::Refresh, "refresh 2"),
            (Urgency::Withdraw, "revoke 2"),
        ];
        for (urgency, name) in arrivals {
            gate.push(id(name), due_of(urgency));
        }
        assert!(
            gate.next().now_or_never().is_none(),
            "handed out with no room"
        );
        assert_eq!(
            run_in_turn(&gate, running),
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

    #[test]
    fn a_waiting_rotation_revoked_meanwhile_goes_first() {
        let (gate, running) = busy_gate();
        let served = Due {
            served: true,
            active: true,
            requested: true,
            ..Due::default()
        };
        for name in ["rotate a", "rotate b", "rotate c"] {
            gate.push(id(name), served.clone());
        }
        assert!(gate.waits(&id("rotate c")));
        assert!(!gate.waits(&id("elsewhere")));
        // Its integration is suspended while it waits: the value is to be withdrawn. It
        // is asked for again, and still waits once.
        gate.push(
            id("rotate c"),
            Due {
                active: false,
                ..served.clone()
            },
        );
        assert_eq!(
            gate.waiting(),
            [
                (Urgency::Withdraw, 1),
                (Urgency::Rotate, 2),
                (Urgency::Refresh, 0)
            ]
        );
        assert_eq!(
            run_in_turn(&gate, running),
            ["rotate c", "rotate a", "rotate b"]
        );
    }

    #[test]
    fn a_waiting_pass_whose_value_expires_meanwhile_goes_first() {
        let (gate, running) = busy_gate();
        gate.push(id("rotate a"), due_of(Urgency::Rotate));
        let ends_at = Utc::now() + chrono::Duration::milliseconds(20);
        let expiring = Due {
            served: true,
            active: true,
            ends_at: Some(ends_at),
            ..Due::default()
        };
        gate.push(id("expires"), expiring);
        assert_eq!(gate.waiting()[2], (Urgency::Refresh, 1));
        // Its expiry passes while it waits; the next pass is decided after.
        while Utc::now() <= ends_at {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(run_in_turn(&gate, running), ["expires", "rotate a"]);
    }

    #[test]
    fn no_more_than_the_capacity_do_work_at_once() {
        let gate = Gate::new(2);
        for name in ["a", "b", "c"] {
            gate.push(id(name), due_of(Urgency::Rotate));
        }
        let first = gate.next().now_or_never().expect("room for two");
        let second = gate.next().now_or_never().expect("room for two");
        assert_eq!([first.2.as_str(), second.2.as_str()], ["a", "b"]);
        // Neither has started yet: their tickets hold the two places.
        assert!(gate.next().now_or_never().is_none(), "a third beside two");
        assert!(
            gate.try_admit(&id("by-itself")).is_none(),
            "a pass by itself beside two"
        );
        let a = gate.take_ticket(&first).expect("a ticket for a");
        let _b = gate.take_ticket(&second).expect("a ticket for b");
        assert!(gate.take_ticket(&first).is_none(), "a ticket taken twice");
        assert!(gate.next().now_or_never().is_none(), "a third beside two");
        drop(a);
        assert_eq!(gate.next().now_or_never().map(|id| id.2), Some("c".into()));
    }

    #[test]
    fn a_pass_by_itself_runs_at_once_only_while_there_is_room_and_nobody_waits() {
        let gate = Gate::new(2);
        let one = gate.try_admit(&id("by-itself")).expect("room");
        gate.push(id("waiting"), due_of(Urgency::Refresh));
        // A place is free, but a waiter was there first.
        assert!(gate.try_admit(&id("by-itself")).is_none());
        let waiting = gate.next().now_or_never().expect("room for the waiter");
        let _two = gate.take_ticket(&waiting).expect("its ticket");
        assert!(gate.try_admit(&id("by-itself")).is_none(), "full");
        drop(one);
        assert!(gate.try_admit(&id("by-itself")).is_some());
    }

    #[test]
    fn a_pass_handed_out_that_will_not_run_gives_its_place_back() {
        let gate = Gate::new(1);
        gate.push(id("deleted"), due_of(Urgency::Withdraw));
        gate.push(id("next"), due_of(Urgency::Rotate));
        let deleted = gate.next().now_or_never().expect("room");
        assert!(gate.next().now_or_never().is_none(), "full");
        // Its object left the store before kube-runtime started the pass.
        gate.forget(&deleted);
        assert_eq!(
            gate.next().now_or_never().map(|id| id.2),
            Some("next".into())
        );
        // Forgetting what holds no ticket frees nothing.
        gate.forget(&deleted);
        assert!(
            gate.try_admit(&id("by-itself")).is_none(),
            "a place freed twice"
        );
    }

    #[test]
    fn an_object_handed_out_again_before_its_pass_started_holds_one_place() {
        let gate = Gate::new(2);
        gate.push(id("a"), due_of(Urgency::Rotate));
        assert_eq!(gate.next().now_or_never(), Some(id("a")));
        // Changed again before kube-runtime started it: kube-runtime runs both as one.
        gate.push(id("a"), due_of(Urgency::Rotate));
        assert_eq!(gate.next().now_or_never(), Some(id("a")));
        let _a = gate.take_ticket(&id("a")).expect("one ticket");
        assert!(
            gate.try_admit(&id("by-itself")).is_some(),
            "the second place is free"
        );
    }

    #[test]
    fn an_object_whose_pass_runs_waits_for_it_to_end_and_holds_no_place_meanwhile() {
        let gate = Gate::new(2);
        let running = gate.try_admit(&id("a")).expect("room");
        // Its own write woke it, and an expiry of another key is due behind it.
        gate.push(id("a"), due_of(Urgency::Withdraw));
        gate.push(id("b"), due_of(Urgency::Rotate));
        assert_eq!(
            gate.next().now_or_never(),
            Some(id("b")),
            "the free place goes to b, not to a second pass of a"
        );
        let _b = gate.take_ticket(&id("b")).expect("b's ticket");
        assert!(gate.next().now_or_never().is_none(), "full");
        drop(running);
        assert_eq!(
            gate.next().now_or_never(),
            Some(id("a")),
            "a goes next, once its pass ended"
        );
    }
}
