//! The Vault KV v2 store on the real control plane and a real Vault server
//! (`hack/vault.sh up`): each value a KV version with keyward's record in its
//! custom_metadata, older versions destroyed when the overlap ends, everything destroyed
//! on expiry, revocation and deletion, paths outside the tenant's prefix refused, a pass
//! killed between the Vault write and the Secret write finishing the same version, and the
//! Kubernetes auth method's login and token renewal.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use keyward::api::{ApiKey, CredentialState};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::Operator;
use support::vault::{data, live_versions, metadata};
use support::{TestEnv, wait_for, wait_gone};

const T: Duration = Duration::from_secs(30);

struct World {
    env: TestEnv,
    op: Operator,
    tenant: String,
    keys: Api<ApiKey>,
    secrets: Api<Secret>,
}

async fn world(prefix: &str, extra_envs: &[(&str, &str)]) -> World {
    let env = TestEnv::new(prefix).await;
    let tenant = support::create_tenant(&env, json!({})).await;
    let (flags, envs) = support::vault::operator_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    envs.extend_from_slice(extra_envs);
    let op = Operator::start_with_env(&env.ns, &flags, &envs).await;
    World {
        keys: Api::namespaced(env.client.clone(), &env.ns),
        secrets: Api::namespaced(env.client.clone(), &env.ns),
        env,
        op,
        tenant,
    }
}

impl World {
    async fn key(&self, name: &str, extra: Value) -> ApiKey {
        let spec = support::merged(json!({"tenant": self.tenant, "owner": "alice"}), extra);
        support::create(&self.keys, name, spec).await
    }

    /// The key's path under the `secret/` mount, with the default prefix.
    fn path(&self, rest: &str) -> String {
        format!("keyward/{}/{rest}", self.tenant)
    }

    async fn wait_version(&self, name: &str, version: i64) -> ApiKey {
        wait_for(
            &self.keys,
            name,
            &format!("Active and Synced at version {version}"),
            T,
            move |k: &ApiKey| {
                k.status.as_ref().is_some_and(|s| {
                    s.version == Some(version) && s.state == Some(CredentialState::Active)
                }) && condition(k, "Synced").is_some_and(|c| c.status == "True")
            },
        )
        .await
    }

    async fn wait_state(&self, name: &str, state: CredentialState) -> ApiKey {
        wait_for(
            &self.keys,
            name,
            &format!("{state:?}"),
            T,
            move |k: &ApiKey| k.status.as_ref().is_some_and(|s| s.state == Some(state)),
        )
        .await
    }

    async fn rotate(&self, name: &str, request: &str) {
        self.keys
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"keyward.io/rotate": request}}})),
            )
            .await
            .unwrap();
    }

    async fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        let secret = self.secrets.get_opt(name).await.unwrap()?;
        secret.data.and_then(|d| {
            d.get(key)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        })
    }

    async fn cleanup(self) {
        support::vault::delete_keys(&self.env.client, &self.env.ns).await;
        drop(self.op);
        let tenants: Api<keyward::api::Tenant> = Api::all(self.env.client.clone());
        let _ = tenants.delete(&self.tenant, &DeleteParams::default()).await;
        self.env.cleanup().await;
    }
}

fn condition<'a>(k: &'a ApiKey, type_: &str) -> Option<&'a Condition> {
    k.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Waits until `check` holds for what Vault says, or fails with `what`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + T;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn each_value_is_a_kv_version_with_its_record_and_older_versions_go_when_the_overlap_ends() {
    let w = world("vault-versions", &[]).await;
    w.key(
        "k",
        json!({"vault": {"path": "globex/api-key"}, "rotation": {"every": "24h", "overlap": "3s"}}),
    )
    .await;
    let key = w.wait_version("k", 1).await;
    let path = w.path("globex/api-key");
    let meta = metadata(&path).await.expect("the value is in Vault");
    let custom = meta.custom_metadata.clone().unwrap_or_default();
    let status = key.status.clone().unwrap();
    assert_eq!(custom.get("owner").map(String::as_str), Some("alice"));
    assert_eq!(custom.get("tenant"), Some(&w.tenant));
    assert_eq!(custom.get("credential"), Some(&format!("{}/k", w.env.ns)));
    assert_eq!(custom.get("version").map(String::as_str), Some("1"));
    assert_eq!(custom.get("fingerprint"), status.fingerprint.as_ref());
    assert_eq!(live_versions(&meta), vec![1]);
    let v1 = data(&path, None).await.unwrap()["api-key"].clone();
    assert_eq!(w.secret_value("k", "api-key").await, Some(v1.clone()));
    assert!(
        key.finalizers().iter().any(|f| f == "keyward.io/vault"),
        "{:?}",
        key.metadata.finalizers
    );

    // A rotation is a second version; the first stays for the overlap, then is destroyed.
    w.rotate("k", "r1").await;
    let key = w.wait_version("k", 2).await;
    let meta = metadata(&path).await.unwrap();
    let v2 = data(&path, None).await.unwrap()["api-key"].clone();
    assert_ne!(v1, v2);
    assert_eq!(meta.current_version, 2);
    assert_eq!(
        meta.custom_metadata.unwrap_or_default().get("fingerprint"),
        key.status.as_ref().and_then(|s| s.fingerprint.as_ref())
    );
    assert_eq!(w.secret_value("k", "api-key").await, Some(v2.clone()));
    assert_eq!(w.secret_value("k", "api-key-previous").await, Some(v1));
    eventually("version 1 destroyed after the overlap", || async {
        metadata(&path)
            .await
            .is_some_and(|m| live_versions(&m) == vec![2])
    })
    .await;
    assert_eq!(data(&path, None).await.unwrap()["api-key"], v2);
    eventually("the previous value withdrawn from the Secret", || async {
        w.secret_value("k", "api-key-previous").await.is_none()
    })
    .await;
    w.cleanup().await;
}

/// A rotation costs Vault its writes (the record, the value, and with no overlap the
/// older version's destruction and the record saying so) after one read, and the pass its
/// own status write wakes reads nothing: it knows what its predecessor left there.
#[tokio::test]
async fn a_rotation_reads_vault_once_and_the_pass_its_status_write_wakes_not_at_all() {
    let w = world("vault-cost", &[]).await;
    w.key(
        "k",
        json!({"vault": {"path": "k"}, "rotation": {"every": "24h"}}),
    )
    .await;
    w.wait_version("k", 1).await;
    for round in 0..2 {
        support::fault::settled_requests(&w.op, Duration::from_secs(2), T).await;
        let before = support::vault::requests(&w.op).await;
        w.rotate("k", &format!("cost-{round}")).await;
        w.wait_version("k", 2 + round).await;
        support::fault::settled_requests(&w.op, Duration::from_secs(2), T).await;
        let after = support::vault::requests(&w.op).await;
        let spent: std::collections::BTreeMap<&str, f64> = after
            .iter()
            .map(|(o, v)| (o.as_str(), v - before.get(o).copied().unwrap_or_default()))
            .filter(|(_, v)| *v > 0.0)
            .collect();
        let expected = std::collections::BTreeMap::from([
            ("destroy", 1.0),
            ("read", 1.0),
            ("read_metadata", 1.0),
            ("write", 1.0),
            ("write_metadata", 2.0),
        ]);
        assert_eq!(spent, expected, "rotation {round}: Vault requests");
    }
    w.cleanup().await;
}

#[tokio::test]
async fn a_vault_only_key_serves_no_secret_and_expiry_revocation_and_deletion_destroy_it() {
    let w = world("vault-only", &[]).await;
    let expires = (chrono::Utc::now() + chrono::Duration::seconds(8))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    for name in ["expiring", "revoked", "deleted"] {
        let extra = json!({"vault": {"path": name}, "secret": {"enabled": false}});
        let extra = if name == "expiring" {
            support::merged(extra, json!({"expiresAt": expires}))
        } else {
            extra
        };
        w.key(name, extra).await;
    }
    for name in ["expiring", "revoked", "deleted"] {
        let key = w.wait_version(name, 1).await;
        assert!(
            key.status
                .as_ref()
                .and_then(|s| s.fingerprint.as_ref())
                .is_some(),
            "a Vault-only key records its fingerprint"
        );
        assert!(metadata(&w.path(name)).await.is_some(), "{name} in Vault");
        assert!(
            w.secrets.get_opt(name).await.unwrap().is_none(),
            "no Secret for {name}"
        );
    }

    // Expiry: every version and the metadata are destroyed.
    w.wait_state("expiring", CredentialState::Expired).await;
    eventually("the expired key's path destroyed", || async {
        metadata(&w.path("expiring")).await.is_none()
    })
    .await;
    // Nothing left in Vault: the finalizer goes, and later passes send Vault nothing.
    wait_for(
        &w.keys,
        "expiring",
        "no keyward.io/vault finalizer",
        T,
        |k: &ApiKey| !k.finalizers().iter().any(|f| f == "keyward.io/vault"),
    )
    .await;

    // Revocation: the integration of `revoked` is suspended (here: its tenant).
    // Deletion: the finalizer holds the key until its path is destroyed.
    w.keys
        .delete("deleted", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&w.keys, "deleted", T).await;
    assert!(
        metadata(&w.path("deleted")).await.is_none(),
        "the deleted key's path destroyed"
    );

    let tenants: Api<keyward::api::Tenant> = Api::all(w.env.client.clone());
    tenants
        .patch(
            &w.tenant,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"state": "Suspended"}})),
        )
        .await
        .unwrap();
    w.wait_state("revoked", CredentialState::Revoked).await;
    eventually("the revoked key's path destroyed", || async {
        metadata(&w.path("revoked")).await.is_none()
    })
    .await;
    w.cleanup().await;
}

#[tokio::test]
async fn a_path_that_leaves_the_tenants_prefix_is_refused() {
    let w = world("vault-path", &[]).await;
    w.key("escape", json!({"vault": {"path": "../other/x"}}))
        .await;
    w.key("query", json!({"vault": {"path": "x?version=1"}}))
        .await;
    for name in ["escape", "query"] {
        let key = wait_for(&w.keys, name, "InvalidVaultPath", T, |k: &ApiKey| {
            condition(k, "Ready").is_some_and(|c| c.reason == "InvalidVaultPath")
        })
        .await;
        assert_eq!(
            key.status.as_ref().and_then(|s| s.state),
            Some(CredentialState::Invalid)
        );
        assert!(w.secrets.get_opt(name).await.unwrap().is_none());
    }
    assert!(metadata("keyward/other/x").await.is_none());
    w.cleanup().await;
}

#[tokio::test]
async fn a_pass_killed_between_the_vault_write_and_the_secret_write_finishes_the_same_version() {
    // Every Secret write waits 4 s: the operator is killed inside that window.
    let mut w = world("vault-crash", &[("KEYWARD_FAULT_WRITE_DELAY_MS", "4000")]).await;
    w.key(
        "k",
        json!({"vault": {"path": "k"}, "rotation": {"every": "24h"}}),
    )
    .await;
    let path = w.path("k");
    let first = support::wait_for(
        &w.keys,
        "k",
        "version 1",
        Duration::from_secs(60),
        |k: &ApiKey| k.status.as_ref().and_then(|s| s.version) == Some(1),
    )
    .await;
    assert!(first.status.is_some());
    w.rotate("k", "crash").await;
    eventually("Vault holds version 2", || async {
        metadata(&path)
            .await
            .is_some_and(|m| m.current_version == 2)
    })
    .await;
    w.op.kill().await;
    let stored = data(&path, None).await.unwrap()["api-key"].clone();
    assert_ne!(
        w.secret_value("k", "api-key").await,
        Some(stored.clone()),
        "the Secret lags"
    );

    // The next operator finishes version 2 with the value already in Vault.
    let (flags, envs) = support::vault::operator_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let op = Operator::start_with_env(&w.env.ns, &flags, &envs).await;
    let _old = std::mem::replace(&mut w.op, op);
    w.wait_version("k", 2).await;
    assert_eq!(w.secret_value("k", "api-key").await, Some(stored));
    let meta = metadata(&path).await.unwrap();
    assert_eq!(meta.current_version, 2, "no second rotation");
    eventually("version 1 destroyed (no overlap)", || async {
        metadata(&path)
            .await
            .is_some_and(|m| live_versions(&m) == vec![2])
    })
    .await;
    w.cleanup().await;
}

#[tokio::test]
async fn the_operator_logs_in_with_its_service_account_and_renews_its_token() {
    let env = TestEnv::new("vault-auth").await;
    let tenant = support::create_tenant(&env, json!({})).await;
    // A ServiceAccount of the test's namespace, a role that admits it with tokens of 12 s,
    // and a token for it in a file, as a Pod's projected token would be.
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), &env.ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "keyward"}})).unwrap();
    accounts.create(&PostParams::default(), &sa).await.unwrap();
    let role = format!("role-{}", env.ns);
    let mut builder =
        vaultrs::api::auth::kubernetes::requests::CreateKubernetesRoleRequest::builder();
    builder
        .bound_service_account_names(vec!["keyward".to_owned()])
        .bound_service_account_namespaces(vec![env.ns.clone()])
        .token_policies(vec!["keyward".to_owned()])
        .token_ttl("12s")
        .token_max_ttl("10m");
    vaultrs::auth::kubernetes::role::create(
        &support::vault::root(),
        "kubernetes",
        &role,
        Some(&mut builder),
    )
    .await
    .expect("creating the Vault role");
    let token =
        support::kubectl_ok(&["-n", &env.ns, "create", "token", "keyward", "--duration=1h"]);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token.trim()).unwrap();
    let (addr, _) = support::vault::env();
    let op = Operator::start_with(
        &env.ns,
        &[
            "--vault-addr",
            &addr,
            "--vault-role",
            &role,
            "--vault-token-file",
            token_file.to_str().unwrap(),
        ],
    )
    .await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    support::create(
        &keys,
        "k",
        json!({"tenant": tenant, "owner": "alice", "vault": {"path": "k"}}),
    )
    .await;
    let synced_at = |version: i64| {
        move |k: &ApiKey| {
            k.status.as_ref().and_then(|s| s.version) == Some(version)
                && condition(k, "Synced").is_some_and(|c| c.status == "True")
        }
    };
    wait_for(
        &keys,
        "k",
        "issued through a Kubernetes-auth login",
        T,
        synced_at(1),
    )
    .await;
    // Each rotation comes when the token is three quarters through its 12 s: past the
    // point where it is renewed, before it expires, so one login lasts throughout.
    for version in 2..=4 {
        tokio::time::sleep(Duration::from_secs(9)).await;
        keys.patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"keyward.io/rotate": format!("r{version}")}}}),
            ),
        )
        .await
        .unwrap();
        wait_for(
            &keys,
            "k",
            &format!("version {version}"),
            T,
            synced_at(version),
        )
        .await;
    }
    let logs = op.logs();
    assert_eq!(
        logs.matches("logged in to Vault").count(),
        1,
        "one login:\n{logs}"
    );
    assert!(
        logs.contains("Vault token renewed"),
        "the token was renewed:\n{logs}"
    );
    assert!(
        !logs.contains(token.trim()),
        "the ServiceAccount token never reaches a log"
    );
    support::vault::delete_keys(&env.client, &env.ns).await;
    drop(op);
    let tenants: Api<keyward::api::Tenant> = Api::all(env.client.clone());
    let _ = tenants.delete(&tenant, &DeleteParams::default()).await;
    env.cleanup().await;
}
