//! The credential pipeline's record on the real control plane: a failed write keeps the
//! status, a renamed Secret is withdrawn, a Secret created in the write window is never
//! adopted, a conflict resolves and still expires, a rotation whose pass failed half way is
//! announced once and restarts its consumers once, and an overlap is never cut short.
//! Failures are injected with the API server's own ValidatingAdmissionPolicies.

mod support;

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use keyward::api::{ApiKey, CredentialState};
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
}

async fn world(prefix: &str, envs: &[(&str, &str)]) -> World {
    let env = TestEnv::new(prefix).await;
    let tenant =
        support::create_tenant(&env, json!({"owners": [{"name": "alice", "kind": "User"}]})).await;
    let op = Operator::start_with_env(&env.ns, &[], envs).await;
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

    async fn wait_version(&self, name: &str, version: i64) -> ApiKey {
        wait_for(
            &self.keys,
            name,
            &format!("Active at version {version}"),
            T,
            move |k: &ApiKey| {
                k.status.as_ref().is_some_and(|s| {
                    s.version == Some(version) && s.state == Some(CredentialState::Active)
                })
            },
        )
        .await
    }

    async fn wait_reason(&self, name: &str, reason: &str) -> ApiKey {
        let wanted = reason.to_owned();
        wait_for(&self.keys, name, reason, T, move |k: &ApiKey| {
            ready(k).is_some_and(|c| c.reason == wanted)
        })
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

    fn events(&self) -> Api<Event> {
        Api::namespaced(self.env.client.clone(), &self.env.ns)
    }

    /// The Events of `reason` on the object `name`.
    async fn events_of(&self, name: &str, reason: &str) -> Vec<Event> {
        self.events()
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }

    async fn deployment(&self, name: &str) -> Api<Deployment> {
        let api: Api<Deployment> = Api::namespaced(self.env.client.clone(), &self.env.ns);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}}},
        }))
        .unwrap();
        api.create(&PostParams::default(), &deployment)
            .await
            .unwrap();
        api
    }

    async fn cleanup(self, denials: Vec<Denial>) {
        for d in denials {
            d.lift().await;
        }
        drop(self.op);
        let tenants: Api<keyward::api::Tenant> = Api::all(self.env.client.clone());
        let _ = tenants.delete(&self.tenant, &DeleteParams::default()).await;
        self.env.cleanup().await;
    }
}

fn ready(k: &ApiKey) -> Option<&Condition> {
    condition(k, "Ready")
}

fn condition<'a>(k: &'a ApiKey, type_: &str) -> Option<&'a Condition> {
    k.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn restarted_at(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get("keyward.io/restartedAt")
        .cloned()
}

/// A ValidatingAdmissionPolicy that denies `operations` on `resources` in one namespace
/// (and, with `labels`, only on objects carrying them): the API server refusing writes,
/// as a quota, a webhook or an RBAC change would.
struct Denial {
    client: kube::Client,
    name: String,
}

impl Denial {
    async fn install(
        env: &TestEnv,
        group: &str,
        resources: &[&str],
        labels: Option<Value>,
    ) -> Denial {
        let name = format!("deny-{}-{}", env.ns, resources.join("-").replace('/', "-"));
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(env.client.clone());
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(env.client.clone());
        let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{
                    "apiGroups": [group], "apiVersions": ["*"],
                    "operations": ["UPDATE"], "resources": resources,
                }]},
                "validations": [{"expression": "false", "message": "denied by the test"}],
            },
        }))
        .unwrap();
        let mut match_resources =
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": env.ns}}});
        if let Some(labels) = labels {
            match_resources["objectSelector"] = json!({"matchLabels": labels});
        }
        let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"policyName": name, "validationActions": ["Deny"], "matchResources": match_resources},
        }))
        .unwrap();
        policies
            .create(&PostParams::default(), &policy)
            .await
            .unwrap();
        bindings
            .create(&PostParams::default(), &binding)
            .await
            .unwrap();
        Denial {
            client: env.client.clone(),
            name,
        }
    }

    /// Waits until `probe` (a write the policy covers) is refused.
    async fn until_effective<F, Fut>(&self, probe: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + T;
        while probe().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "policy {} never took effect",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn lift(&self) {
        let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(self.client.clone());
        let policies: Api<ValidatingAdmissionPolicy> = Api::all(self.client.clone());
        let _ = bindings.delete(&self.name, &DeleteParams::default()).await;
        let _ = policies.delete(&self.name, &DeleteParams::default()).await;
    }
}

/// Whether a merge patch of an annotation on `name` is allowed.
async fn annotate<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"test.example/probe": support::suffix()}}}),
        ),
    )
    .await
    .is_ok()
}

#[tokio::test]
async fn a_failed_secret_write_keeps_every_status_field_but_synced() {
    let w = world("failwrite", &[]).await;
    w.key("k", json!({})).await;
    w.wait_version("k", 1).await;
    w.rotate("k", "r1").await;
    let before = w.wait_version("k", 2).await;
    let was = before.status.clone().unwrap();
    assert_eq!(was.last_rotation_request.as_deref(), Some("r1"));

    let denial = Denial::install(
        &w.env,
        "",
        &["secrets"],
        Some(json!({"keyward.io/credential": "k"})),
    )
    .await;
    denial.until_effective(|| annotate(&w.secrets, "k")).await;
    w.rotate("k", "r2").await;
    let failed = wait_for(&w.keys, "k", "Synced=False", T, |k: &ApiKey| {
        condition(k, "Synced").is_some_and(|c| c.status == "False")
    })
    .await;
    let synced = condition(&failed, "Synced").unwrap();
    assert_eq!(synced.reason, "SyncFailed");
    let now = failed.status.clone().unwrap();
    assert_eq!(now.version, was.version, "the version is kept");
    assert_eq!(
        now.renewed_at, was.renewed_at,
        "the maxLifetime clock is kept"
    );
    assert_eq!(now.issued_at, was.issued_at);
    assert_eq!(now.last_rotated_at, was.last_rotated_at);
    assert_eq!(now.fingerprint, was.fingerprint);
    assert_eq!(now.last_rotation_request, was.last_rotation_request);
    assert_eq!(now.state, Some(CredentialState::Active));
    assert_eq!(
        condition(&failed, "OwnerBound").map(|c| &c.last_transition_time),
        condition(&before, "OwnerBound").map(|c| &c.last_transition_time),
        "the owner-grace clock is kept"
    );

    // Once the API server takes writes again, numbering goes on from where it was.
    denial.lift().await;
    let after = w.wait_version("k", 3).await;
    assert_eq!(
        after.status.unwrap().last_rotation_request.as_deref(),
        Some("r2")
    );
    w.cleanup(vec![]).await;
}

#[tokio::test]
async fn renaming_the_secret_withdraws_the_old_one() {
    let w = world("rename", &[]).await;
    w.key("k", json!({"secret": {"name": "first"}})).await;
    w.wait_version("k", 1).await;
    assert!(w.secrets.get_opt("first").await.unwrap().is_some());
    w.keys
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secret": {"name": "second"}}})),
        )
        .await
        .unwrap();
    wait_for(&w.secrets, "second", "the new Secret", T, |_: &Secret| true).await;
    wait_gone(&w.secrets, "first", T).await;
    // Expiry withdraws the one that is left, and nothing else remains.
    w.keys
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"expiresAt": "2020-01-01T00:00:00Z"}})),
        )
        .await
        .unwrap();
    wait_gone(&w.secrets, "second", T).await;
    let left = w
        .secrets
        .list(&ListParams::default().labels("keyward.io/credential=k"))
        .await
        .unwrap();
    assert!(left.items.is_empty(), "{:?}", left.items);
    w.cleanup(vec![]).await;
}

#[tokio::test]
async fn a_secret_created_between_the_read_and_the_write_is_never_adopted() {
    // Every Secret write waits 2 s after its read: a window a user's Secret lands in.
    let w = world("race", &[("KEYWARD_FAULT_WRITE_DELAY_MS", "2000")]).await;
    w.key("k", json!({})).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mine: Secret = serde_json::from_value(json!({
        "metadata": {"name": "k"},
        "stringData": {"api-key": "the user's own value"},
    }))
    .unwrap();
    w.secrets
        .create(&PostParams::default(), &mine)
        .await
        .expect("the user's Secret is created in the window");
    w.wait_reason("k", "SecretConflict").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secret = w.secrets.get("k").await.unwrap();
    assert_eq!(
        secret.data.clone().unwrap()["api-key"].0,
        b"the user's own value".to_vec(),
        "the user's value was overwritten"
    );
    assert!(
        secret.owner_references().is_empty(),
        "the user's Secret was adopted: {:?}",
        secret.owner_references()
    );
    assert!(!secret.labels().contains_key("keyward.io/credential"));
    w.cleanup(vec![]).await;
}

#[tokio::test]
async fn a_conflict_resolves_when_the_foreign_secret_goes_and_expires_on_time() {
    let w = world("conflict", &[]).await;
    for name in ["k", "e"] {
        let theirs: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": {"api-key": "theirs"},
        }))
        .unwrap();
        w.secrets
            .create(&PostParams::default(), &theirs)
            .await
            .unwrap();
    }
    w.key("k", json!({})).await;
    let expires = chrono::Utc::now() + chrono::Duration::seconds(6);
    w.key(
        "e",
        json!({"expiresAt": keyward::policy::format_time(expires)}),
    )
    .await;
    w.wait_reason("k", "SecretConflict").await;
    let conflicted = w.wait_reason("e", "SecretConflict").await;
    assert!(
        conflicted
            .status
            .as_ref()
            .and_then(|s| s.expires_at)
            .is_some(),
        "the effective expiry is shown while in conflict"
    );

    // The foreign Secret goes: the key is issued, with no other change to trigger it.
    w.secrets
        .delete("k", &DeleteParams::default())
        .await
        .unwrap();
    let issued = w.wait_version("k", 1).await;
    let secret = w.secrets.get("k").await.unwrap();
    assert_eq!(
        secret.owner_references().first().map(|r| r.uid.as_str()),
        issued.uid().as_deref()
    );

    // The conflicted key expires on time; the foreign Secret is left as it was.
    let expired = wait_for(&w.keys, "e", "Expired", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Expired)
    })
    .await;
    assert_eq!(ready(&expired).unwrap().reason, "Expired");
    let theirs = w.secrets.get("e").await.unwrap();
    assert_eq!(theirs.data.unwrap()["api-key"].0, b"theirs".to_vec());
    w.cleanup(vec![]).await;
}

#[tokio::test]
async fn a_rotation_whose_status_write_failed_is_announced_and_restarts_consumers_once() {
    let w = world("announce", &[]).await;
    let deployments = w.deployment("web").await;
    w.key(
        "k",
        json!({"consumers": [{"kind": "Deployment", "name": "web"}]}),
    )
    .await;
    w.wait_version("k", 1).await;

    // The status cannot be written, nor the consumer patched: the pass fails after the
    // Secret write, and is retried.
    let status_denial = Denial::install(&w.env, "keyward.io", &["apikeys/status"], None).await;
    status_denial
        .until_effective(|| async {
            w.keys
                .patch_status(
                    "k",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {}})),
                )
                .await
                .is_ok()
        })
        .await;
    let consumer_denial = Denial::install(
        &w.env,
        "apps",
        &["deployments"],
        Some(json!({"app": "web"})),
    )
    .await;
    consumer_denial
        .until_effective(|| annotate(&deployments, "web"))
        .await;
    // (A Deployment's generation counts annotation changes too, such as the probes.)
    let generation_before = deployments.get("web").await.unwrap().metadata.generation;
    w.rotate("k", "r1").await;
    wait_for(
        &w.secrets,
        "k",
        "version 2 in the Secret",
        T,
        |s: &Secret| {
            s.annotations()
                .get("keyward.io/version")
                .map(String::as_str)
                == Some("2")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        w.keys.get("k").await.unwrap().status.unwrap().version,
        Some(1)
    );

    consumer_denial.lift().await;
    let web = wait_for(&deployments, "web", "restarted", T, |d: &Deployment| {
        restarted_at(d).is_some()
    })
    .await;
    status_denial.lift().await;
    let k = w.wait_version("k", 2).await;
    let rotated_at = keyward::policy::format_time(k.status.unwrap().last_rotated_at.unwrap().0);
    assert_eq!(
        restarted_at(&web),
        Some(rotated_at),
        "restarted for that value"
    );

    // Let every retry settle, then restart the operator: nothing is announced or
    // restarted again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut w = w;
    w.op.restart().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rotated = w.events_of("k", "Rotated").await;
    assert_eq!(rotated.len(), 1, "one Rotated Event: {rotated:?}");
    let lines: Vec<Value> =
        w.op.audit()
            .into_iter()
            .filter(|a| a["action"] == "Rotated" && a["object"]["name"] == "k")
            .collect();
    assert_eq!(lines.len(), 1, "one audit line: {lines:?}");
    assert_eq!(lines[0]["version"], 2);
    let web = deployments.get("web").await.unwrap();
    assert_eq!(
        web.metadata.generation,
        generation_before.map(|g| g + 1),
        "the consumer was restarted exactly once"
    );
    w.cleanup(vec![status_denial, consumer_denial]).await;
}

#[tokio::test]
async fn a_rotation_requested_during_an_overlap_waits_for_its_end() {
    let w = world("overlap", &[]).await;
    w.key("k", json!({"rotation": {"every": "1h", "overlap": "8s"}}))
        .await;
    w.wait_version("k", 1).await;
    let value = |s: &Secret, key: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let first = value(&w.secrets.get("k").await.unwrap(), "api-key");
    w.rotate("k", "r1").await;
    let second = w.wait_version("k", 2).await;
    let until = second
        .status
        .as_ref()
        .and_then(|s| s.previous_valid_until)
        .expect("an overlap")
        .0;
    w.rotate("k", "r2").await;
    // Until the promised end, the first value is still served as the previous one.
    let mut checked = 0;
    while chrono::Utc::now() + chrono::Duration::milliseconds(500) < until {
        let s = w.secrets.get("k").await.unwrap();
        assert_eq!(
            value(&s, "api-key-previous"),
            first,
            "the previous value was replaced before its promised end"
        );
        checked += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(checked > 3, "checked {checked} times");
    let waiting = w.keys.get("k").await.unwrap();
    assert!(
        ready(&waiting).is_some_and(|c| c.message.contains("waits until")),
        "{:?}",
        ready(&waiting)
    );
    // Then the requested rotation happens.
    let third = w.wait_version("k", 3).await;
    assert_eq!(
        third.status.unwrap().last_rotation_request.as_deref(),
        Some("r2")
    );
    w.cleanup(vec![]).await;
}
