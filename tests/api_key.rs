//! The ApiKey lifecycle on the real control plane, with a `keyward run` per test scoped to
//! the test's namespace: issue, rotation with overlap, manual rotation, expiry, revocation,
//! refusal, conflict, garbage collection and consumer restarts.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Secret};
use keyward::api::{ApiKey, CredentialState, PartnerIntegration, Tenant};
use keyward::store::value::Fingerprint;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::Operator;
use support::{TestEnv, wait_for, wait_gone};

const T: Duration = Duration::from_secs(30);

struct World {
    env: TestEnv,
    op: Operator,
    tenant: String,
    keys: Api<ApiKey>,
    secrets: Api<Secret>,
    tenants: Api<Tenant>,
}

/// A fresh namespace, a Tenant owning it (owners alice and the group platform; `extra` is
/// merged into its spec) and an operator managing it.
async fn world(prefix: &str, extra: Value) -> World {
    let env = TestEnv::new(prefix).await;
    let owners = json!({"owners": [{"name": "alice", "kind": "User"}, {"name": "platform", "kind": "Group"}]});
    let tenant = support::create_tenant(&env, support::merged(owners, extra)).await;
    let tenants: Api<Tenant> = Api::all(env.client.clone());
    let op = Operator::start(&env.ns).await;
    World {
        keys: Api::namespaced(env.client.clone(), &env.ns),
        secrets: Api::namespaced(env.client.clone(), &env.ns),
        tenants,
        env,
        op,
        tenant,
    }
}

impl World {
    async fn key(&self, name: &str, spec: Value) -> ApiKey {
        support::create(&self.keys, name, spec).await
    }

    async fn integration(&self, name: &str, spec: Value) {
        let api: Api<PartnerIntegration> = Api::namespaced(self.env.client.clone(), &self.env.ns);
        support::create(&api, name, spec).await;
    }

    async fn wait_state(&self, name: &str, state: CredentialState) -> ApiKey {
        wait_for(
            &self.keys,
            name,
            &format!("{state:?}"),
            T,
            move |k: &ApiKey| k.status.as_ref().and_then(|s| s.state) == Some(state),
        )
        .await
    }

    async fn wait_version(&self, name: &str, version: i64) -> ApiKey {
        wait_for(
            &self.keys,
            name,
            &format!("at version {version}"),
            T,
            move |k: &ApiKey| {
                k.status.as_ref().and_then(|s| s.version) == Some(version)
                    && k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Active)
            },
        )
        .await
    }

    async fn patch_tenant(&self, spec: Value) {
        self.tenants
            .patch(
                &self.tenant,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap();
    }

    /// The value served under `key` in Secret `name`.
    async fn value(&self, name: &str, key: &str) -> Option<String> {
        let secret = self.secrets.get_opt(name).await.unwrap()?;
        secret
            .data
            .and_then(|d| d.get(key).map(|b| String::from_utf8(b.0.clone()).unwrap()))
    }

    fn ready_reason(key: &ApiKey) -> String {
        key.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.reason.clone())
            .unwrap_or_default()
    }

    async fn events(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<Event> = Api::namespaced(self.env.client.clone(), &self.env.ns);
        let list = api
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .unwrap();
        list.items
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }

    /// Waits (bounded) for an Event with `reason` on `name`; Events are published after
    /// the status they describe, so they can trail it by a moment.
    async fn wait_event(&self, name: &str, reason: &str) -> Vec<(String, String)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(name).await;
            if events.iter().any(|(r, _)| r == reason) || tokio::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Fails if any value appears in what the operator logged or printed.
    fn assert_never_logged(&self, values: &[String]) {
        let logs = self.op.logs() + &self.op.stdout();
        for value in values {
            assert!(
                !logs.contains(value.as_str()),
                "a credential value appears in the operator's output"
            );
        }
    }

    async fn cleanup(self) {
        let _ = self
            .tenants
            .delete(&self.tenant, &DeleteParams::default())
            .await;
        self.env.cleanup().await;
    }
}

#[tokio::test]
async fn issues_a_value_in_the_requested_format_with_the_contract_metadata() {
    let w = world("issue", json!({})).await;
    let created = w
        .key("k", json!({"tenant": w.tenant, "owner": "alice", "generator": {"bytes": 16, "encoding": "hex", "prefix": "gx_test_"}}))
        .await;
    let key = w.wait_state("k", CredentialState::Active).await;
    let status = key.status.clone().unwrap();
    assert_eq!(status.version, Some(1));
    assert_eq!(status.tenant.as_deref(), Some(w.tenant.as_str()));
    assert_eq!(status.owner.as_deref(), Some("alice"));

    let secret = w.secrets.get("k").await.unwrap();
    let value = w
        .value("k", "api-key")
        .await
        .expect("value served under api-key");
    let body = value.strip_prefix("gx_test_").expect("prefix");
    assert_eq!(body.len(), 32);
    assert!(body.chars().all(|c| c.is_ascii_hexdigit()));
    let fingerprint = Fingerprint::of(value.as_bytes()).to_string();
    assert_eq!(status.fingerprint.as_deref(), Some(fingerprint.as_str()));

    let labels = secret.labels();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("keyward")
    );
    assert_eq!(labels.get("keyward.io/tenant"), Some(&w.tenant));
    assert_eq!(
        labels.get("keyward.io/credential").map(String::as_str),
        Some("k")
    );
    let annotations = secret.annotations();
    assert_eq!(
        annotations.get("keyward.io/owner").map(String::as_str),
        Some("alice")
    );
    assert_eq!(
        annotations.get("keyward.io/version").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        annotations.get("keyward.io/fingerprint"),
        Some(&fingerprint)
    );
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.uid.as_str(), owner.controller),
        (created.uid().unwrap().as_str(), Some(true))
    );

    let events = w.wait_event("k", "Issued").await;
    assert!(events.iter().any(|(r, _)| r == "Issued"), "{events:?}");
    let audit = w.op.audit();
    let issued = audit
        .iter()
        .find(|a| a["action"] == "Issued" && a["object"]["name"] == "k")
        .expect("audit line");
    assert_eq!(issued["version"], 1);
    assert_eq!(issued["fingerprint"], fingerprint.as_str());
    assert_eq!(issued["tenant"], w.tenant.as_str());
    w.assert_never_logged(&[value]);
    w.cleanup().await;
}

#[tokio::test]
async fn each_encoding_has_its_alphabet() {
    let w = world("encodings", json!({})).await;
    for (name, encoding) in [("b64", "base64url"), ("alnum", "alphanumeric")] {
        w.key(
            name,
            json!({"tenant": w.tenant, "owner": "alice", "generator": {"encoding": encoding}}),
        )
        .await;
    }
    w.wait_state("b64", CredentialState::Active).await;
    w.wait_state("alnum", CredentialState::Active).await;
    let b64 = w.value("b64", "api-key").await.unwrap();
    assert_eq!(b64.len(), 43, "32 bytes in unpadded base64url");
    assert!(
        b64.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    let alnum = w.value("alnum", "api-key").await.unwrap();
    assert_eq!(alnum.len(), 43, "32 bytes of entropy in [A-Za-z0-9]");
    assert!(alnum.chars().all(|c| c.is_ascii_alphanumeric()));
    w.cleanup().await;
}

#[tokio::test]
async fn rotation_keeps_the_previous_value_until_the_overlap_ends() {
    let w = world("rotation", json!({})).await;
    w.key("k", json!({"tenant": w.tenant, "owner": "alice", "rotation": {"every": "4s", "overlap": "2s"}, "secret": {"key": "token"}})).await;
    w.wait_version("k", 1).await;
    let first = w.value("k", "token").await.unwrap();
    let rotated = w.wait_version("k", 2).await;
    let status = rotated.status.clone().unwrap();
    let second = w.value("k", "token").await.unwrap();
    assert_ne!(first, second);
    assert_eq!(
        w.value("k", "token-previous").await.as_deref(),
        Some(first.as_str())
    );
    let until = status
        .previous_valid_until
        .expect("previousValidUntil during the overlap")
        .0;
    let rotated_at = status.last_rotated_at.unwrap().0;
    assert_eq!(until - rotated_at, chrono::Duration::seconds(2));
    assert_eq!(
        status.next_rotation_at.unwrap().0 - rotated_at,
        chrono::Duration::seconds(4)
    );

    // The overlap ends: the previous value is gone, the current one stays.
    let ended = wait_for(&w.keys, "k", "past the overlap", T, |k: &ApiKey| {
        k.status
            .as_ref()
            .is_some_and(|s| s.previous_valid_until.is_none() && s.version == Some(2))
    })
    .await;
    assert!(Utc::now() >= until);
    assert_eq!(w.value("k", "token-previous").await, None);
    assert_eq!(
        w.value("k", "token").await.as_deref(),
        Some(second.as_str())
    );
    assert_eq!(
        ended.status.unwrap().fingerprint.unwrap(),
        Fingerprint::of(second.as_bytes()).to_string()
    );
    let events = w.wait_event("k", "Rotated").await;
    assert!(events.iter().any(|(r, _)| r == "Rotated"), "{events:?}");
    w.assert_never_logged(&[first, second]);
    w.cleanup().await;
}

#[tokio::test]
async fn a_rotate_annotation_value_rotates_exactly_once() {
    let w = world("manual", json!({})).await;
    w.key("k", json!({"tenant": w.tenant, "owner": "alice"}))
        .await;
    w.wait_version("k", 1).await;
    let annotate = |v: &str| json!({"metadata": {"annotations": {"keyward.io/rotate": v}}});
    w.keys
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(annotate("first")),
        )
        .await
        .unwrap();
    let k = w.wait_version("k", 2).await;
    assert_eq!(
        k.status.unwrap().last_rotation_request.as_deref(),
        Some("first")
    );
    // Any later reconcile (here forced by a label change) does not rotate again.
    w.keys
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touch": "1"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        w.keys.get("k").await.unwrap().status.unwrap().version,
        Some(2)
    );
    w.keys
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(annotate("second")),
        )
        .await
        .unwrap();
    w.wait_version("k", 3).await;
    w.cleanup().await;
}

fn in_secs(s: i64) -> String {
    keyward::policy::format_time(Utc::now() + chrono::Duration::seconds(s))
}

#[tokio::test]
async fn expires_at_its_own_deadline_and_is_reissued_when_it_moves() {
    let w = world("expire-own", json!({})).await;
    w.key(
        "k",
        json!({"tenant": w.tenant, "owner": "alice", "expiresAt": in_secs(3)}),
    )
    .await;
    w.wait_version("k", 1).await;
    let expired = w.wait_state("k", CredentialState::Expired).await;
    assert_eq!(World::ready_reason(&expired), "Expired");
    let message = expired
        .status
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
        .clone();
    assert!(message.contains("its own expiresAt"), "{message}");
    wait_gone(&w.secrets, "k", T).await;
    let events = w.wait_event("k", "Expired").await;
    assert!(events.iter().any(|(r, _)| r == "Expired"), "{events:?}");

    w.keys
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"expiresAt": in_secs(3600)}})),
        )
        .await
        .unwrap();
    let reissued = w.wait_version("k", 2).await;
    assert!(reissued.status.unwrap().fingerprint.is_some());
    assert!(w.value("k", "api-key").await.is_some());
    w.cleanup().await;
}

#[tokio::test]
async fn expires_with_its_integration_its_tenant_and_max_lifetime() {
    let w = world("expire-others", json!({"endsAt": in_secs(6)})).await;
    w.integration("pi", json!({"tenant": w.tenant, "owner": "alice", "partner": {"name": "Globex"}, "expiresAt": in_secs(3)}))
        .await;
    w.key("by-integration", json!({"integration": "pi"})).await;
    w.key("by-tenant", json!({"tenant": w.tenant, "owner": "alice"}))
        .await;
    for (name, named) in [
        ("by-integration", "integration pi's expiresAt"),
        ("by-tenant", "endsAt"),
    ] {
        let k = w.wait_state(name, CredentialState::Expired).await;
        let message = k
            .status
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap()
            .message
            .clone();
        assert!(message.contains(named), "{name}: {message}");
        wait_gone(&w.secrets, name, T).await;
    }
    w.cleanup().await;

    let w = world("lifetime", json!({"policy": {"maxLifetime": "3s"}})).await;
    w.key("k", json!({"tenant": w.tenant, "owner": "alice"}))
        .await;
    w.wait_version("k", 1).await;
    let k = w.wait_state("k", CredentialState::Expired).await;
    let message = k
        .status
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
        .clone();
    assert!(message.contains("maxLifetime"), "{message}");
    // A change to the spec renews it.
    w.keys
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"generator": {"bytes": 24}}})),
        )
        .await
        .unwrap();
    w.wait_version("k", 2).await;
    w.cleanup().await;
}

#[tokio::test]
async fn tenant_suspension_revokes_and_lifting_it_issues_a_new_value() {
    let w = world("suspend", json!({})).await;
    w.key("k", json!({"tenant": w.tenant, "owner": "alice"}))
        .await;
    w.wait_version("k", 1).await;
    let before = w.value("k", "api-key").await.unwrap();
    w.patch_tenant(json!({"state": "Suspended"})).await;
    let k = w.wait_state("k", CredentialState::Revoked).await;
    assert_eq!(World::ready_reason(&k), "TenantSuspended");
    wait_gone(&w.secrets, "k", T).await;
    w.patch_tenant(json!({"state": "Active"})).await;
    w.wait_version("k", 2).await;
    let after = w.value("k", "api-key").await.unwrap();
    assert_ne!(before, after, "never the old value");
    let events = w.wait_event("k", "Revoked").await;
    assert!(events.iter().any(|(r, _)| r == "Revoked"), "{events:?}");

    w.patch_tenant(json!({"state": "Offboarded"})).await;
    let k = w.wait_state("k", CredentialState::Revoked).await;
    assert_eq!(World::ready_reason(&k), "TenantOffboarded");
    w.cleanup().await;
}

#[tokio::test]
async fn integration_suspension_revokes_its_keys() {
    let w = world("pi-suspend", json!({})).await;
    w.integration(
        "pi",
        json!({"tenant": w.tenant, "owner": "alice", "partner": {"name": "Globex"}}),
    )
    .await;
    w.key("k", json!({"integration": "pi"})).await;
    let k = w.wait_version("k", 1).await;
    assert_eq!(
        k.status.unwrap().owner.as_deref(),
        Some("alice"),
        "owner from the integration"
    );
    let pis: Api<PartnerIntegration> = Api::namespaced(w.env.client.clone(), &w.env.ns);
    pis.patch(
        "pi",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspended": true}})),
    )
    .await
    .unwrap();
    let k = w.wait_state("k", CredentialState::Revoked).await;
    assert_eq!(World::ready_reason(&k), "IntegrationSuspended");
    wait_gone(&w.secrets, "k", T).await;
    pis.patch(
        "pi",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspended": false}})),
    )
    .await
    .unwrap();
    w.wait_version("k", 2).await;
    w.cleanup().await;
}

#[tokio::test]
async fn an_owner_who_leaves_is_revoked_after_the_grace_period() {
    let w = world("owner-gone", json!({"policy": {"ownerGracePeriod": "3s"}})).await;
    w.key("k", json!({"tenant": w.tenant, "owner": "platform"}))
        .await;
    w.wait_version("k", 1).await;
    w.patch_tenant(json!({"owners": [{"name": "alice", "kind": "User"}]}))
        .await;
    let missing = wait_for(&w.keys, "k", "OwnerBound=False", T, |k: &ApiKey| {
        k.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == "OwnerBound" && c.status == "False" && c.reason == "OwnerMissing"
            })
        })
    })
    .await;
    assert_eq!(
        missing.status.as_ref().unwrap().state,
        Some(CredentialState::Active),
        "served during the grace period"
    );
    let since = missing
        .status
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "OwnerBound")
        .unwrap()
        .last_transition_time
        .0;
    let k = w.wait_state("k", CredentialState::Revoked).await;
    assert_eq!(World::ready_reason(&k), "OwnerMissing");
    let revoked_at = k
        .status
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .last_transition_time
        .0;
    assert!(
        revoked_at.as_second() - since.as_second() >= 3,
        "revoked before the grace period ended"
    );
    wait_gone(&w.secrets, "k", T).await;
    w.cleanup().await;
}

#[tokio::test]
async fn invalid_keys_are_refused_and_never_issued() {
    let w = world("refuse", json!({})).await;
    let other = format!("other-{}", w.env.ns);
    let tenants = w.tenants.clone();
    let object: Tenant = serde_json::from_value(json!({"apiVersion": "keyward.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": other}, "spec": {"owners": [{"name": "alice", "kind": "User"}], "namespaces": [format!("{other}-ns")]}}))
    .unwrap();
    tenants
        .create(&PostParams::default(), &object)
        .await
        .unwrap();
    let cases = [
        (
            "owner",
            json!({"tenant": w.tenant, "owner": "mallory"}),
            "OwnerNotInTenant",
        ),
        (
            "namespace",
            json!({"tenant": other, "owner": "alice"}),
            "NamespaceNotOwned",
        ),
        (
            "tenant",
            json!({"tenant": "no-such-tenant", "owner": "alice"}),
            "TenantNotFound",
        ),
        (
            "integration",
            json!({"integration": "no-such-integration"}),
            "IntegrationNotFound",
        ),
    ];
    for (name, spec, _) in &cases {
        w.key(name, spec.clone()).await;
    }
    for (name, _, reason) in &cases {
        // The operator may see the key before a Tenant created just before it, so wait for
        // the reason rather than for the first Invalid.
        let want = reason.to_string();
        let k = wait_for(&w.keys, name, reason, T, move |k: &ApiKey| {
            World::ready_reason(k) == want
        })
        .await;
        assert_eq!(
            k.status.unwrap().state,
            Some(CredentialState::Invalid),
            "{name}"
        );
        assert!(
            w.secrets.get_opt(name).await.unwrap().is_none(),
            "{name}: a Secret was written"
        );
        let events = w.wait_event(name, "Refused").await;
        assert!(
            events
                .iter()
                .any(|(r, m)| r == "Refused" && m.contains(reason)),
            "{name}: {events:?}"
        );
    }
    let k = w.keys.get("namespace").await.unwrap();
    let cross = k
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "CrossTenant")
        .unwrap();
    assert_eq!(cross.status, "True");
    let _ = tenants.delete(&other, &DeleteParams::default()).await;
    w.cleanup().await;

    let w = world("require-expiry", json!({"policy": {"requireExpiry": true}})).await;
    w.key("k", json!({"tenant": w.tenant, "owner": "alice"}))
        .await;
    let k = w.wait_state("k", CredentialState::Invalid).await;
    assert_eq!(World::ready_reason(&k), "ExpiryRequired");
    w.cleanup().await;
}

#[tokio::test]
async fn a_foreign_secret_of_that_name_is_left_byte_for_byte_intact() {
    let w = world("conflict", json!({})).await;
    let foreign: Secret = serde_json::from_value(json!({
        "metadata": {"name": "taken", "labels": {"team": "payments"}},
        "data": {"api-key": "c29tZW9uZSBlbHNlJ3M="},
    }))
    .unwrap();
    let before = w
        .secrets
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    w.key(
        "k",
        json!({"tenant": w.tenant, "owner": "alice", "secret": {"name": "taken"}}),
    )
    .await;
    let k = wait_for(&w.keys, "k", "SecretConflict", T, |k: &ApiKey| {
        World::ready_reason(k) == "SecretConflict"
    })
    .await;
    assert_ne!(k.status.unwrap().state, Some(CredentialState::Active));
    let events = w.wait_event("k", "Conflict").await;
    assert!(events.iter().any(|(r, _)| r == "Conflict"), "{events:?}");
    let after = w.secrets.get("taken").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.data, before.data);
    assert_eq!(after.metadata.labels, before.metadata.labels);
    assert_eq!(after.metadata.annotations, before.metadata.annotations);
    assert_eq!(
        after.metadata.owner_references,
        before.metadata.owner_references
    );
    w.cleanup().await;
}

#[tokio::test]
async fn deleting_the_key_garbage_collects_its_secret() {
    let w = world("gc", json!({})).await;
    w.key("k", json!({"tenant": w.tenant, "owner": "alice"}))
        .await;
    w.wait_version("k", 1).await;
    w.keys
        .delete("k", &DeleteParams::background())
        .await
        .unwrap();
    // The garbage collector of kube-controller-manager picks up a newly installed CRD at
    // its next discovery (every 30 s), so on a plane just started this can take that long.
    wait_gone(&w.secrets, "k", Duration::from_secs(90)).await;
    w.cleanup().await;
}

/// The pod-template restart annotation of a workload's JSON.
fn restarted_at(workload: &Value) -> Option<String> {
    workload
        .pointer("/spec/template/metadata/annotations/keyward.io~1restartedAt")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[tokio::test]
async fn consumers_of_every_kind_are_restarted_after_a_rotation() {
    let w = world("consumers", json!({})).await;
    let ns = w.env.ns.clone();
    let client = w.env.client.clone();
    let template = |app: &str| {
        json!({"selector": {"matchLabels": {"app": app}},
               "template": {"metadata": {"labels": {"app": app}},
                            "spec": {"containers": [{"name": "c", "image": "registry.example/sender:1"}]}}})
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    deployments
        .create(
            &pp,
            &serde_json::from_value(
                json!({"metadata": {"name": "sender"}, "spec": template("sender")}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut sts = template("ledger");
    sts["serviceName"] = json!("ledger");
    statefulsets
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "ledger"}, "spec": sts})).unwrap(),
        )
        .await
        .unwrap();
    daemonsets
        .create(
            &pp,
            &serde_json::from_value(
                json!({"metadata": {"name": "agent"}, "spec": template("agent")}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    w.key("k", json!({"tenant": w.tenant, "owner": "alice",
        "consumers": [{"kind": "Deployment", "name": "sender"}, {"kind": "StatefulSet", "name": "ledger"},
                      {"kind": "DaemonSet", "name": "agent"}, {"kind": "StatefulSet", "name": "missing"}]}))
        .await;
    w.wait_version("k", 1).await;
    let workloads = async || {
        [
            serde_json::to_value(deployments.get("sender").await.unwrap()).unwrap(),
            serde_json::to_value(statefulsets.get("ledger").await.unwrap()).unwrap(),
            serde_json::to_value(daemonsets.get("agent").await.unwrap()).unwrap(),
        ]
    };
    for workload in workloads().await {
        assert_eq!(
            restarted_at(&workload),
            None,
            "not restarted at first issue"
        );
    }
    w.keys
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"keyward.io/rotate": "now"}}})),
        )
        .await
        .unwrap();
    let k = w.wait_version("k", 2).await;
    let rotated_at = keyward::policy::format_time(k.status.unwrap().last_rotated_at.unwrap().0);
    wait_for(&deployments, "sender", "restarted", T, |d: &Deployment| {
        restarted_at(&serde_json::to_value(d).unwrap()).is_some()
    })
    .await;
    wait_for(
        &statefulsets,
        "ledger",
        "restarted",
        T,
        |d: &StatefulSet| restarted_at(&serde_json::to_value(d).unwrap()).is_some(),
    )
    .await;
    wait_for(&daemonsets, "agent", "restarted", T, |d: &DaemonSet| {
        restarted_at(&serde_json::to_value(d).unwrap()).is_some()
    })
    .await;
    for workload in workloads().await {
        let name = workload["metadata"]["name"].clone();
        assert_eq!(restarted_at(&workload), Some(rotated_at.clone()), "{name}");
        let managers: BTreeMap<String, String> = workload["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    m["manager"].as_str().unwrap_or_default().to_owned(),
                    m["operation"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert!(
            managers.contains_key("keyward-restart"),
            "{name}: {managers:?}"
        );
    }
    let events = w.wait_event("k", "ConsumerNotRestarted").await;
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "ConsumerNotRestarted" && m.contains("missing")),
        "{events:?}"
    );
    w.cleanup().await;
}
