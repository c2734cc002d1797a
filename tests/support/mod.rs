//! Test support for integration tests on the local control plane (`make cluster-up`):
//! a client for it, the CRDs installed once, a fresh namespace per test, and kubectl.
#![allow(dead_code)]

pub mod fault;
pub mod metrics;
pub mod operator;
pub mod vault;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;

const FIELD_MANAGER: &str = "keyward-tests";

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Admin kubeconfig of the local plane; `KEYWARD_KUBECONFIG` overrides it.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("KEYWARD_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cluster/kubeconfig"))
}

/// The kubeconfig `keyward run` uses in the tests: the chart's ServiceAccount
/// (keyward-system/keyward) through a token, never the admin certificate, so every test
/// also proves the chart's RBAC (tests/rbac.rs reads the audit log).
/// `KEYWARD_OPERATOR_KUBECONFIG` overrides it.
pub fn operator_kubeconfig_path() -> PathBuf {
    let path = std::env::var_os("KEYWARD_OPERATOR_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cluster/operator.kubeconfig"));
    assert!(
        path.exists(),
        "{} is missing: run `hack/operator-identity.sh` after `make cluster-up` (`make integration` and `make test` do)",
        path.display()
    );
    path
}

/// The chart grants leader election in its release namespace with a RoleBinding to the
/// ClusterRole `keyward-leader-election`; a test whose replicas hold their Lease in the
/// test's namespace gets the same binding there.
pub async fn grant_leader_election(namespace: &str) {
    use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
    let bindings: Api<RoleBinding> = Api::namespaced(client().await, namespace);
    let binding = RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some("keyward-leader-election".to_owned()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "ClusterRole".to_owned(),
            name: "keyward-leader-election".to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: "keyward".to_owned(),
            namespace: Some("keyward-system".to_owned()),
            ..Default::default()
        }]),
    };
    match bindings.create(&PostParams::default(), &binding).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(err) => panic!("granting leader election in {namespace}: {err}"),
    }
}

/// One integration test's view of the cluster: a client and a namespace of its own.
pub struct TestEnv {
    pub client: Client,
    pub ns: String,
}

impl TestEnv {
    /// Connects to the local plane, installs the CRDs (once per test binary) and creates a
    /// fresh namespace whose name starts with `prefix`.
    pub async fn new(prefix: &str) -> Self {
        let client = client().await;
        CRDS.get_or_init(|| install_crds(client.clone())).await;
        let ns = format!("{prefix}-{}", suffix());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let mut object = Namespace::default();
        object.metadata.name = Some(ns.clone());
        object.metadata.labels = Some([("keyward.io/test".to_owned(), "true".to_owned())].into());
        namespaces
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|err| panic!("creating test namespace {ns}: {err}"));
        Self { client, ns }
    }

    /// Starts deleting the namespace; namespace deletion takes seconds, so tests do not wait.
    pub async fn cleanup(self) {
        let namespaces: Api<Namespace> = Api::all(self.client);
        let _ = namespaces
            .delete(&self.ns, &DeleteParams::background())
            .await;
    }

    /// Runs the control plane's kubectl against it.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl(args)
    }
}

static CRDS: OnceCell<()> = OnceCell::const_new();

/// The local plane's client configuration.
pub async fn config() -> Config {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|_| {
        panic!(
            "no local control plane ({} is missing): run `make cluster-up` first, or `make test`",
            path.display()
        )
    });
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// A client for the local plane, or a one-line failure saying how to start it.
pub async fn client() -> Client {
    let client =
        Client::try_from(config().await).unwrap_or_else(|err| panic!("building client: {err}"));
    match tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await {
        Ok(Ok(_)) => client,
        _ => panic!(
            "the local control plane in {} does not answer: run `make cluster-up`",
            kubeconfig_path().display()
        ),
    }
}

/// Applies the CRDs from `crds/` (what users install) and waits until each is Established.
async fn install_crds(client: Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for crd in committed_crds() {
        let name = crd.name_any();
        crds.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|err| panic!("installing CRD {name}: {err}"));
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not Established within 30s"))
        .unwrap_or_else(|err| panic!("watching CRD {name}: {err}"));
    }
}

/// The CRDs as committed under `crds/`.
pub fn committed_crds() -> Vec<CustomResourceDefinition> {
    let path = repo().join("crds/keyward.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|err| panic!("parsing {}: {err}", path.display()))
}

/// A short random suffix for object names.
pub fn suffix() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric
        .sample_string(&mut rand::rng(), 6)
        .to_ascii_lowercase()
}

/// The kubectl built with the control plane (`KEYWARD_KUBECTL` overrides it).
pub fn kubectl_path() -> PathBuf {
    if let Some(path) = std::env::var_os("KEYWARD_KUBECTL") {
        return PathBuf::from(path);
    }
    repo().join(".cluster/bin/kubectl")
}

/// Runs kubectl against the local plane and returns what it printed.
pub fn kubectl(args: &[&str]) -> Output {
    let path = kubectl_path();
    // A discovery cache of this process's own: one written before the CRDs were installed
    // would hide the keyward kinds and categories.
    let cache = std::env::temp_dir().join(format!("keyward-kubectl-{}", std::process::id()));
    std::process::Command::new(&path)
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err} (run `make cluster-up`)", path.display()))
}

/// Runs kubectl and returns its standard output, failing the test when kubectl fails.
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = kubectl(args);
    assert!(
        out.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (watching, not polling) until `name` satisfies `cond`; on timeout fails with the
/// object as it was.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    cond: impl Fn(&K) -> bool + Send + 'static,
) -> K
where
    K: Resource
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + serde::Serialize
        + Send
        + Sync
        + 'static,
{
    let waited = tokio::time::timeout(
        timeout,
        await_condition(api.clone(), name, move |obj: Option<&K>| {
            obj.is_some_and(&cond)
        }),
    )
    .await;
    match waited {
        Ok(Ok(Some(obj))) => obj,
        _ => {
            let now = api.get_opt(name).await.ok().flatten();
            panic!(
                "{name}: not {what} within {timeout:?}; now: {}",
                serde_json::to_string_pretty(&now).unwrap_or_default()
            )
        }
    }
}

/// Waits until `name` is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let waited = tokio::time::timeout(
        timeout,
        await_condition(api.clone(), name, |obj: Option<&K>| obj.is_none()),
    )
    .await;
    if waited.is_err() && api.get_opt(name).await.ok().flatten().is_some() {
        panic!("{name}: still present after {timeout:?}");
    }
}

/// `base` with the top-level fields of `extra` set over it.
pub fn merged(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        base[k] = v;
    }
    base
}

/// Creates a keyward object of `kind` named `name` with `spec` through `api`.
pub async fn create<K>(api: &Api<K>, name: &str, spec: serde_json::Value) -> K
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(serde_json::json!({
        "apiVersion": K::api_version(&()), "kind": K::kind(&()),
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap_or_else(|err| panic!("building {} {name}: {err}", K::kind(&())));
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|err| panic!("creating {} {name}: {err}", K::kind(&())))
}

/// Creates the Tenant `t-<namespace>` that owns the test's namespace, with owner `alice`
/// (a User); `extra` is set over that spec. Returns its name.
pub async fn create_tenant(env: &TestEnv, extra: serde_json::Value) -> String {
    let name = format!("t-{}", env.ns);
    let spec = merged(
        serde_json::json!({"namespaces": [env.ns], "owners": [{"name": "alice", "kind": "User"}]}),
        extra,
    );
    create(
        &Api::<keyward::api::Tenant>::all(env.client.clone()),
        &name,
        spec,
    )
    .await;
    name
}
