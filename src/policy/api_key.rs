//! What to do with an ApiKey's served value at time `t`: issue, rotate, end the overlap,
//! withdraw, or nothing; and when the next thing is due.

use chrono::{DateTime, Duration, Utc};

use super::credential::{Lifecycle, reason};
use crate::api::CredentialState;

/// What the Secret that serves a key says about it (its keyward annotations). The Secret is
/// the record of what has been done: a rotation is one write of the whole Secret, so after a
/// crash the next reconcile reads what happened from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub version: i64,
    pub fingerprint: String,
    /// First issue of this lineage of values.
    pub issued_at: DateTime<Utc>,
    /// When the current value was written.
    pub rotated_at: DateTime<Utc>,
    /// Until when the previous value is served, while it is.
    pub previous_valid_until: Option<DateTime<Utc>>,
    /// The `keyward.io/rotate` value the current value answered, if any.
    pub rotation_request: Option<String>,
}

/// The Secret of that name, as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretState {
    Absent,
    /// Controlled by this ApiKey.
    Ours(Served),
    /// Exists and is not controlled by this ApiKey: never touched.
    Foreign,
}

/// The write to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyAction {
    None,
    /// Write a first value (a new lineage).
    Issue {
        version: i64,
    },
    /// Write a new value and keep the current one as previous until `previous_valid_until`.
    Rotate {
        version: i64,
        previous_valid_until: Option<DateTime<Utc>>,
        manual: bool,
    },
    /// The overlap is over: stop serving the previous value.
    DropPrevious,
    /// No value may be served: delete the Secret.
    Withdraw,
}

/// The rotation inputs of an ApiKey besides its lifecycle.
#[derive(Clone, Debug, Default)]
pub struct RotationInput<'a> {
    pub overlap: Duration,
    /// Current value of the `keyward.io/rotate` annotation.
    pub rotate_annotation: Option<&'a str>,
    /// `status.lastRotationRequest`.
    pub last_rotation_request: Option<&'a str>,
    /// `status.version` (survives withdrawal, so versions never go back).
    pub last_version: Option<i64>,
}

/// The decision for one ApiKey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPlan {
    pub lifecycle: Lifecycle,
    pub action: KeyAction,
    /// The served state once `action` is done (`None`: nothing served).
    pub served: Option<Served>,
    pub next_rotation_at: Option<DateTime<Utc>>,
    /// The rotation request the served value answers, to record in status.
    pub last_rotation_request: Option<String>,
    /// When to look again, if nothing else happens first.
    pub next_due: Option<DateTime<Utc>>,
}

/// Plans the served value. A rotation is due at `rotated_at + every`, or once for each new
/// value of the rotate annotation; at most one rotation happens per decision, and a due
/// time is consumed by the rotation that writes a newer `rotated_at`.
pub fn plan(
    mut lifecycle: Lifecycle,
    secret: &SecretState,
    rotation: &RotationInput<'_>,
    now: DateTime<Utc>,
) -> KeyPlan {
    let request = rotation.rotate_annotation.map(str::to_owned);
    let mut out = KeyPlan {
        action: KeyAction::None,
        served: None,
        next_rotation_at: None,
        last_rotation_request: rotation.last_rotation_request.map(str::to_owned),
        next_due: None,
        lifecycle: lifecycle.clone(),
    };

    if let SecretState::Foreign = secret {
        if lifecycle.is_active() {
            lifecycle.state = CredentialState::Pending;
            lifecycle.reason = reason::SECRET_CONFLICT.to_owned();
            lifecycle.message =
                "a Secret of that name exists and is not controlled by this ApiKey; it is left untouched"
                    .to_owned();
        }
        // The expiry still comes due: a conflicted key turns Expired on time.
        out.next_due = lifecycle.next_due.map(|due| due.max(now));
        out.lifecycle = lifecycle;
        return out;
    }

    if !lifecycle.is_active() {
        if let SecretState::Ours(_) = secret {
            out.action = KeyAction::Withdraw;
        }
        return out;
    }

    let every = lifecycle.rotation_every;
    // An overlap may not outlast the interval: the previous value's promised end would
    // otherwise fall after the next rotation, which would have to break it.
    let mut overlap = rotation.overlap;
    if let Some(every) = every
        && overlap > every
    {
        let note = format!(
            "rotation.overlap {} is longer than the effective rotation interval, so the previous value is served for {}",
            super::format_duration(overlap),
            super::format_duration(every)
        );
        lifecycle.policy_compliant = super::credential::clamped(&lifecycle.policy_compliant, note);
        overlap = every;
    }
    out.lifecycle = lifecycle.clone();
    let served = match secret {
        SecretState::Ours(served) => served.clone(),
        _ => {
            let version = rotation.last_version.unwrap_or(0).saturating_add(1);
            out.action = KeyAction::Issue { version };
            // A new lineage answers whatever rotation request stands.
            out.last_rotation_request = request.or(out.last_rotation_request);
            let served = Served {
                version,
                fingerprint: String::new(),
                issued_at: now,
                rotated_at: now,
                previous_valid_until: None,
                rotation_request: out.last_rotation_request.clone(),
            };
            return finish(out, served, every, now);
        }
    };

    let answered = |r: &String| {
        Some(r.as_str()) == served.rotation_request.as_deref()
            || Some(r.as_str()) == rotation.last_rotation_request
    };
    let manual = request.as_ref().is_some_and(|r| !answered(r));
    let scheduled = every.is_some_and(|every| super::later(served.rotated_at, every) <= now);
    // The previous value was promised until `previous_valid_until`: a rotation now would
    // replace it early, so a rotation that comes due during an overlap waits for its end.
    let overlap_open = served.previous_valid_until.filter(|until| *until > now);
    if let (true, Some(until)) = (manual || scheduled, overlap_open) {
        out.lifecycle.message = format!(
            "{}; a {} rotation waits until {}, when the previous value's overlap ends",
            out.lifecycle.message,
            if manual { "requested" } else { "scheduled" },
            super::format_time(until)
        );
        if served.rotation_request.is_some() {
            out.last_rotation_request = served.rotation_request.clone();
        }
        let mut waiting = finish(out, served, every, now);
        waiting.next_rotation_at = Some(until);
        return waiting;
    }
    // A value the status does not record yet (a pass died or failed after writing it) is
    // recorded, and so announced, before the next one replaces it: no version goes
    // unannounced, and its consumers are restarted for it.
    let unrecorded = rotation.last_version.is_none_or(|v| v < served.version);
    if (manual || scheduled) && !unrecorded {
        let previous_valid_until = (overlap > Duration::zero()).then(|| super::later(now, overlap));
        let version = served
            .version
            .max(rotation.last_version.unwrap_or(0))
            .saturating_add(1);
        out.action = KeyAction::Rotate {
            version,
            previous_valid_until,
            manual,
        };
        if manual {
            out.last_rotation_request = request.clone();
        }
        let next = Served {
            version,
            fingerprint: String::new(),
            issued_at: served.issued_at,
            rotated_at: now,
            previous_valid_until,
            rotation_request: if manual {
                request
            } else {
                served.rotation_request.clone()
            },
        };
        return finish(out, next, every, now);
    }

    let mut next = served.clone();
    if served
        .previous_valid_until
        .is_some_and(|until| until <= now)
    {
        out.action = KeyAction::DropPrevious;
        next.previous_valid_until = None;
    }
    if served.rotation_request.is_some() {
        out.last_rotation_request = served.rotation_request.clone();
    }
    let mut planned = finish(out, next, every, now);
    if manual || scheduled {
        // The rotation waits for this pass's status write, whose watch event brings the
        // next pass at once; looking again a moment later covers a store that lags (a
        // watch re-listing after an API server restart), never a busy loop.
        planned.next_due = Some(super::later(now, RECORD_RETRY));
    }
    planned
}

/// How soon a rotation that waits for its predecessor to be recorded is looked at again
/// if no watch event comes first.
pub const RECORD_RETRY: Duration = Duration::seconds(1);

/// A key whose value would live in Vault only, with no Vault store configured: serve
/// nothing rather than claim a value exists, and withdraw a Secret served before.
pub fn vault_unavailable(mut plan: KeyPlan, secret: &SecretState, now: DateTime<Utc>) -> KeyPlan {
    if !plan.lifecycle.is_active() {
        return plan;
    }
    plan.lifecycle.state = CredentialState::Pending;
    plan.lifecycle.reason = reason::VAULT_UNAVAILABLE.to_owned();
    plan.lifecycle.message =
        "spec.secret.enabled is false (Vault only), and keyward has no Vault store configured"
            .to_owned();
    plan.action = match secret {
        SecretState::Ours(_) => KeyAction::Withdraw,
        _ => KeyAction::None,
    };
    plan.served = None;
    plan.next_rotation_at = None;
    // The expiry still comes due.
    plan.next_due = plan.lifecycle.next_due.map(|due| due.max(now));
    plan
}

fn finish(
    mut out: KeyPlan,
    served: Served,
    every: Option<Duration>,
    now: DateTime<Utc>,
) -> KeyPlan {
    out.next_rotation_at = every.map(|every| super::later(served.rotated_at, every));
    out.next_due = super::earliest_time([
        out.lifecycle.next_due,
        out.next_rotation_at,
        served.previous_valid_until,
    ])
    .map(|due| due.max(now));
    out.served = Some(served);
    out
}
