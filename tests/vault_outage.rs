//! Vault killed under a running operator and started again (`hack/vault.sh kill`/`start`):
//! the current value stays served, a rotation requested meanwhile waits and happens once
//! when Vault is back, an expiry during the outage withdraws the Secret at once and
//! destroys the Vault path once Vault returns, and nothing is left behind. Its own test
//! binary: the other tests share the same Vault server, and cargo runs test binaries one
//! after another.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use keyward::api::{ApiKey, CredentialState};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::operator::Operator;
use support::vault::{data, live_versions, metadata};
use support::{TestEnv, wait_for};

const T: Duration = Duration::from_secs(60);

fn synced(k: &ApiKey) -> Option<(String, String)> {
    k.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Synced")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn value(secrets: &Api<Secret>, name: &str) -> Option<String> {
    let secret = secrets.get_opt(name).await.unwrap()?;
    secret.data.and_then(|d| {
        d.get("api-key")
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    })
}

/// Starts Vault again if the test ends while it is down.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        if std::process::Command::new(support::repo().join("hack/vault.sh"))
            .arg("status")
            .status()
            .is_ok_and(|s| !s.success())
        {
            support::vault::control("start");
        }
    }
}

#[tokio::test]
async fn while_vault_is_away_the_value_stays_served_and_a_rotation_happens_once_it_is_back() {
    let env = TestEnv::new("vault-outage").await;
    let tenant = support::create_tenant(&env, json!({})).await;
    let (flags, envs) = support::vault::operator_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let op = Operator::start_with_env(&env.ns, &flags, &envs).await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(25))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for (name, extra) in [
        ("rotating", json!({"rotation": {"every": "24h"}})),
        ("expiring", json!({"expiresAt": expires})),
    ] {
        let spec = support::merged(
            json!({"tenant": tenant, "owner": "alice", "vault": {"path": name}}),
            extra,
        );
        support::create(&keys, name, spec).await;
    }
    for name in ["rotating", "expiring"] {
        wait_for(&keys, name, "issued", T, |k: &ApiKey| {
            k.status.as_ref().and_then(|s| s.version) == Some(1)
                && synced(k).is_some_and(|(s, _)| s == "True")
        })
        .await;
    }
    let path = |name: &str| format!("keyward/{tenant}/{name}");
    let v1 = value(&secrets, "rotating").await.expect("served");

    // Vault goes away; a rotation is asked for.
    let _restart = Restart;
    support::vault::control("kill");
    keys.patch(
        "rotating",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"keyward.io/rotate": "during-outage"}}})),
    )
    .await
    .unwrap();
    let waiting = wait_for(
        &keys,
        "rotating",
        "Synced=False VaultUnavailable",
        T,
        |k: &ApiKey| synced(k).is_some_and(|(s, r)| s == "False" && r == "VaultUnavailable"),
    )
    .await;
    let status = waiting.status.unwrap();
    assert_eq!(status.version, Some(1));
    assert_eq!(status.state, Some(CredentialState::Active));
    assert_eq!(
        value(&secrets, "rotating").await,
        Some(v1.clone()),
        "still served"
    );

    // The expiry comes during the outage: the Secret goes at once.
    wait_for(&keys, "expiring", "Expired", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Expired)
    })
    .await;
    assert!(
        secrets.get_opt("expiring").await.unwrap().is_none(),
        "withdrawn at once"
    );
    assert_eq!(
        value(&secrets, "rotating").await,
        Some(v1.clone()),
        "still served"
    );

    // Vault is back: the rotation happens, once; the expired path is destroyed.
    support::vault::control("start");
    let rotated = wait_for(&keys, "rotating", "version 2, Synced", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version) == Some(2)
            && synced(k).is_some_and(|(s, _)| s == "True")
    })
    .await;
    let v2 = value(&secrets, "rotating").await.expect("served");
    assert_ne!(v1, v2);
    assert_eq!(data(&path("rotating"), None).await.unwrap()["api-key"], v2);
    assert_eq!(
        rotated
            .status
            .and_then(|s| s.last_rotation_request)
            .as_deref(),
        Some("during-outage")
    );
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let rotating = metadata(&path("rotating")).await.expect("kept");
        let expired = metadata(&path("expiring")).await;
        if live_versions(&rotating) == vec![2] && expired.is_none() {
            assert_eq!(
                rotating.current_version, 2,
                "one rotation, no orphan version"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind in Vault: rotating {:?}, expiring {:?}",
            live_versions(&rotating),
            expired.map(|m| live_versions(&m))
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    support::vault::delete_keys(&env.client, &env.ns).await;
    drop(op);
    let tenants: Api<keyward::api::Tenant> = Api::all(env.client.clone());
    let _ = tenants.delete(&tenant, &DeleteParams::default()).await;
    env.cleanup().await;
}
