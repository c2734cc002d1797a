//! Admission of credential passes by urgency: at most `--concurrency` passes of ApiKeys
//! and ServiceAccountCredentials do work at once, and when more are due, a pass that
//! withdraws a value (an expiry, a revocation, the end of an overlap) goes first, then one
//! that issues or rotates, then the rest (status refreshes, the passes woken by the
//! operator's own writes). Within one urgency, passes go in the order they came.
//!
//! A waiting pass holds only its object and a place in the queue: the pass itself is
//! built once it is admitted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

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
    /// When the served value is next rotated (or a token refreshed).
    pub renew_at: Option<DateTime<Utc>>,
    /// When the previous value's overlap ends, while one is open.
    pub overlap_ends: Option<DateTime<Utc>>,
    /// A rotation request (`keyward.io/rotate`) stands unanswered.
    pub requested: bool,
}

/// The urgency of a pass: withdrawing a served value (its lifecycle no longer lets it be
/// served, its overlap ended, or its object is going) before issuing or rotating one, and
/// both before anything else.
pub fn urgency(due: &Due, now: DateTime<Utc>) -> Urgency {
    let passed = |at: Option<DateTime<Utc>>| at.is_some_and(|at| at <= now);
    if due.deleting || (due.served && !due.active) || passed(due.overlap_ends) {
        Urgency::Withdraw
    } else if due.active && (!due.served || due.requested || passed(due.renew_at)) {
        Urgency::Rotate
    } else {
        Urgency::Refresh
    }
}

/// The bound shared by the credential controllers.
#[derive(Debug)]
pub struct Gate {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Waiters by urgency, most urgent first.
    waiting: [(Urgency, VecDeque<oneshot::Sender<Permit>>); 3],
}

impl State {
    fn queue(&mut self, urgency: Urgency) -> &mut VecDeque<oneshot::Sender<Permit>> {
        let [withdraw, rotate, refresh] = &mut self.waiting;
        match urgency {
            Urgency::Withdraw => &mut withdraw.1,
            Urgency::Rotate => &mut rotate.1,
            Urgency::Refresh => &mut refresh.1,
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
                waiting: Urgency::ALL.map(|u| (u, VecDeque::new())),
            }),
        })
    }

    /// Waits until a pass of this urgency may run: at once while fewer than the capacity
    /// run, otherwise after every more urgent waiter and every earlier one of its urgency.
    pub async fn admit(self: &Arc<Self>, urgency: Urgency) -> Permit {
        let admitted = {
            let mut state = lock(&self.state);
            if state.free > 0 {
                state.free -= 1;
                None
            } else {
                let (tx, rx) = oneshot::channel();
                state.queue(urgency).push_back(tx);
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

    /// Passes waiting, by urgency.
    pub fn waiting(&self) -> [(Urgency, usize); 3] {
        let state = lock(&self.state);
        state.waiting.each_ref().map(|(u, queue)| (*u, queue.len()))
    }

    fn release(self: &Arc<Self>) {
        let mut state = lock(&self.state);
        for (_, queue) in state.waiting.iter_mut() {
            while let Some(waiter) = queue.pop_front() {
                match waiter.send(Permit {
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
        let (done_tx, done_rx) = oneshot::channel();
        let (gate, order) = (gate.clone(), order.clone());
        let task = tokio::spawn(async move {
            let _permit = gate.admit(urgency).await;
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
        let mut ran = Vec::new();
        let mut finishing = "running";
        while ran.len() < 6 {
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
        cancelled.abort();
        let _ = cancelled.await;
        busy.send(()).ok();
        assert_eq!(order.recv().await, Some("after"));
    }
}
