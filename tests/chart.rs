//! The Helm chart (charts/keyward), with the helm CLI hack/build-helm.sh builds from Go
//! modules: it lints, renders with default and all-options values, every rendered object is
//! accepted by the real API server (server-side dry run), the controller's pod is admitted
//! under the `restricted` Pod Security Standard, and the aggregated roles give a
//! namespace's admins its credentials but not Tenants.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::TestEnv;

fn helm() -> PathBuf {
    let out = Command::new(support::repo().join("hack/build-helm.sh"))
        .arg("--bin")
        .output()
        .expect("running hack/build-helm.sh --bin");
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        path.is_file(),
        "no helm at {}: run hack/build-helm.sh (make test does)",
        path.display()
    );
    path
}

fn chart() -> PathBuf {
    support::repo().join("charts/keyward")
}

fn all_options() -> PathBuf {
    chart().join("ci/all-options-values.yaml")
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|err| panic!("{cmd:?}: {err}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `helm template` of the chart as release `release` in `namespace`.
fn render(release: &str, namespace: &str, extra: &[&str]) -> String {
    let (ok, out, err) = run(Command::new(helm())
        .args(["template", release])
        .arg(chart())
        .args(["--namespace", namespace])
        .args(extra));
    assert!(ok, "helm template {extra:?} failed:\n{err}");
    out
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .expect("helm template prints YAML")
        .into_iter()
        .filter(|d| d.is_object())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// Applies `yaml` to the plane with a server-side dry run: (success, stderr).
fn dry_run_apply(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, yaml).expect("writing manifests");
    let out = support::kubectl(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "--force-conflicts",
        "--field-manager=chart-check",
        "-f",
        file.to_str().expect("utf-8 path"),
    ]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The prometheus-operator CRDs, generated from its published API types
/// (hack/monitoring-crds.sh), so the optional ServiceMonitor and PrometheusRule are checked
/// by the API server too.
fn install_monitoring_crds() {
    let out = Command::new(support::repo().join("hack/monitoring-crds.sh"))
        .output()
        .expect("running hack/monitoring-crds.sh");
    assert!(
        out.status.success(),
        "hack/monitoring-crds.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(Path::new(&dir).is_dir(), "no CRD directory {dir}");
    support::kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=chart-check",
        "-f",
        &dir,
    ]);
    support::kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "-f",
        &dir,
    ]);
}

#[test]
fn helm_lint_passes_with_default_and_all_options_values() {
    for values in [None, Some(all_options())] {
        let mut cmd = Command::new(helm());
        cmd.args(["lint", "--strict"]).arg(chart());
        if let Some(v) = &values {
            cmd.arg("-f").arg(v);
        }
        let (ok, out, err) = run(&mut cmd);
        assert!(ok, "helm lint {values:?}:\n{out}{err}");
    }
}

#[test]
fn values_outside_the_schema_are_refused_naming_the_field() {
    for (set, field) in [
        ("controller.concurrency=0", "/controller/concurrency"),
        ("controller.kubeBurst=0", "/controller/kubeBurst"),
        ("controller.kubeQps=-1", "/controller/kubeQps"),
        ("controller.scanInterval=1d", "/controller/scanInterval"),
        ("vault.prefix=keyward", "/vault/prefix"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("replicaCount=0", "/replicaCount"),
        ("unknownValue=1", "unknownValue"),
    ] {
        let (ok, _, err) = run(Command::new(helm())
            .args(["template", "k"])
            .arg(chart())
            .args(["--set", set]));
        assert!(!ok, "--set {set} was accepted");
        assert!(err.contains(field), "--set {set}: {err}");
    }
}

#[test]
fn the_default_install_is_two_leader_elected_replicas_meeting_the_restricted_standard() {
    let docs = documents(&render("keyward", "keyward-system", &[]));
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 1);
    let d = deployments[0];
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args.first(), Some(&"run"));
    assert!(args.contains(&"--leader-elect"), "{args:?}");
    assert_eq!(
        c["image"],
        format!("ghcr.io/keyward/keyward:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    // The Lease namespace comes from the pod's own namespace.
    assert!(
        c["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|e| e["name"] == "POD_NAMESPACE"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace")
    );
    // Optional parts are off by default.
    for kind in [
        "ServiceMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "FlowSchema",
        "PriorityLevelConfiguration",
    ] {
        assert!(
            of_kind(&docs, kind).is_empty(),
            "{kind} rendered by default"
        );
    }
    let services = of_kind(&docs, "Service");
    assert_eq!(services.len(), 1, "the metrics Service");
}

#[test]
fn all_options_render_every_optional_part() {
    let docs = documents(&render(
        "keyward",
        "keyward-system",
        &["-f", all_options().to_str().expect("utf-8")],
    ));
    for kind in [
        "ServiceMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "PriorityLevelConfiguration",
    ] {
        assert_eq!(of_kind(&docs, kind).len(), 1, "{kind}");
    }
    // keyward's requests at its own level, its Lease at the built-in leader-election one.
    let schemas: Vec<&str> = of_kind(&docs, "FlowSchema")
        .into_iter()
        .filter_map(|f| f["spec"]["priorityLevelConfiguration"]["name"].as_str())
        .collect();
    assert_eq!(schemas, ["leader-election", "keyward"]);
    let c = &of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for flag in [
        "--vault-addr=https://vault.vault.svc:8200",
        "--vault-role=keyward",
        "--vault-prefix=platform/{tenant}/{namespace}",
        "--vault-ca-cert=/etc/keyward/vault-ca/ca.crt",
        "--namespace=team-a",
        "--concurrency=8",
        "--kube-qps=50",
        "--kube-burst=100",
    ] {
        assert!(args.contains(&flag), "{flag} not in {args:?}");
    }
    assert!(
        c["image"].as_str().expect("image").contains("@sha256:"),
        "the digest wins over the tag"
    );
    // Token requests only where listed, and no cluster-wide grant of them.
    let controller = of_kind(&docs, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "keyward-controller")
        .expect("the controller's ClusterRole");
    let rules = controller["rules"].to_string();
    assert!(!rules.contains("serviceaccounts/token"), "{rules}");
    assert!(
        !rules.contains("deployments"),
        "restartConsumers=false: {rules}"
    );
    let token_bindings: Vec<&str> = of_kind(&docs, "RoleBinding")
        .into_iter()
        .filter(|b| b["roleRef"]["name"] == "keyward-token-requester")
        .filter_map(|b| b["metadata"]["namespace"].as_str())
        .collect();
    assert_eq!(token_bindings, ["team-a", "team-b"]);
}

#[tokio::test]
async fn every_rendered_object_is_accepted_by_the_api_server() {
    let env = TestEnv::new("chart").await;
    install_monitoring_crds();
    let ns = env.ns.as_str();
    // A release of another name than the installed one (hack/operator-identity.sh), in
    // the test's namespace; token requests granted in that namespace only.
    let list = format!("rbac.tokenRequestNamespaces={{{ns}}}");
    let controller_ns = format!("controller.namespace={ns}");
    for extra in [
        vec![],
        vec![
            "-f",
            all_options().to_str().expect("utf-8"),
            "--set",
            &list,
            "--set",
            &controller_ns,
        ],
    ] {
        let yaml = render("chart-check", ns, &extra);
        let (ok, err) = dry_run_apply(&yaml);
        assert!(ok, "values {extra:?} refused by the API server:\n{err}");
        assert!(!err.contains("Warning"), "values {extra:?}: {err}");
    }
    env.cleanup().await;
}

#[tokio::test]
async fn the_controllers_pod_is_admitted_under_the_restricted_pod_security_standard() {
    let env = TestEnv::new("chart-pss").await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    namespaces
        .patch(
            &env.ns,
            &PatchParams::apply("chart-check"),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": env.ns, "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                }},
            })),
        )
        .await
        .expect("labelling the namespace restricted");
    let docs = documents(&render("keyward", &env.ns, &[]));
    // The pod's ServiceAccount must exist for it to be admitted: the chart's, for real.
    let account = of_kind(&docs, "ServiceAccount")[0].to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sa.json");
    std::fs::write(&file, account).expect("writing the ServiceAccount");
    support::kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        file.to_str().expect("utf-8"),
    ]);
    let template = &of_kind(&docs, "Deployment")[0]["spec"]["template"];
    let pod = |spec: &Value| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "keyward-pss", "namespace": env.ns, "labels": template["metadata"]["labels"]},
            "spec": spec,
        })
        .to_string()
    };
    // The PodSecurity admission plugin judges Pods when they are created: a server-side
    // dry run of the pod the Deployment would create.
    let (ok, err) = dry_run_apply(&pod(&template["spec"]));
    assert!(
        ok,
        "the chart's pod is refused in a restricted namespace:\n{err}"
    );
    // The same check refuses a pod that drops one requirement (so it can fail).
    let mut weaker = template["spec"].clone();
    weaker["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
    let (ok, err) = dry_run_apply(&pod(&weaker));
    assert!(
        !ok && err.contains("restricted"),
        "a pod allowing privilege escalation was admitted: {err}"
    );
    env.cleanup().await;
}

/// Whether `user` (with no groups) may `verb` `resource` in `namespace` (or cluster-wide).
fn can(user: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let mut args = vec!["auth", "can-i", verb, resource, "--as", user];
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    let out = support::kubectl(&args);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

#[tokio::test]
async fn a_namespace_admin_manages_its_credentials_through_the_built_in_roles_but_not_tenants() {
    // hack/operator-identity.sh installed the chart's RBAC, keyward:edit and keyward:view
    // with it; the plane's clusterrole-aggregation controller folds them into admin, edit
    // and view.
    let env = TestEnv::new("chart-rbac").await;
    let ns = env.ns.as_str();
    let admin = format!("{ns}-admin");
    let viewer = format!("{ns}-viewer");
    support::kubectl_ok(&[
        "create",
        "rolebinding",
        "tenant-admins",
        "--clusterrole=admin",
        &format!("--user={admin}"),
        "-n",
        ns,
    ]);
    support::kubectl_ok(&[
        "create",
        "rolebinding",
        "tenant-viewers",
        "--clusterrole=view",
        &format!("--user={viewer}"),
        "-n",
        ns,
    ]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !can(&admin, "create", "apikeys.keyward.io", Some(ns)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "admin in {ns} cannot create ApiKeys within 30s: is keyward:edit aggregated?"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for resource in [
        "apikeys.keyward.io",
        "serviceaccountcredentials.keyward.io",
        "partnerintegrations.keyward.io",
    ] {
        for verb in ["create", "update", "delete", "list"] {
            assert!(
                can(&admin, verb, resource, Some(ns)),
                "admin {verb} {resource}"
            );
        }
        assert!(
            can(&viewer, "list", resource, Some(ns)),
            "viewer list {resource}"
        );
        assert!(
            !can(&viewer, "create", resource, Some(ns)),
            "viewer create {resource}"
        );
        // Only in their namespace.
        assert!(
            !can(&admin, "create", resource, Some("default")),
            "admin {resource} elsewhere"
        );
    }
    // Tenants decide which namespaces belong to whom: platform admins only.
    for verb in ["create", "update", "patch", "delete"] {
        assert!(
            !can(&admin, verb, "tenants.keyward.io", None),
            "admin {verb} tenants"
        );
    }
    env.cleanup().await;
}
