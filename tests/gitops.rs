//! What GitOps tools see of keyward's objects, on the real control plane: the Argo CD health
//! checks of `docs/gitops/argocd/` run (in Debian's `lua5.4`, through
//! `tests/gitops/driver.lua`) on objects as the API server serves them after the operator
//! brought them into each state, and `kubectl wait --for=condition=Ready`, which reads the
//! `Ready` condition as Flux's kstatus does.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use keyward::api::{
    ApiKey, CredentialState, IntegrationState, PartnerIntegration, ServiceAccountCredential as Sac,
    Tenant, TenantState,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::Operator;
use support::{TestEnv, wait_for};

const T: Duration = Duration::from_secs(30);

/// The kinds, each with its health script and the resource kubectl reads it by.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Tenant,
    PartnerIntegration,
    ApiKey,
    ServiceAccountCredential,
}

impl Kind {
    fn script(self) -> PathBuf {
        support::repo().join(format!("docs/gitops/argocd/keyward.io_{self:?}.lua"))
    }

    fn resource(self) -> &'static str {
        match self {
            Kind::Tenant => "tenants.keyward.io",
            Kind::PartnerIntegration => "partnerintegrations.keyward.io",
            Kind::ApiKey => "apikeys.keyward.io",
            Kind::ServiceAccountCredential => "serviceaccountcredentials.keyward.io",
        }
    }
}

/// What a health script returned.
#[derive(Debug, serde::Deserialize)]
struct Health {
    status: String,
    message: String,
}

/// Fails the test, saying how to get them, unless `lua5.4` and its cjson module are here.
fn require_lua() {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    let present = PRESENT.get_or_init(|| {
        Command::new("lua5.4")
            .args(["-e", "require('cjson')"])
            .output()
            .is_ok_and(|out| out.status.success())
    });
    assert!(
        *present,
        "lua5.4 with the cjson module is missing: run hack/gitops-tools.sh (it installs the Debian packages lua5.4 and lua-cjson)"
    );
}

/// Runs the health script of `kind` on `object` (JSON), as Argo CD would.
fn run_health_check(kind: Kind, object: &str) -> Health {
    require_lua();
    let mut child = Command::new("lua5.4")
        .arg(support::repo().join("tests/gitops/driver.lua"))
        .arg(kind.script())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting lua5.4");
    child
        .stdin
        .take()
        .expect("stdin of lua5.4")
        .write_all(object.as_bytes())
        .expect("writing the object to lua5.4");
    let out = child.wait_with_output().expect("running lua5.4");
    assert!(
        out.status.success(),
        "the {kind:?} health check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "the {kind:?} health check printed {}: {err}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// What Argo CD's health check says of `name` as the API server serves it now.
fn argo_health(kind: Kind, namespace: Option<&str>, name: &str) -> Health {
    let mut args = vec!["get", kind.resource(), name, "-o", "json"];
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    let object = support::kubectl_ok(&args);
    run_health_check(kind, &object)
}

/// Asserts the health of `name` and that its message contains `says`; returns the health.
fn assert_health(
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
    status: &str,
    says: &str,
) -> Health {
    let health = argo_health(kind, namespace, name);
    assert_eq!(
        health.status, status,
        "{kind:?} {name}: Argo CD health {health:?}, expected {status}"
    );
    assert!(
        health.message.contains(says),
        "{kind:?} {name}: the message {:?} does not say {says:?}",
        health.message
    );
    health
}

/// `kubectl wait --for=condition=Ready` on `target` (`apikey/NAME`, …).
fn kubectl_wait_ready(namespace: Option<&str>, target: &str, timeout: &str) -> Output {
    let timeout = format!("--timeout={timeout}");
    let mut args = vec!["wait", "--for=condition=Ready", timeout.as_str(), target];
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    support::kubectl(&args)
}

fn ready(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == "Ready")
}

fn in_secs(s: i64) -> String {
    keyward::policy::format_time(Utc::now() + chrono::Duration::seconds(s))
}

/// A fresh namespace, the Tenant that owns it (owner alice; `extra` is merged into its spec)
/// and the APIs of the four kinds; the operator is started by each test when it needs one.
struct World {
    env: TestEnv,
    tenant: String,
    tenants: Api<Tenant>,
    integrations: Api<PartnerIntegration>,
    keys: Api<ApiKey>,
    sacs: Api<Sac>,
}

async fn world(prefix: &str, extra: Value) -> World {
    require_lua();
    let env = TestEnv::new(prefix).await;
    let tenant = support::create_tenant(&env, extra).await;
    World {
        tenants: Api::all(env.client.clone()),
        integrations: Api::namespaced(env.client.clone(), &env.ns),
        keys: Api::namespaced(env.client.clone(), &env.ns),
        sacs: Api::namespaced(env.client.clone(), &env.ns),
        env,
        tenant,
    }
}

impl World {
    fn ns(&self) -> Option<&str> {
        Some(&self.env.ns)
    }

    /// A PartnerIntegration of this tenant owned by `owner`.
    async fn integration(&self, name: &str, owner: &str) {
        let spec = json!({"tenant": self.tenant, "owner": owner, "partner": {"name": "Globex"}});
        support::create(&self.integrations, name, spec).await;
    }

    async fn key(&self, name: &str, spec: Value) {
        support::create(&self.keys, name, spec).await;
    }

    async fn sac(&self, name: &str, spec: Value) {
        support::create(&self.sacs, name, spec).await;
    }

    async fn key_state(&self, name: &str, state: CredentialState) -> ApiKey {
        wait_for(&self.keys, name, &format!("{state:?}"), T, move |k| {
            k.status.as_ref().and_then(|s| s.state) == Some(state)
        })
        .await
    }

    async fn sac_state(&self, name: &str, state: CredentialState) -> Sac {
        wait_for(&self.sacs, name, &format!("{state:?}"), T, move |s| {
            s.status.as_ref().and_then(|s| s.state) == Some(state)
        })
        .await
    }

    async fn integration_state(&self, name: &str, state: IntegrationState) {
        wait_for(
            &self.integrations,
            name,
            &format!("{state:?}"),
            T,
            move |pi| pi.status.as_ref().and_then(|s| s.state) == Some(state),
        )
        .await;
    }

    /// Waits until the tenant's status describes its current spec and satisfies `cond`.
    async fn tenant_status(&self, what: &str, cond: impl Fn(&Tenant) -> bool + Send + 'static) {
        wait_for(&self.tenants, &self.tenant, what, T, move |t| {
            t.status.as_ref().and_then(|s| s.observed_generation) == t.metadata.generation
                && cond(t)
        })
        .await;
    }

    async fn cleanup(self) {
        let _ = self
            .tenants
            .delete(&self.tenant, &DeleteParams::default())
            .await;
        self.env.cleanup().await;
    }
}

#[test]
fn both_credential_kinds_are_judged_by_the_same_script() {
    let read = |kind: Kind| {
        std::fs::read_to_string(kind.script())
            .unwrap_or_else(|err| panic!("reading {}: {err}", kind.script().display()))
    };
    assert_eq!(
        read(Kind::ApiKey),
        read(Kind::ServiceAccountCredential),
        "the ApiKey and ServiceAccountCredential health checks are one mapping and must stay one file's copies"
    );
}

#[tokio::test]
async fn objects_are_progressing_until_the_operator_has_observed_their_current_spec() {
    let w = world("gitops-fresh", json!({})).await;
    w.integration("pi", "alice").await;
    w.key("k", json!({"integration": "pi"})).await;
    w.sac("s", json!({"tenant": w.tenant, "owner": "alice"}))
        .await;

    // No operator runs yet: nothing has a status.
    assert_health(
        Kind::Tenant,
        None,
        &w.tenant,
        "Progressing",
        "no status yet",
    );
    for (kind, name) in [
        (Kind::PartnerIntegration, "pi"),
        (Kind::ApiKey, "k"),
        (Kind::ServiceAccountCredential, "s"),
    ] {
        assert_health(kind, w.ns(), name, "Progressing", "no status yet");
    }
    let waited = kubectl_wait_ready(w.ns(), "apikey/k", "2s");
    assert!(
        !waited.status.success(),
        "kubectl wait passed an ApiKey with no status"
    );

    let mut op = Operator::start(&w.env.ns).await;
    w.key_state("k", CredentialState::Active).await;
    assert_health(Kind::ApiKey, w.ns(), "k", "Healthy", "Active: valid");

    // A spec change the operator has not seen: the Ready=True it wrote for generation 1 no
    // longer counts.
    op.kill().await;
    w.keys
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"generator": {"bytes": 24}}})),
        )
        .await
        .unwrap();
    assert_health(
        Kind::ApiKey,
        w.ns(),
        "k",
        "Progressing",
        "the spec is at generation 2, the status describes generation 1",
    );
    w.cleanup().await;
}

#[tokio::test]
async fn ready_objects_of_every_kind_are_healthy_and_pass_kubectl_wait() {
    let w = world("gitops-ready", json!({})).await;
    let _op = Operator::start(&w.env.ns).await;
    w.integration("pi", "alice").await;
    w.key("k", json!({"integration": "pi"})).await;
    w.sac("s", json!({"integration": "pi"})).await;
    w.integration_state("pi", IntegrationState::Active).await;
    w.key_state("k", CredentialState::Active).await;
    w.sac_state("s", CredentialState::Active).await;
    w.tenant_status("Ready", |t| {
        t.status
            .as_ref()
            .and_then(|s| ready(&s.conditions))
            .is_some_and(|c| c.status == "True")
    })
    .await;

    assert_health(
        Kind::Tenant,
        None,
        &w.tenant,
        "Healthy",
        "effective state Active",
    );
    assert_health(Kind::PartnerIntegration, w.ns(), "pi", "Healthy", "Active");
    assert_health(Kind::ApiKey, w.ns(), "k", "Healthy", "Active: valid");
    assert_health(
        Kind::ServiceAccountCredential,
        w.ns(),
        "s",
        "Healthy",
        "Active: valid",
    );

    let tenant = format!("tenant/{}", w.tenant);
    for (namespace, target) in [
        (None, tenant.as_str()),
        (w.ns(), "partnerintegration/pi"),
        (w.ns(), "apikey/k"),
        (w.ns(), "serviceaccountcredential/s"),
    ] {
        let out = kubectl_wait_ready(namespace, target, "30s");
        assert!(
            out.status.success(),
            "kubectl wait --for=condition=Ready {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    w.cleanup().await;
}

#[tokio::test]
async fn objects_the_operator_refuses_are_degraded_and_never_ready() {
    let w = world("gitops-refused", json!({})).await;
    let _op = Operator::start(&w.env.ns).await;
    // A Secret the ApiKey "taken" would write, made by someone else.
    let secrets: Api<Secret> = Api::namespaced(w.env.client.clone(), &w.env.ns);
    let mut foreign = Secret::default();
    foreign.metadata.name = Some("taken".into());
    foreign.string_data = Some([("api-key".to_owned(), "not-keywards".to_owned())].into());
    secrets
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    w.key("refused", json!({"tenant": w.tenant, "owner": "mallory"}))
        .await;
    w.key("taken", json!({"tenant": w.tenant, "owner": "alice"}))
        .await;
    w.integration("stranger", "mallory").await;

    w.key_state("refused", CredentialState::Invalid).await;
    wait_for(&w.keys, "taken", "SecretConflict", T, |k: &ApiKey| {
        k.status
            .as_ref()
            .and_then(|s| ready(&s.conditions))
            .is_some_and(|c| c.reason == "SecretConflict")
    })
    .await;
    w.integration_state("stranger", IntegrationState::Invalid)
        .await;

    let says = format!(
        "OwnerNotInTenant: mallory is not an owner of tenant {}",
        w.tenant
    );
    assert_health(Kind::ApiKey, w.ns(), "refused", "Degraded", &says);
    assert_health(
        Kind::ApiKey,
        w.ns(),
        "taken",
        "Degraded",
        "SecretConflict: a Secret of that name exists and is not controlled by this ApiKey",
    );
    assert_health(
        Kind::PartnerIntegration,
        w.ns(),
        "stranger",
        "Degraded",
        &says,
    );

    // kubectl wait (and Flux's kstatus) reads Ready=False as not ready: it never passes.
    let out = kubectl_wait_ready(w.ns(), "apikey/refused", "5s");
    assert!(
        !out.status.success(),
        "kubectl wait passed a refused ApiKey"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("timed out"), "kubectl wait: {stderr}");
    w.cleanup().await;
}

#[tokio::test]
async fn an_expired_key_is_degraded_and_names_its_deadline() {
    let w = world("gitops-expired", json!({})).await;
    let _op = Operator::start(&w.env.ns).await;
    w.key(
        "k",
        json!({"tenant": w.tenant, "owner": "alice", "expiresAt": in_secs(3)}),
    )
    .await;
    w.key_state("k", CredentialState::Expired).await;
    let health = assert_health(Kind::ApiKey, w.ns(), "k", "Degraded", "Expired: expired at");
    assert!(
        health.message.contains("its own expiresAt"),
        "{}",
        health.message
    );
    w.cleanup().await;
}

#[tokio::test]
async fn a_suspended_tenant_and_the_credentials_it_revokes_are_suspended() {
    let w = world("gitops-suspended", json!({})).await;
    let _op = Operator::start(&w.env.ns).await;
    w.integration("pi", "alice").await;
    w.key("k", json!({"integration": "pi"})).await;
    w.sac("s", json!({"integration": "pi"})).await;
    w.key_state("k", CredentialState::Active).await;
    w.sac_state("s", CredentialState::Active).await;

    w.tenants
        .patch(
            &w.tenant,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"state": "Suspended"}})),
        )
        .await
        .unwrap();
    w.tenant_status("Suspended", |t| {
        t.status.as_ref().and_then(|s| s.effective_state) == Some(TenantState::Suspended)
    })
    .await;
    w.integration_state("pi", IntegrationState::Suspended).await;
    w.key_state("k", CredentialState::Revoked).await;
    w.sac_state("s", CredentialState::Revoked).await;

    assert_health(
        Kind::Tenant,
        None,
        &w.tenant,
        "Suspended",
        "effective state Suspended",
    );
    let says = format!("TenantSuspended: tenant {} is Suspended", w.tenant);
    assert_health(Kind::PartnerIntegration, w.ns(), "pi", "Suspended", &says);
    assert_health(Kind::ApiKey, w.ns(), "k", "Suspended", &says);
    assert_health(
        Kind::ServiceAccountCredential,
        w.ns(),
        "s",
        "Suspended",
        &says,
    );
    w.cleanup().await;
}

#[tokio::test]
async fn a_tenant_whose_parent_is_missing_is_degraded() {
    let parent = format!("missing-{}", support::suffix());
    let w = world("gitops-orphan", json!({"parent": parent})).await;
    let _op = Operator::start(&w.env.ns).await;
    w.tenant_status("InvalidParent", |t| {
        t.status
            .as_ref()
            .and_then(|s| ready(&s.conditions))
            .is_some_and(|c| c.reason == "InvalidParent")
    })
    .await;
    let health = assert_health(Kind::Tenant, None, &w.tenant, "Degraded", "InvalidParent: ");
    assert!(health.message.contains(&parent), "{}", health.message);
    w.cleanup().await;
}
