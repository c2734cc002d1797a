//! Unit and property tests of the decision logic, on objects built in memory.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::json;

use super::api_key::{KeyAction, RotationInput, SecretState, Served, plan};
use super::credential::{
    CredentialInput, CredentialSpec, IntegrationFacts, OwnerBinding, PriorOwner, decide, reason,
};
use super::tenancy::{NamespaceOwner, Tenancy};
use crate::api::{CredentialState, Tenant, TenantState};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
}

fn tenant(value: serde_json::Value) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "keyward.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": value["name"]},
        "spec": value["spec"],
    }))
    .unwrap()
}

fn acme() -> Tenant {
    tenant(json!({"name": "acme", "spec": {
        "namespaces": ["acme-prod"],
        "owners": [{"name": "alice", "kind": "User"}],
    }}))
}

fn world(tenants: &[Tenant]) -> Tenancy {
    Tenancy::new(tenants)
}

fn spec(tenant: &str, owner: &str) -> CredentialSpec {
    CredentialSpec {
        tenant: Some(tenant.into()),
        owner: Some(owner.into()),
        ..Default::default()
    }
}

fn input<'a>(
    spec: &'a CredentialSpec,
    tenancy: &'a Tenancy,
    now: DateTime<Utc>,
) -> CredentialInput<'a> {
    CredentialInput {
        namespace: "acme-prod",
        generation: 1,
        spec,
        integration: None,
        tenancy,
        observed_generation: None,
        renewed_at: None,
        prior_owner: PriorOwner::default(),
        now,
    }
}

// --- tenancy -----------------------------------------------------------------------------

#[test]
fn state_cascades_down_and_the_most_severe_wins() {
    let parent = tenant(
        json!({"name": "holding", "spec": {"owners": [{"name": "c", "kind": "User"}], "state": "Suspended"}}),
    );
    let child = tenant(
        json!({"name": "acme", "spec": {"parent": "holding", "owners": [{"name": "a", "kind": "User"}], "state": "Active"}}),
    );
    let t = world(&[parent, child]);
    let resolved = t.resolve("acme").unwrap();
    assert_eq!(resolved.state, TenantState::Suspended);
    assert_eq!(resolved.state_set_by, "holding");
}

#[test]
fn policy_takes_the_strictest_value_along_the_chain() {
    let parent = tenant(
        json!({"name": "holding", "spec": {"owners": [{"name": "c", "kind": "User"}],
        "policy": {"maxLifetime": "720h", "requireExpiry": true, "ownerGracePeriod": "1h"}}}),
    );
    let child = tenant(
        json!({"name": "acme", "spec": {"parent": "holding", "owners": [{"name": "a", "kind": "User"}],
        "policy": {"maxLifetime": "2160h", "maxRotationInterval": "24h", "requireExpiry": false}}}),
    );
    let p = world(&[parent, child]).resolve("acme").unwrap().policy;
    assert_eq!(p.max_lifetime, Some(Duration::hours(720)));
    assert_eq!(p.max_rotation_interval, Some(Duration::hours(24)));
    assert!(p.require_expiry);
    assert_eq!(p.owner_grace_period, Duration::hours(1));
    assert_eq!(p.stale_after, Duration::hours(2160));
}

#[test]
fn ends_at_in_the_past_means_offboarded() {
    let t = world(&[tenant(
        json!({"name": "acme", "spec": {"owners": [{"name": "a", "kind": "User"}], "endsAt": "2026-11-23T10:00:00Z"}}),
    )]);
    let r = t.resolve("acme").unwrap();
    assert_eq!(r.state_at(t0() - Duration::seconds(1)), TenantState::Active);
    assert_eq!(r.state_at(t0()), TenantState::Offboarded);
}

#[test]
fn parent_cycles_and_missing_parents_are_reported() {
    let a = tenant(
        json!({"name": "a", "spec": {"parent": "b", "owners": [{"name": "x", "kind": "User"}]}}),
    );
    let b = tenant(
        json!({"name": "b", "spec": {"parent": "a", "owners": [{"name": "x", "kind": "User"}]}}),
    );
    let c = tenant(
        json!({"name": "c", "spec": {"parent": "nobody", "owners": [{"name": "x", "kind": "User"}]}}),
    );
    let t = world(&[a, b, c]);
    assert_eq!(t.resolve("a").unwrap_err().reason(), "InvalidParent");
    assert_eq!(t.resolve("c").unwrap_err().reason(), "InvalidParent");
    assert_eq!(t.resolve("zzz").unwrap_err().reason(), "TenantNotFound");
}

#[test]
fn a_namespace_listed_twice_is_owned_by_neither() {
    let other = tenant(
        json!({"name": "globex", "spec": {"namespaces": ["acme-prod"], "owners": [{"name": "g", "kind": "User"}]}}),
    );
    let t = world(&[acme(), other]);
    assert_eq!(
        t.namespace_owner("acme-prod"),
        NamespaceOwner::Conflict(vec!["acme".into(), "globex".into()])
    );
    let d = super::tenant::decide(&t, "acme", t0());
    assert!(!d.ready.status);
    assert_eq!(d.ready.reason, "NamespaceConflict");
}

// --- credential lifecycle ----------------------------------------------------------------

#[test]
fn a_valid_key_is_active_and_bound_to_its_owner() {
    let t = world(&[acme()]);
    let s = spec("acme", "alice");
    let l = decide(&input(&s, &t, t0()));
    assert_eq!(l.state, CredentialState::Active);
    assert!(l.owner_bound.status);
    assert_eq!(l.owner_binding, Some(OwnerBinding::Bound));
}

#[test]
fn refusals_name_the_rule() {
    let t = world(&[acme()]);
    let cases = [
        (
            spec("acme", "mallory"),
            "acme-prod",
            reason::OWNER_NOT_IN_TENANT,
        ),
        (
            spec("acme", "alice"),
            "elsewhere",
            reason::NAMESPACE_NOT_OWNED,
        ),
        (
            spec("nobody", "alice"),
            "acme-prod",
            reason::TENANT_NOT_FOUND,
        ),
    ];
    for (s, ns, why) in cases {
        let mut i = input(&s, &t, t0());
        i.namespace = ns;
        let l = decide(&i);
        assert_eq!(
            (l.state, l.reason.as_str()),
            (CredentialState::Invalid, why)
        );
    }
    let s = CredentialSpec {
        integration: Some("gone".into()),
        ..spec("acme", "alice")
    };
    let mut i = input(&s, &t, t0());
    i.integration = Some(None);
    assert_eq!(decide(&i).reason, reason::INTEGRATION_NOT_FOUND);
}

#[test]
fn require_expiry_refuses_a_credential_without_any_deadline() {
    let strict = tenant(json!({"name": "acme", "spec": {"namespaces": ["acme-prod"],
        "owners": [{"name": "alice", "kind": "User"}], "policy": {"requireExpiry": true}}}));
    let t = world(&[strict]);
    let s = spec("acme", "alice");
    assert_eq!(decide(&input(&s, &t, t0())).reason, reason::EXPIRY_REQUIRED);
    let s = CredentialSpec {
        expires_at: Some(t0() + Duration::days(1)),
        ..spec("acme", "alice")
    };
    assert_eq!(decide(&input(&s, &t, t0())).state, CredentialState::Active);
}

#[test]
fn suspension_revokes_and_names_the_cause() {
    let suspended = tenant(json!({"name": "acme", "spec": {"namespaces": ["acme-prod"],
        "owners": [{"name": "alice", "kind": "User"}], "state": "Suspended"}}));
    let t = world(&[suspended]);
    let s = spec("acme", "alice");
    let l = decide(&input(&s, &t, t0()));
    assert_eq!(
        (l.state, l.reason.as_str()),
        (CredentialState::Revoked, reason::TENANT_SUSPENDED)
    );

    let t = world(&[acme()]);
    let pi = IntegrationFacts {
        name: "globex".into(),
        tenant: "acme".into(),
        owner: "alice".into(),
        expires_at: None,
        suspended: true,
        owner_binding: Some(OwnerBinding::Bound),
    };
    let s = CredentialSpec {
        integration: Some("globex".into()),
        tenant: None,
        owner: None,
        ..Default::default()
    };
    let mut i = input(&s, &t, t0());
    i.integration = Some(Some(&pi));
    let l = decide(&i);
    assert_eq!(
        (l.state, l.reason.as_str()),
        (CredentialState::Revoked, reason::INTEGRATION_SUSPENDED)
    );
    assert_eq!(
        l.owner.as_deref(),
        Some("alice"),
        "owner defaults to the integration's"
    );
}

#[test]
fn each_deadline_expires_the_credential_and_is_named() {
    let t0 = t0();
    let ends = tenant(json!({"name": "acme", "spec": {"namespaces": ["acme-prod"],
        "owners": [{"name": "alice", "kind": "User"}], "endsAt": "2026-11-23T12:00:00Z",
        "policy": {"maxLifetime": "3h"}}}));
    let t = world(&[ends]);
    let pi = IntegrationFacts {
        name: "globex".into(),
        tenant: "acme".into(),
        owner: "alice".into(),
        expires_at: Some(t0 + Duration::minutes(30)),
        suspended: false,
        owner_binding: Some(OwnerBinding::Bound),
    };
    let cases: [(Option<DateTime<Utc>>, bool, &str); 4] = [
        (Some(t0 + Duration::minutes(10)), true, "its own expiresAt"),
        (None, true, "integration globex's expiresAt"),
        (None, false, "tenant acme's endsAt"),
        (None, false, "maxLifetime"),
    ];
    for (own, with_pi, named) in cases {
        let s = CredentialSpec {
            expires_at: own,
            integration: with_pi.then(|| "globex".to_owned()),
            ..spec("acme", "alice")
        };
        let mut i = input(&s, &t, t0);
        if with_pi {
            i.integration = Some(Some(&pi));
        }
        // maxLifetime (3h) counts from a renewal 4 hours ago, so it is the earliest deadline.
        if named == "maxLifetime" {
            i.observed_generation = Some(1);
            i.renewed_at = Some(t0 - Duration::hours(4));
        }
        let at = decide(&i).expiry.expect("a deadline applies").at;
        let mut later = i.clone();
        later.now = at;
        let l = decide(&later);
        assert_eq!(l.state, CredentialState::Expired, "{named}");
        assert!(l.message.contains(named), "{named}: {}", l.message);
        later.now = at - Duration::seconds(1);
        assert_eq!(decide(&later).state, CredentialState::Active, "{named}");
    }
}

#[test]
fn a_spec_change_renews_max_lifetime_and_time_alone_does_not() {
    let t = world(&[tenant(
        json!({"name": "acme", "spec": {"namespaces": ["acme-prod"],
        "owners": [{"name": "alice", "kind": "User"}], "policy": {"maxLifetime": "1h"}}}),
    )]);
    let s = spec("acme", "alice");
    let mut i = input(&s, &t, t0());
    i.observed_generation = Some(1);
    i.renewed_at = Some(t0() - Duration::hours(2));
    assert_eq!(decide(&i).state, CredentialState::Expired);
    i.generation = 2;
    let l = decide(&i);
    assert_eq!(l.state, CredentialState::Active);
    assert_eq!(l.renewed_at, t0());
}

#[test]
fn rotation_interval_is_clamped_by_policy() {
    let t = world(&[tenant(
        json!({"name": "acme", "spec": {"namespaces": ["acme-prod"],
        "owners": [{"name": "alice", "kind": "User"}], "policy": {"maxRotationInterval": "24h"}}}),
    )]);
    let s = CredentialSpec {
        rotation_every: Some(Duration::hours(720)),
        ..spec("acme", "alice")
    };
    let l = decide(&input(&s, &t, t0()));
    assert_eq!(l.rotation_every, Some(Duration::hours(24)));
    assert!(!l.policy_compliant.status);
}

#[test]
fn an_owner_who_leaves_is_revoked_at_the_end_of_the_grace_period() {
    let t_with = world(&[acme()]);
    let without = tenant(json!({"name": "acme", "spec": {"namespaces": ["acme-prod"],
        "owners": [{"name": "bob", "kind": "User"}], "policy": {"ownerGracePeriod": "1h"}}}));
    let t_without = world(&[without]);
    let s = spec("acme", "alice");
    let bound = decide(&input(&s, &t_with, t0()));
    let prior = PriorOwner {
        owner: bound.owner.clone(),
        binding: bound.owner_binding,
    };
    let mut i = input(&s, &t_without, t0());
    i.prior_owner = prior;
    let first = decide(&i);
    assert_eq!(first.state, CredentialState::Active);
    assert_eq!(
        first.owner_binding,
        Some(OwnerBinding::Missing { since: t0() })
    );
    assert_eq!(first.next_due, Some(t0() + Duration::hours(1)));

    i.prior_owner = PriorOwner {
        owner: first.owner.clone(),
        binding: first.owner_binding,
    };
    i.now = t0() + Duration::hours(1) - Duration::seconds(1);
    assert_eq!(decide(&i).state, CredentialState::Active);
    i.now = t0() + Duration::hours(1);
    let l = decide(&i);
    assert_eq!(
        (l.state, l.reason.as_str()),
        (CredentialState::Revoked, reason::OWNER_MISSING)
    );
}

// --- ApiKey plan -------------------------------------------------------------------------

fn active(
    t: &Tenancy,
    every: Option<Duration>,
    now: DateTime<Utc>,
) -> super::credential::Lifecycle {
    let s = CredentialSpec {
        rotation_every: every,
        ..spec("acme", "alice")
    };
    decide(&input(&s, t, now))
}

fn served(version: i64, rotated_at: DateTime<Utc>) -> Served {
    Served {
        version,
        fingerprint: "sha256:0000000000000000".into(),
        issued_at: t0(),
        rotated_at,
        previous_valid_until: None,
        rotation_request: None,
    }
}

#[test]
fn a_first_issue_is_version_one() {
    let t = world(&[acme()]);
    let p = plan(
        active(&t, None, t0()),
        &SecretState::Absent,
        &RotationInput::default(),
        t0(),
    );
    assert_eq!(p.action, KeyAction::Issue { version: 1 });
    assert_eq!(p.next_due, None);
}

#[test]
fn rotation_keeps_the_previous_value_until_the_overlap_ends() {
    let t = world(&[acme()]);
    let every = Duration::hours(1);
    let now = t0() + every;
    let rot = RotationInput {
        overlap: Duration::minutes(10),
        last_version: Some(1),
        ..Default::default()
    };
    let p = plan(
        active(&t, Some(every), now),
        &SecretState::Ours(served(1, t0())),
        &rot,
        now,
    );
    let until = now + Duration::minutes(10);
    assert_eq!(
        p.action,
        KeyAction::Rotate {
            version: 2,
            previous_valid_until: Some(until),
            manual: false
        }
    );
    assert_eq!(p.next_due, Some(until));

    let mut after = served(2, now);
    after.previous_valid_until = Some(until);
    let p = plan(
        active(&t, Some(every), until),
        &SecretState::Ours(after),
        &rot,
        until,
    );
    assert_eq!(p.action, KeyAction::DropPrevious);
    assert_eq!(p.next_due, Some(now + every));
}

#[test]
fn a_rotate_annotation_value_rotates_once() {
    let t = world(&[acme()]);
    let rot = RotationInput {
        rotate_annotation: Some("2026-11-23T10:05:00Z"),
        last_version: Some(1),
        ..Default::default()
    };
    let now = t0() + Duration::minutes(5);
    let p = plan(
        active(&t, None, now),
        &SecretState::Ours(served(1, t0())),
        &rot,
        now,
    );
    assert!(matches!(
        p.action,
        KeyAction::Rotate {
            version: 2,
            manual: true,
            ..
        }
    ));
    let mut after = served(2, now);
    after.rotation_request = Some("2026-11-23T10:05:00Z".into());
    let p = plan(active(&t, None, now), &SecretState::Ours(after), &rot, now);
    assert_eq!(p.action, KeyAction::None);
}

#[test]
fn a_foreign_secret_is_a_conflict_and_is_left_alone() {
    let t = world(&[acme()]);
    let p = plan(
        active(&t, None, t0()),
        &SecretState::Foreign,
        &RotationInput::default(),
        t0(),
    );
    assert_eq!(p.action, KeyAction::None);
    assert_eq!(p.lifecycle.reason, reason::SECRET_CONFLICT);
}

#[test]
fn a_conflicted_key_still_comes_due_at_its_expiry() {
    let t = world(&[acme()]);
    let expires = t0() + Duration::hours(2);
    let s = CredentialSpec {
        expires_at: Some(expires),
        ..spec("acme", "alice")
    };
    let lifecycle = decide(&input(&s, &t, t0()));
    let p = plan(
        lifecycle,
        &SecretState::Foreign,
        &RotationInput::default(),
        t0(),
    );
    assert_eq!(p.lifecycle.reason, reason::SECRET_CONFLICT);
    assert_eq!(p.next_due, Some(expires));
    // Once past it, the conflict gives way to the expiry, and the foreign Secret is kept.
    let later = expires + Duration::seconds(1);
    let p = plan(
        decide(&input(&s, &t, later)),
        &SecretState::Foreign,
        &RotationInput::default(),
        later,
    );
    assert_eq!(p.lifecycle.state, CredentialState::Expired);
    assert_eq!(p.action, KeyAction::None);
    let p = plan(
        decide(&input(&s, &t, t0())),
        &SecretState::Absent,
        &RotationInput::default(),
        t0(),
    );
    let p = super::api_key::vault_unavailable(p, &SecretState::Absent, t0());
    assert_eq!(p.next_due, Some(expires));
}

#[test]
fn a_rotation_due_during_an_overlap_waits_for_its_end() {
    let t = world(&[acme()]);
    let now = t0() + Duration::minutes(5);
    let until = t0() + Duration::minutes(30);
    let mut current = served(2, t0());
    current.previous_valid_until = Some(until);
    let rot = RotationInput {
        overlap: Duration::minutes(30),
        rotate_annotation: Some("now"),
        last_version: Some(2),
        ..Default::default()
    };
    let p = plan(
        active(&t, Some(Duration::hours(1)), now),
        &SecretState::Ours(current.clone()),
        &rot,
        now,
    );
    assert_eq!(p.action, KeyAction::None, "the previous value was promised");
    assert_eq!(p.next_due, Some(until));
    assert_eq!(p.next_rotation_at, Some(until));
    assert!(
        p.lifecycle.message.contains("waits until"),
        "{}",
        p.lifecycle.message
    );
    let p = plan(
        active(&t, Some(Duration::hours(1)), until),
        &SecretState::Ours(current),
        &rot,
        until,
    );
    assert_eq!(
        p.action,
        KeyAction::Rotate {
            version: 3,
            previous_valid_until: Some(until + Duration::minutes(30)),
            manual: true
        }
    );
}

#[test]
fn an_overlap_longer_than_the_effective_interval_is_clamped_to_it() {
    let t = world(&[acme()]);
    let every = Duration::minutes(10);
    let now = t0() + every;
    let rot = RotationInput {
        overlap: Duration::hours(1),
        last_version: Some(1),
        ..Default::default()
    };
    let p = plan(
        active(&t, Some(every), now),
        &SecretState::Ours(served(1, t0())),
        &rot,
        now,
    );
    assert_eq!(
        p.action,
        KeyAction::Rotate {
            version: 2,
            previous_valid_until: Some(now + every),
            manual: false
        }
    );
    assert_eq!(p.lifecycle.policy_compliant.reason, reason::CLAMPED);
    // The next rotation falls when the overlap ends, so it never has to wait.
    assert_eq!(p.next_rotation_at, Some(now + every));
}

#[test]
fn a_value_the_status_does_not_record_yet_is_recorded_before_the_next_rotation() {
    let t = world(&[acme()]);
    let every = Duration::minutes(10);
    let now = t0() + every * 3;
    let unrecorded = RotationInput {
        last_version: Some(1),
        ..Default::default()
    };
    let p = plan(
        active(&t, Some(every), now),
        &SecretState::Ours(served(2, t0())),
        &unrecorded,
        now,
    );
    assert_eq!(p.action, KeyAction::None, "version 2 is recorded first");
    assert_eq!(p.served.as_ref().map(|s| s.version), Some(2));
    assert_eq!(
        p.next_due,
        Some(now + super::api_key::RECORD_RETRY),
        "looked at again soon, never in a busy loop (the status write brings it sooner)"
    );
    let recorded = RotationInput {
        last_version: Some(2),
        ..Default::default()
    };
    let p = plan(
        active(&t, Some(every), now),
        &SecretState::Ours(served(2, t0())),
        &recorded,
        now,
    );
    assert!(matches!(p.action, KeyAction::Rotate { version: 3, .. }));
}

#[test]
fn an_inactive_key_withdraws_its_value_and_reissues_with_a_higher_version() {
    let suspended = tenant(json!({"name": "acme", "spec": {"namespaces": ["acme-prod"],
        "owners": [{"name": "alice", "kind": "User"}], "state": "Suspended"}}));
    let t = world(&[suspended]);
    let p = plan(
        active(&t, None, t0()),
        &SecretState::Ours(served(3, t0())),
        &RotationInput::default(),
        t0(),
    );
    assert_eq!(p.action, KeyAction::Withdraw);
    let t = world(&[acme()]);
    let rot = RotationInput {
        last_version: Some(3),
        ..Default::default()
    };
    let p = plan(active(&t, None, t0()), &SecretState::Absent, &rot, t0());
    assert_eq!(p.action, KeyAction::Issue { version: 4 });
}

#[test]
fn a_vault_only_key_without_a_vault_store_is_never_served() {
    let t = world(&[acme()]);
    let p = plan(
        active(&t, None, t0()),
        &SecretState::Absent,
        &RotationInput::default(),
        t0(),
    );
    let p = super::api_key::vault_unavailable(p, &SecretState::Absent, t0());
    assert_eq!(p.action, KeyAction::None);
    assert_eq!(
        (p.lifecycle.state, p.lifecycle.reason.as_str()),
        (CredentialState::Pending, reason::VAULT_UNAVAILABLE)
    );
    let served = SecretState::Ours(served(2, t0()));
    let p = plan(
        active(&t, None, t0()),
        &served,
        &RotationInput::default(),
        t0(),
    );
    assert_eq!(
        super::api_key::vault_unavailable(p, &served, t0()).action,
        KeyAction::Withdraw
    );
}

proptest! {
    /// The effective expiry is never later than any deadline that applies.
    #[test]
    fn effective_expiry_is_never_later_than_any_deadline(
        own in proptest::option::of(0i64..10_000),
        pi in proptest::option::of(0i64..10_000),
        ends in proptest::option::of(0i64..10_000),
        max_lifetime in proptest::option::of(1i64..10_000),
        renewed_ago in 0i64..10_000,
    ) {
        let at = |m: i64| t0() + Duration::minutes(m);
        let mut tspec = json!({"namespaces": ["acme-prod"], "owners": [{"name": "alice", "kind": "User"}]});
        if let Some(e) = ends { tspec["endsAt"] = json!(super::format_time(at(e))); }
        if let Some(m) = max_lifetime { tspec["policy"] = json!({"maxLifetime": format!("{m}m")}); }
        let t = world(&[tenant(json!({"name": "acme", "spec": tspec}))]);
        let facts = IntegrationFacts {
            name: "globex".into(), tenant: "acme".into(), owner: "alice".into(),
            expires_at: pi.map(at), suspended: false, owner_binding: Some(OwnerBinding::Bound),
        };
        let s = CredentialSpec { expires_at: own.map(at), integration: Some("globex".into()), ..spec("acme", "alice") };
        let mut i = input(&s, &t, t0());
        i.integration = Some(Some(&facts));
        i.observed_generation = Some(1);
        i.renewed_at = Some(t0() - Duration::minutes(renewed_ago));
        let l = decide(&i);
        let renewed = t0() - Duration::minutes(renewed_ago);
        let deadlines: Vec<DateTime<Utc>> = [own.map(at), pi.map(at), ends.map(at), max_lifetime.map(|m| renewed + Duration::minutes(m))]
            .into_iter().flatten().collect();
        match l.expiry {
            None => prop_assert!(deadlines.is_empty()),
            Some(d) => {
                for deadline in &deadlines { prop_assert!(d.at <= *deadline); }
                prop_assert!(deadlines.contains(&d.at));
            }
        }
    }

    /// Replaying the plan at every instant never rotates twice for one due time: after a
    /// rotation, the next one is at least `every` later.
    #[test]
    fn at_most_one_rotation_per_due_time(
        every_s in 1i64..500,
        overlap_frac in 0.0f64..1.0,
        steps in proptest::collection::vec(0i64..400, 1..60),
    ) {
        let t = world(&[acme()]);
        let every = Duration::seconds(every_s);
        let overlap = Duration::milliseconds(((every_s * 1000) as f64 * overlap_frac) as i64);
        let rot = RotationInput { overlap, ..Default::default() };
        let mut state = served(1, t0());
        let mut now = t0();
        let mut rotations: Vec<DateTime<Utc>> = Vec::new();
        for step in steps {
            now += Duration::seconds(step);
            // Replaying the same instant twice (a reconcile after a crash) changes nothing more.
            for _ in 0..2 {
                let p = plan(active(&t, Some(every), now), &SecretState::Ours(state.clone()), &rot, now);
                match p.action {
                    KeyAction::Rotate { version, .. } => {
                        prop_assert_eq!(version, state.version + 1);
                        rotations.push(now);
                    }
                    KeyAction::Issue { .. } | KeyAction::Withdraw => prop_assert!(false, "unexpected {:?}", p.action),
                    _ => {}
                }
                let mut next = p.served.expect("an active key is served");
                next.fingerprint = state.fingerprint.clone();
                state = next;
            }
        }
        for pair in rotations.windows(2) {
            prop_assert!(pair[1] - pair[0] >= every);
        }
    }

    /// An owner who leaves is revoked exactly at the end of the grace period, not before.
    #[test]
    fn owner_loss_revokes_exactly_at_grace_end(grace_s in 1i64..100_000, probe in 0i64..200_000) {
        let gone = tenant(json!({"name": "acme", "spec": {"namespaces": ["acme-prod"],
            "owners": [{"name": "bob", "kind": "User"}], "policy": {"ownerGracePeriod": format!("{grace_s}s")}}}));
        let t = world(&[gone]);
        let s = spec("acme", "alice");
        let mut i = input(&s, &t, t0() + Duration::seconds(probe));
        i.prior_owner = PriorOwner { owner: Some("alice".into()), binding: Some(OwnerBinding::Missing { since: t0() }) };
        let l = decide(&i);
        if probe >= grace_s {
            prop_assert_eq!(l.state, CredentialState::Revoked);
        } else {
            prop_assert_eq!(l.state, CredentialState::Active);
            prop_assert_eq!(l.next_due, Some(t0() + Duration::seconds(grace_s)));
        }
    }
}

// --- hostile input -----------------------------------------------------------------------

/// Durations as a hostile spec may write them: huge, tiny, malformed, or ordinary.
fn any_duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,25}(ns|us|µs|ms|s|m|h)",
        "[0-9]{1,12}[.][0-9]{1,25}(ns|ms|s|m|h)",
        "([0-9]{1,8}(h|m|s)){1,6}",
        ".{0,40}",
        Just("99999999999999999999h".to_owned()),
        Just("876000h".to_owned()),
        Just("1ns".to_owned()),
        Just("0s".to_owned()),
    ]
}

/// Times anywhere chrono can hold them, including far outside the admitted years.
fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
    (
        DateTime::<Utc>::MIN_UTC.timestamp()..DateTime::<Utc>::MAX_UTC.timestamp(),
        0u32..1_000_000_000,
    )
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap_or(DateTime::UNIX_EPOCH))
}

fn hostile_tenant(
    name: String,
    parent: Option<String>,
    policy: [String; 4],
    ends_at: Option<DateTime<Utc>>,
) -> Tenant {
    let [max_lifetime, max_rotation, grace, stale] = policy;
    let namespaces: Vec<&str> = if name == "t0" {
        vec!["acme-prod"]
    } else {
        vec![]
    };
    let mut spec = json!({
        "namespaces": namespaces,
        "owners": [{"name": "alice", "kind": "User"}],
        "policy": {
            "maxLifetime": max_lifetime,
            "maxRotationInterval": max_rotation,
            "ownerGracePeriod": grace,
            "staleAfter": stale,
        },
    });
    if let Some(parent) = parent {
        spec["parent"] = json!(parent);
    }
    if let Some(ends_at) = ends_at {
        spec["endsAt"] = json!(ends_at);
    }
    tenant(json!({"name": name, "spec": spec}))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No duration text panics the parser, and what parses is within the bounds.
    #[test]
    fn durations_never_panic_and_stay_within_bounds(text in any_duration_text()) {
        if let Ok(d) = crate::api::GoDuration(text.clone()).parse() {
            prop_assert!(d >= Duration::zero(), "{text} parsed negative");
            prop_assert!(d <= Duration::hours(876_000), "{text} parsed beyond 876000h");
        }
    }

    /// Arbitrary policies, end dates, clocks and parent chains (cycles and missing
    /// parents included) never panic a decision, and an effective expiry is never later
    /// than the credential's own.
    #[test]
    fn hostile_tenancies_never_panic_a_decision(
        policies in proptest::collection::vec(proptest::array::uniform4(any_duration_text()), 1..6),
        parents in proptest::collection::vec(proptest::option::of(0usize..8), 1..6),
        ends in proptest::collection::vec(proptest::option::of(any_time()), 1..6),
        own_expiry in proptest::option::of(any_time()),
        every in proptest::option::of(any_duration_text()),
        renewed in proptest::option::of(any_time()),
        now in any_time(),
    ) {
        let tenants: Vec<Tenant> = policies
            .into_iter()
            .enumerate()
            .map(|(i, policy)| {
                let parent = parents.get(i).copied().flatten().map(|p| format!("t{p}"));
                hostile_tenant(format!("t{i}"), parent, policy, ends.get(i).copied().flatten())
            })
            .collect();
        let tenancy = Tenancy::new(&tenants);
        for t in &tenants {
            let name = t.metadata.name.clone().unwrap_or_default();
            let _ = super::tenant::decide(&tenancy, &name, now);
            let _ = tenancy.subtree(&name);
            let mut spec = spec(&name, "alice");
            spec.expires_at = own_expiry;
            // The credential lives in the namespace its tenant lists alone.
            if name != "t0" {
                continue;
            }
            spec.rotation_every = every
                .as_ref()
                .and_then(|e| crate::api::GoDuration(e.clone()).parse().ok());
            let mut input = input(&spec, &tenancy, now);
            input.renewed_at = renewed;
            input.observed_generation = renewed.map(|_| 1);
            let mut lifecycle = decide(&input);
            super::credential::apply_rotation_floor(&mut lifecycle, Duration::minutes(1));
            if let (Some(expiry), Some(own)) = (&lifecycle.expiry, own_expiry) {
                prop_assert!(expiry.at <= own);
            }
            if let Some(every) = lifecycle.rotation_every {
                prop_assert!(every >= Duration::minutes(1));
            }
            let served = SecretState::Ours(Served {
                version: i64::MAX,
                fingerprint: "sha256:0".into(),
                issued_at: now,
                rotated_at: renewed.unwrap_or(now),
                previous_valid_until: renewed,
                rotation_request: None,
            });
            let rotation = RotationInput {
                overlap: Duration::MAX,
                rotate_annotation: Some("x"),
                last_rotation_request: None,
                last_version: Some(i64::MAX),
            };
            let active = lifecycle.is_active();
            let planned = plan(lifecycle, &served, &rotation, now);
            if active {
                // A manual request on a hostile version number saturates, never wraps.
                prop_assert!(planned.served.is_some_and(|s| s.version == i64::MAX));
            }
        }
    }

    /// Removing and re-adding tenants one at a time gives the same index as building it
    /// from scratch.
    #[test]
    fn the_incremental_index_matches_a_rebuild(
        parents in proptest::collection::vec(proptest::option::of(0usize..6), 1..8),
        order in proptest::collection::vec(0usize..8, 0..16),
    ) {
        let tenants: Vec<Tenant> = parents
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut spec = json!({
                    "namespaces": [format!("ns{}", i % 3)],
                    "owners": [{"name": "alice", "kind": "User"}],
                });
                if let Some(p) = p {
                    spec["parent"] = json!(format!("t{p}"));
                }
                tenant(json!({"name": format!("t{i}"), "spec": spec}))
            })
            .collect();
        let mut incremental = Tenancy::new(&tenants);
        for i in &order {
            if let Some(t) = tenants.get(*i) {
                incremental.remove(&format!("t{i}"));
                incremental.apply(t);
            }
        }
        let rebuilt = Tenancy::new(&tenants);
        for i in 0..tenants.len() {
            let name = format!("t{i}");
            prop_assert_eq!(incremental.resolve(&name), rebuilt.resolve(&name));
            prop_assert_eq!(incremental.subtree(&name), rebuilt.subtree(&name));
            prop_assert_eq!(
                incremental.namespace_owner(&format!("ns{}", i % 3)),
                rebuilt.namespace_owner(&format!("ns{}", i % 3))
            );
        }
    }
}
