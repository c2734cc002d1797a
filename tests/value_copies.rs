//! Event-driven value-copy detection on the real control plane: with no full scan ever,
//! a value copied into another tenant's namespace is found from the Secret's watch event,
//! changed and deleted copies follow their events, a Secret keyward controls is never read,
//! and a quiet cluster costs the inventory no request. Alone in its binary: the inventory
//! runs cluster-wide, and other tests' Secrets would be reads of their own.

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use keyward::api::{ApiKey, CredentialState, Tenant};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::metrics::{gauge, requests, store, wait_metrics};
use support::operator::Operator;
use support::{TestEnv, wait_for};

const T: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_copy_is_found_from_its_watch_event_without_any_scan_and_rest_costs_nothing() {
    let (a, b) = (
        TestEnv::new("evcopy-a").await,
        TestEnv::new("evcopy-b").await,
    );
    let ta = support::create_tenant(&a, json!({})).await;
    let tb = support::create_tenant(&b, json!({"owners": [{"name": "bob", "kind": "User"}]})).await;
    let _op = Operator::start(&a.ns).await;
    let keys: Api<ApiKey> = Api::namespaced(a.client.clone(), &a.ns);
    support::create(&keys, "live", json!({"tenant": ta, "owner": "alice"})).await;
    wait_for(&keys, "live", "Active", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Active)
    })
    .await;
    let value = Api::<Secret>::namespaced(a.client.clone(), &a.ns)
        .get("live")
        .await
        .unwrap()
        .data
        .and_then(|d| d.get("api-key").cloned())
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .expect("a value under api-key");
    let secrets_b: Api<Secret> = Api::namespaced(b.client.clone(), &b.ns);
    create_secret(
        &secrets_b,
        json!({"metadata": {"name": "unrelated"}, "stringData": {"k": "v"}}),
    )
    .await;

    // The inventory alone, cluster-wide, with no full scan ever: only events can find a copy.
    let metrics = Arc::new(keyward::metrics::Metrics::new());
    let client = keyward::client::counted_with(
        support::config().await,
        metrics.clone(),
        Arc::new(keyward::controller::leader::Fence::open()),
        keyward::client::RateLimit::default(),
    )
    .unwrap();
    let test_client = a.client.clone();
    let options = keyward::inventory::Options {
        namespace: None,
        scan_interval: Duration::ZERO,
        ..Default::default()
    };
    let (copies, changes) = (options.copies.clone(), options.changes.clone());
    let run = tokio::spawn(keyward::inventory::run(
        client,
        metrics.clone(),
        store::<Tenant>(&test_client),
        store::<ApiKey>(&test_client),
        store::<keyward::api::ServiceAccountCredential>(&test_client),
        options,
    ));
    wait_metrics(&metrics, "synced", T, |m| gauge(m, &tb, "Unowned") == 1).await;
    // What exists at start is the full scan's to find, and there is none.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listed = requests(&metrics);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(requests(&metrics), listed, "a quiet cluster cost requests");

    let found = |copies: &keyward::inventory::ValueCopies| {
        copies
            .read()
            .unwrap()
            .iter()
            .map(|c| (c.namespace.clone(), c.secret.clone(), c.key.clone()))
            .collect::<Vec<_>>()
    };
    create_secret(
        &secrets_b,
        json!({"metadata": {"name": "pasted"}, "stringData": {"token": value}}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + T;
    while found(&copies).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a copy made after sync was not found from its event"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        found(&copies),
        vec![(b.ns.clone(), "pasted".to_owned(), "token".to_owned())]
    );
    wait_metrics(&metrics, "CrossTenant counted", T, |m| {
        gauge(m, &ta, "CrossTenant") == 1
    })
    .await;
    let after_copy = requests(&metrics);
    assert!(
        after_copy - listed <= 2,
        "reading one new Secret cost {} requests",
        after_copy - listed
    );

    // A Secret keyward controls is never read: a rotation of the key costs the
    // inventory nothing (and its new value is no longer the copy's).
    keys.patch(
        "live",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"keyward.io/rotate": "1"}}})),
    )
    .await
    .unwrap();
    wait_for(&keys, "live", "rotated", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version) == Some(2)
    })
    .await;
    // What `keyward run`'s fan-out does on every change of its stores.
    changes.notify_one();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        requests(&metrics),
        after_copy,
        "the rotation of a managed Secret cost the inventory requests"
    );
    wait_metrics(
        &metrics,
        "the copy of a rotated-away value forgotten",
        T,
        |m| gauge(m, &ta, "CrossTenant") == 0,
    )
    .await;
    assert!(found(&copies).is_empty());

    // A copy of the new value, then its deletion: found, then forgotten from the event.
    let value = Api::<Secret>::namespaced(a.client.clone(), &a.ns)
        .get("live")
        .await
        .unwrap()
        .data
        .and_then(|d| d.get("api-key").cloned())
        .unwrap();
    let mut pasted: Secret = secrets_b.get("pasted").await.unwrap();
    pasted.data = Some([("token".to_owned(), value)].into());
    pasted.string_data = None;
    secrets_b
        .replace("pasted", &PostParams::default(), &pasted)
        .await
        .unwrap();
    wait_metrics(&metrics, "the changed copy counted", T, |m| {
        gauge(m, &ta, "CrossTenant") == 1
    })
    .await;
    secrets_b
        .delete("pasted", &DeleteParams::default())
        .await
        .unwrap();
    wait_metrics(&metrics, "the deleted copy forgotten", T, |m| {
        gauge(m, &ta, "CrossTenant") == 0
    })
    .await;
    assert!(found(&copies).is_empty());

    run.abort();
    for (env, tenant) in [(a, ta), (b, tb)] {
        let _ = Api::<Tenant>::all(env.client.clone())
            .delete(&tenant, &DeleteParams::default())
            .await;
        env.cleanup().await;
    }
}

async fn create_secret(api: &Api<Secret>, object: serde_json::Value) {
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).unwrap(),
    )
    .await
    .unwrap();
}
