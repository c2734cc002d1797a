//! Tenant and PartnerIntegration status on the real control plane, and their effect on
//! credentials: effective state along the parent chain, counts, namespace conflicts,
//! broken parent chains, integration expiry and loss of an integration's owner.

mod support;

use std::time::Duration;

use keyward::api::{
    ApiKey, CredentialState, IntegrationState, PartnerIntegration, Tenant, TenantState,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::Operator;
use support::{TestEnv, wait_for};

const T: Duration = Duration::from_secs(30);

async fn create_tenant(env: &TestEnv, name: &str, spec: Value) {
    support::create(&Api::<Tenant>::all(env.client.clone()), name, spec).await;
}

async fn create_key(env: &TestEnv, name: &str, spec: Value) {
    support::create(
        &Api::<ApiKey>::namespaced(env.client.clone(), &env.ns),
        name,
        spec,
    )
    .await;
}

fn ready(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> (String, String, String) {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

async fn delete_tenants(env: &TestEnv, names: &[&str]) {
    let api = Api::<Tenant>::all(env.client.clone());
    for name in names {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
}

#[tokio::test]
async fn a_suspended_parent_suspends_its_children_and_counts_follow() {
    let env = TestEnv::new("cascade").await;
    let (parent, child) = (format!("p-{}", env.ns), format!("c-{}", env.ns));
    create_tenant(
        &env,
        &parent,
        json!({"owners": [{"name": "carol", "kind": "User"}]}),
    )
    .await;
    create_tenant(&env, &child, json!({"parent": parent, "namespaces": [env.ns], "owners": [{"name": "alice", "kind": "User"}]})).await;
    let _op = Operator::start(&env.ns).await;
    create_key(&env, "a", json!({"tenant": child, "owner": "alice"})).await;
    create_key(&env, "b", json!({"tenant": child, "owner": "alice"})).await;
    let tenants = Api::<Tenant>::all(env.client.clone());
    let t = wait_for(
        &tenants,
        &child,
        "counting 2 active keys",
        T,
        |t: &Tenant| {
            t.status
                .as_ref()
                .and_then(|s| s.credentials)
                .is_some_and(|c| c.total == 2 && c.active == 2)
        },
    )
    .await;
    assert_eq!(t.status.unwrap().effective_state, Some(TenantState::Active));

    tenants
        .patch(
            &parent,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"state": "Suspended"}})),
        )
        .await
        .unwrap();
    let keys = Api::<ApiKey>::namespaced(env.client.clone(), &env.ns);
    for name in ["a", "b"] {
        let k = wait_for(&keys, name, "Revoked", T, |k: &ApiKey| {
            k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Revoked)
        })
        .await;
        let (_, reason, message) = ready(&k.status.unwrap().conditions, "Ready");
        assert_eq!(reason, "TenantSuspended");
        assert!(
            message.contains(&parent),
            "the message names the tenant that set the state: {message}"
        );
    }
    let t = wait_for(
        &tenants,
        &child,
        "Suspended with 2 revoked",
        T,
        |t: &Tenant| {
            t.status.as_ref().is_some_and(|s| {
                s.effective_state == Some(TenantState::Suspended)
                    && s.credentials
                        .is_some_and(|c| c.revoked == 2 && c.active == 0)
            })
        },
    )
    .await;
    assert_eq!(ready(&t.status.unwrap().conditions, "Ready").0, "True");
    delete_tenants(&env, &[&parent, &child]).await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_namespace_listed_by_two_tenants_is_owned_by_neither() {
    let env = TestEnv::new("conflict").await;
    let (a, b) = (format!("a-{}", env.ns), format!("b-{}", env.ns));
    for t in [&a, &b] {
        create_tenant(
            &env,
            t,
            json!({"namespaces": [env.ns], "owners": [{"name": "alice", "kind": "User"}]}),
        )
        .await;
    }
    let _op = Operator::start(&env.ns).await;
    create_key(&env, "k", json!({"tenant": a, "owner": "alice"})).await;
    let tenants = Api::<Tenant>::all(env.client.clone());
    for t in [&a, &b] {
        let t = wait_for(&tenants, t, "NamespaceConflict", T, |t: &Tenant| {
            t.status
                .as_ref()
                .is_some_and(|s| ready(&s.conditions, "Ready").1 == "NamespaceConflict")
        })
        .await;
        let (status, _, message) = ready(&t.status.unwrap().conditions, "Ready");
        assert_eq!(status, "False");
        assert!(message.contains(&env.ns), "{message}");
    }
    let keys = Api::<ApiKey>::namespaced(env.client.clone(), &env.ns);
    let k = wait_for(&keys, "k", "Invalid", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Invalid)
    })
    .await;
    let conditions = k.status.unwrap().conditions;
    assert_eq!(ready(&conditions, "Ready").1, "NamespaceNotOwned");
    assert_eq!(ready(&conditions, "CrossTenant").0, "True");

    // Resolving the conflict makes the key valid again.
    tenants
        .patch(
            &b,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"namespaces": []}})),
        )
        .await
        .unwrap();
    wait_for(&keys, "k", "Active", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Active)
    })
    .await;
    delete_tenants(&env, &[&a, &b]).await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_missing_parent_is_reported_and_refuses_credentials() {
    let env = TestEnv::new("orphan").await;
    let t = format!("t-{}", env.ns);
    create_tenant(&env, &t, json!({"parent": "no-such-parent", "namespaces": [env.ns], "owners": [{"name": "alice", "kind": "User"}]})).await;
    let _op = Operator::start(&env.ns).await;
    create_key(&env, "k", json!({"tenant": t, "owner": "alice"})).await;
    let tenants = Api::<Tenant>::all(env.client.clone());
    let got = wait_for(&tenants, &t, "InvalidParent", T, |t: &Tenant| {
        t.status
            .as_ref()
            .is_some_and(|s| ready(&s.conditions, "Ready").1 == "InvalidParent")
    })
    .await;
    assert!(
        ready(&got.status.unwrap().conditions, "Ready")
            .2
            .contains("no-such-parent")
    );
    let keys = Api::<ApiKey>::namespaced(env.client.clone(), &env.ns);
    let k = wait_for(&keys, "k", "Invalid", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Invalid)
    })
    .await;
    assert_eq!(
        ready(&k.status.unwrap().conditions, "Ready").1,
        "InvalidParent"
    );
    delete_tenants(&env, &[&t]).await;
    env.cleanup().await;
}

#[tokio::test]
async fn an_integration_reports_its_state_and_loses_its_owner_after_the_grace_period() {
    let env = TestEnv::new("integration").await;
    let t = format!("t-{}", env.ns);
    create_tenant(&env, &t, json!({"namespaces": [env.ns], "endsAt": "2031-01-01T00:00:00Z",
        "owners": [{"name": "alice", "kind": "User"}, {"name": "bob", "kind": "User"}], "policy": {"ownerGracePeriod": "3s"}}))
    .await;
    let _op = Operator::start(&env.ns).await;
    let pis = Api::<PartnerIntegration>::namespaced(env.client.clone(), &env.ns);
    let object: PartnerIntegration = serde_json::from_value(json!({
        "apiVersion": "keyward.io/v1alpha1", "kind": "PartnerIntegration", "metadata": {"name": "pi"},
        "spec": {"tenant": t, "owner": "bob", "partner": {"name": "Globex"}, "expiresAt": "2032-01-01T00:00:00Z"},
    }))
    .unwrap();
    pis.create(&PostParams::default(), &object).await.unwrap();
    create_key(&env, "k", json!({"integration": "pi", "owner": "alice"})).await;
    let pi = wait_for(
        &pis,
        "pi",
        "Active with one credential",
        T,
        |p: &PartnerIntegration| {
            p.status.as_ref().is_some_and(|s| {
                s.state == Some(IntegrationState::Active) && s.credentials == Some(1)
            })
        },
    )
    .await;
    let status = pi.status.unwrap();
    assert_eq!(
        status
            .expires_at
            .map(|t| keyward::policy::format_time(t.0))
            .as_deref(),
        Some("2031-01-01T00:00:00Z"),
        "the tenant's endsAt is earlier than the integration's own expiry"
    );
    assert_eq!(ready(&status.conditions, "OwnerBound").0, "True");

    // bob leaves the tenant: the integration's credentials are revoked after the grace period.
    Api::<Tenant>::all(env.client.clone())
        .patch(
            &t,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"owners": [{"name": "alice", "kind": "User"}]}})),
        )
        .await
        .unwrap();
    let pi = wait_for(
        &pis,
        "pi",
        "Suspended for its missing owner",
        T,
        |p: &PartnerIntegration| {
            p.status
                .as_ref()
                .is_some_and(|s| s.state == Some(IntegrationState::Suspended))
        },
    )
    .await;
    assert_eq!(
        ready(&pi.status.unwrap().conditions, "Ready").1,
        "OwnerMissing"
    );
    let keys = Api::<ApiKey>::namespaced(env.client.clone(), &env.ns);
    let k = wait_for(&keys, "k", "Revoked", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Revoked)
    })
    .await;
    let (_, reason, message) = ready(&k.status.unwrap().conditions, "Ready");
    assert_eq!(reason, "OwnerMissing");
    assert!(message.contains("integration pi"), "{message}");
    delete_tenants(&env, &[&t]).await;
    env.cleanup().await;
}
