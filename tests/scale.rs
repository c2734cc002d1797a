//! The cost of a change follows what it affects, on the real control plane: with 300
//! Tenants in one parent chain and 1,000 flat Tenants around the test's tenant, a change
//! to one Tenant costs requests in proportion to the objects it affects, and no object
//! makes the controller write more often than its `--min-rotation-interval`.

mod support;

use std::time::Duration;

use futures::{StreamExt, stream};
use keyward::api::{ApiKey, CredentialState, Tenant};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::fault;
use support::operator::Operator;
use support::{TestEnv, wait_for};

const T: Duration = Duration::from_secs(60);

/// The operator's request count once it has sent nothing for `quiet`.
async fn settled(op: &Operator, quiet: Duration) -> f64 {
    fault::total(&fault::settled_requests(op, quiet, T).await)
}

async fn create_tenants(client: &kube::Client, tenants: Vec<(String, serde_json::Value)>) {
    let api: Api<Tenant> = Api::all(client.clone());
    stream::iter(tenants)
        .for_each_concurrent(32, |(name, spec)| {
            let api = api.clone();
            async move {
                support::create(&api, &name, spec).await;
            }
        })
        .await;
}

async fn delete_tenants(client: &kube::Client, names: Vec<String>) {
    let api: Api<Tenant> = Api::all(client.clone());
    stream::iter(names)
        .for_each_concurrent(32, |name| {
            let api = api.clone();
            async move {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
        })
        .await;
}

async fn patch_tenant(client: &kube::Client, name: &str, spec: serde_json::Value) {
    let patch = json!({"apiVersion": "keyward.io/v1alpha1", "kind": "Tenant", "spec": spec});
    Api::<Tenant>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("keyward-test"),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap_or_else(|err| panic!("patching tenant {name}: {err}"));
}

#[tokio::test]
async fn one_tenant_change_costs_requests_in_proportion_to_what_it_affects() {
    let env = TestEnv::new("scale").await;
    let owners = json!([{"name": "alice", "kind": "User"}]);
    let chain: Vec<String> = (0..300).map(|i| format!("c{i}-{}", env.ns)).collect();
    let flat: Vec<String> = (0..1000).map(|i| format!("f{i}-{}", env.ns)).collect();
    let mut tenants: Vec<(String, serde_json::Value)> = chain
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut spec = json!({"owners": owners});
            if let Some(parent) = i.checked_sub(1).and_then(|p| chain.get(p)) {
                spec["parent"] = json!(parent);
            }
            (name.clone(), spec)
        })
        .collect();
    tenants.extend(flat.iter().map(|n| (n.clone(), json!({"owners": owners}))));
    create_tenants(&env.client, tenants).await;
    // The test's tenant hangs at the bottom of the chain and owns the namespace.
    let leaf = support::create_tenant(&env, json!({"parent": chain.last()})).await;
    let op = Operator::start(&env.ns).await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    for i in 0..10 {
        support::create(
            &keys,
            &format!("k{i}"),
            json!({"tenant": leaf, "owner": "alice"}),
        )
        .await;
    }
    for i in 0..10 {
        wait_for(&keys, &format!("k{i}"), "Active", T, |k: &ApiKey| {
            k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Active)
        })
        .await;
    }
    let quiet = Duration::from_secs(2);

    // An unrelated tenant among 1,300 changes: nothing of this instance is affected.
    let before = settled(&op, quiet).await;
    patch_tenant(&env.client, &flat[500], json!({"displayName": "renamed"})).await;
    let unrelated = settled(&op, quiet).await - before;

    // The root of the chain changes in a way that alters nothing below it: the tenant and
    // its ten keys are looked at again, and nothing is written.
    let before = settled(&op, quiet).await;
    patch_tenant(&env.client, &chain[0], json!({"displayName": "holding"})).await;
    let cosmetic = settled(&op, quiet).await - before;

    // The root is suspended: the tenant's state and its ten keys change.
    let before = settled(&op, quiet).await;
    patch_tenant(&env.client, &chain[0], json!({"state": "Suspended"})).await;
    for i in 0..10 {
        wait_for(&keys, &format!("k{i}"), "Revoked", T, |k: &ApiKey| {
            k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Revoked)
        })
        .await;
    }
    let suspended = settled(&op, quiet).await - before;
    eprintln!(
        "requests for one Tenant change among 1,300 (300 chained): unrelated {unrelated}, \
         cosmetic root change {cosmetic}, root suspended {suspended} (11 objects affected)"
    );

    // 11 affected objects (the tenant, ten keys); a revocation is a delete, a status write
    // and an Event per key, and the tenant's status. The Secret is read from the operator's
    // own watch; a GET only for a pass that runs before the watch shows the key's own
    // deletion, and a credential re-read when its store copy predates its own status
    // write: measured 51, at most 6 per object.
    assert_eq!(unrelated, 0.0, "an unrelated tenant's change cost requests");
    assert!(
        cosmetic <= 11.0 * 2.0,
        "a cosmetic change cost {cosmetic} requests"
    );
    assert!(
        suspended <= 11.0 * 6.0,
        "suspending the root cost {suspended} requests"
    );

    drop(op);
    let mut all = chain;
    all.extend(flat);
    all.push(leaf);
    delete_tenants(&env.client, all).await;
    env.cleanup().await;
}

#[tokio::test]
async fn no_key_rotates_more_often_than_the_write_floor() {
    let env = TestEnv::new("floor").await;
    let tenant = support::create_tenant(&env, json!({})).await;
    let op = Operator::start_with(&env.ns, &["--min-rotation-interval=5s"]).await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    support::create(
        &keys,
        "fast",
        json!({"tenant": tenant, "owner": "alice", "rotation": {"every": "1s"}}),
    )
    .await;
    let key = wait_for(&keys, "fast", "Active", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Active)
    })
    .await;
    let status = key.status.unwrap_or_default();
    let (rotated, next) = (
        status.last_rotated_at.expect("lastRotatedAt").0,
        status.next_rotation_at.expect("nextRotationAt").0,
    );
    assert_eq!(next - rotated, chrono::Duration::seconds(5));
    let compliant = status
        .conditions
        .iter()
        .find(|c| c.type_ == "PolicyCompliant")
        .expect("PolicyCompliant");
    assert_eq!(
        (compliant.status.as_str(), compliant.reason.as_str()),
        ("False", "Clamped")
    );
    assert!(compliant.message.contains("5s"), "{}", compliant.message);

    // Over 11 s, a key asking for 1 s rotates at most three times (issue + two).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let version = keys
        .get("fast")
        .await
        .ok()
        .and_then(|k| k.status)
        .and_then(|s| s.version)
        .unwrap_or_default();
    assert!(
        (2..=4).contains(&version),
        "version {version} after 11 s with a 5 s floor"
    );
    drop(op);
    env.cleanup().await;
}
