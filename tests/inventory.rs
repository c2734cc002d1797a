//! Inventory findings and `keyward report` on the real control plane: a small world of three
//! tenants (one offboarded) with every kind of finding, read back through the built binary
//! as JSON, CSV and a table, with `--fail-on` exit codes, and never a value in any output.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use keyward::api::{ApiKey, CredentialState, PartnerIntegration, Tenant};
use kube::api::{Api, DeleteParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::metrics::{gauge, store, wait_metrics};
use support::operator::Operator;
use support::{TestEnv, wait_for};

const T: Duration = Duration::from_secs(30);

/// `(finding, kind, name)` of one finding, as the report prints it.
type Row = (String, String, String);

fn row(finding: &str, kind: &str, name: &str) -> Row {
    (finding.to_owned(), kind.to_owned(), name.to_owned())
}

/// Creates a core object from its JSON form.
async fn make<K>(api: &Api<K>, object: Value) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let typed: K = serde_json::from_value(object.clone())
        .unwrap_or_else(|err| panic!("building {object}: {err}"));
    api.create(&PostParams::default(), &typed)
        .await
        .unwrap_or_else(|err| panic!("creating {object}: {err}"))
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the built `keyward report` against the local plane.
async fn report(args: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .arg("report")
        .args(args)
        .env("KUBECONFIG", support::kubeconfig_path())
        .output()
        .await
        .expect("running keyward report");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The JSON report of `tenant`.
async fn json_report(tenant: &str) -> Value {
    let out = report(&["-o", "json", "--tenant", tenant]).await;
    assert_eq!(out.code, 0, "keyward report failed: {}", out.stderr);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|err| panic!("report is not one JSON object ({err}):\n{}", out.stdout))
}

fn rows(report: &Value) -> BTreeSet<Row> {
    report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["finding"].as_str().unwrap_or_default().to_owned(),
                f["kind"].as_str().unwrap_or_default().to_owned(),
                f["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Runs the JSON report of `tenant` until it holds every `expected` finding (some appear
/// only once time passes or the operator has settled), and returns it.
async fn report_with(tenant: &str, expected: &BTreeSet<Row>) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let report = json_report(tenant).await;
        let found = rows(&report);
        if expected.is_subset(&found) {
            return report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tenant {tenant}: missing {:?} in {report:#}",
            expected.difference(&found).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Three tenants in three fresh namespaces: `a` (an operator issues its keys), `b`
/// (staleAfter 1s, so everything unmanaged in it turns stale at once) and `c` (Offboarded).
struct World {
    a: TestEnv,
    b: TestEnv,
    c: TestEnv,
    _op: Operator,
    tenants: [String; 3],
    cluster_role: String,
    /// Every credential value the world holds; none may ever be printed.
    values: Vec<String>,
}

impl World {
    async fn build() -> Self {
        let (a, b, c) = (
            TestEnv::new("inv-a").await,
            TestEnv::new("inv-b").await,
            TestEnv::new("inv-c").await,
        );
        let ta = support::create_tenant(&a, json!({})).await;
        let tb = support::create_tenant(
            &b,
            json!({"owners": [{"name": "bob", "kind": "User"}], "policy": {"staleAfter": "1s"}}),
        )
        .await;
        let tc = support::create_tenant(&c, json!({"state": "Offboarded"})).await;
        let op = Operator::start(&a.ns).await;

        // Tenant a: keys in every state, an unowned Secret, and two bindings that let
        // tenant b's ServiceAccounts read a's Secrets.
        let keys: Api<ApiKey> = Api::namespaced(a.client.clone(), &a.ns);
        support::create(&keys, "live", json!({"tenant": ta, "owner": "alice"})).await;
        support::create(
            &keys,
            "expired",
            json!({"tenant": ta, "owner": "alice", "expiresAt": "2020-01-01T00:00:00Z"}),
        )
        .await;
        support::create(
            &Api::<PartnerIntegration>::namespaced(a.client.clone(), &a.ns),
            "paused",
            json!({"tenant": ta, "owner": "alice", "partner": {"name": "Globex"}, "suspended": true}),
        )
        .await;
        support::create(&keys, "revoked", json!({"integration": "paused"})).await;
        support::create(&keys, "invalid", json!({"tenant": ta, "owner": "mallory"})).await;
        support::create(&keys, "foreign", json!({"tenant": tb, "owner": "bob"})).await;

        let secrets_a: Api<Secret> = Api::namespaced(a.client.clone(), &a.ns);
        make(
            &secrets_a,
            json!({"metadata": {"name": "plain"}, "stringData": {"password": "hunter2-inventory"}}),
        )
        .await;
        make(&secrets_a, json!({"metadata": {"name": "owned", "annotations": {"keyward.io/owner": "alice"}}, "stringData": {"password": "hunter3-inventory"}})).await;
        make(
            &Api::<Role>::namespaced(a.client.clone(), &a.ns),
            json!({"metadata": {"name": "read-secrets"}, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}),
        )
        .await;
        let cluster_role = format!("inv-secrets-{}", a.ns);
        make(
            &Api::<ClusterRole>::all(a.client.clone()),
            json!({"metadata": {"name": cluster_role}, "rules": [{"apiGroups": ["*"], "resources": ["secrets"], "verbs": ["*"]}]}),
        )
        .await;
        let bindings: Api<RoleBinding> = Api::namespaced(a.client.clone(), &a.ns);
        make(&bindings, json!({
            "metadata": {"name": "to-b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-secrets"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": b.ns}],
        }))
        .await;
        make(&bindings, json!({
            "metadata": {"name": "to-all-of-b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": format!("system:serviceaccounts:{}", b.ns)}],
        }))
        .await;

        let live = wait_for(&keys, "live", "Active", T, |k: &ApiKey| {
            state(k) == Some(CredentialState::Active)
        })
        .await;
        for (name, s) in [
            ("expired", CredentialState::Expired),
            ("revoked", CredentialState::Revoked),
            ("invalid", CredentialState::Invalid),
            ("foreign", CredentialState::Invalid),
        ] {
            wait_for(&keys, name, &format!("{s:?}"), T, move |k: &ApiKey| {
                state(k) == Some(s)
            })
            .await;
        }
        assert!(live.status.and_then(|s| s.fingerprint).is_some());
        let value = secrets_a
            .get("live")
            .await
            .expect("the live key's Secret")
            .data
            .and_then(|d| d.get("api-key").cloned())
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .expect("a value under api-key");

        // Tenant b: a copy of a's value, the reader ServiceAccount, and a legacy token last
        // used long ago.
        let secrets_b: Api<Secret> = Api::namespaced(b.client.clone(), &b.ns);
        let accounts_b: Api<ServiceAccount> = Api::namespaced(b.client.clone(), &b.ns);
        make(&secrets_b, json!({"metadata": {"name": "copied", "annotations": {"keyward.io/owner": "bob"}}, "stringData": {"token": value}})).await;
        make(&accounts_b, json!({"metadata": {"name": "reader"}})).await;
        make(&accounts_b, json!({"metadata": {"name": "legacy"}})).await;
        make(
            &secrets_b,
            json!({
                "metadata": {
                    "name": "legacy-token",
                    "annotations": {"kubernetes.io/service-account.name": "legacy"},
                    "labels": {"kubernetes.io/legacy-token-last-used": "2020-01-01"},
                },
                "type": "kubernetes.io/service-account-token",
            }),
        )
        .await;
        // The controller-manager fills the legacy token in; it is a value too.
        let legacy = wait_for(&secrets_b, "legacy-token", "filled in", T, |s: &Secret| {
            s.data.as_ref().is_some_and(|d| d.contains_key("token"))
        })
        .await;
        let legacy_token = legacy
            .data
            .and_then(|d| d.get("token").cloned())
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default();

        // Tenant c (Offboarded): leftovers.
        make(
            &Api::<Secret>::namespaced(c.client.clone(), &c.ns),
            json!({"metadata": {"name": "leftover"}, "stringData": {"k": "v-inventory"}}),
        )
        .await;
        make(
            &Api::<ServiceAccount>::namespaced(c.client.clone(), &c.ns),
            json!({"metadata": {"name": "leftover-sa"}}),
        )
        .await;

        Self {
            a,
            b,
            c,
            _op: op,
            tenants: [ta, tb, tc],
            cluster_role,
            values: vec![
                value,
                legacy_token,
                "hunter2-inventory".into(),
                "hunter3-inventory".into(),
            ],
        }
    }

    fn assert_no_value(&self, out: &Output) {
        for value in &self.values {
            assert!(
                !out.stdout.contains(value.as_str()) && !out.stderr.contains(value.as_str()),
                "a credential value appears in the report's output"
            );
        }
    }

    async fn cleanup(self) {
        let tenants: Api<Tenant> = Api::all(self.a.client.clone());
        for t in &self.tenants {
            let _ = tenants.delete(t, &DeleteParams::default()).await;
        }
        let _ = Api::<ClusterRole>::all(self.a.client.clone())
            .delete(&self.cluster_role, &DeleteParams::default())
            .await;
        self.a.cleanup().await;
        self.b.cleanup().await;
        self.c.cleanup().await;
    }
}

fn state(k: &ApiKey) -> Option<CredentialState> {
    k.status.as_ref().and_then(|s| s.state)
}

#[tokio::test]
async fn report_shows_every_finding_in_every_format_and_never_a_value() {
    let w = World::build().await;
    let [ta, tb, tc] = w.tenants.clone();

    // Tenant a: managed credentials in every failed state, a key of another tenant, a value
    // copied out, two RBAC grants to tenant b, an unowned Secret.
    let expected_a: BTreeSet<Row> = [
        row("Expired", "ApiKey", "expired"),
        row("Revoked", "ApiKey", "revoked"),
        row("Invalid", "ApiKey", "invalid"),
        row("Invalid", "ApiKey", "foreign"),
        row("CrossTenant", "ApiKey", "foreign"),
        row("CrossTenant", "ApiKey", "live"),
        row("CrossTenant", "RoleBinding", "to-b"),
        row("CrossTenant", "RoleBinding", "to-all-of-b"),
        row("Unowned", "Secret", "plain"),
    ]
    .into();
    let a = report_with(&ta, &expected_a).await;
    assert_eq!(
        rows(&a),
        expected_a,
        "exactly these findings in tenant a's namespace"
    );
    for f in a["findings"].as_array().unwrap() {
        assert_eq!(f["tenant"], json!(ta));
        assert_eq!(f["namespace"], json!(w.a.ns));
        assert!(f["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let copy = a["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "live")
        .unwrap();
    let message = copy["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("Secret {}/copied", w.b.ns)) && message.contains(&tb),
        "the copy's namespace and Secret are named: {message}"
    );
    let credentials: BTreeSet<(String, String, String)> = a["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["kind"], "ApiKey");
            assert_eq!(c["tenant"], json!(ta));
            (
                c["name"].as_str().unwrap().to_owned(),
                c["state"].as_str().unwrap_or_default().to_owned(),
                c["owner"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        credentials,
        [
            ("expired".into(), "Expired".into(), "alice".into()),
            ("foreign".into(), "Invalid".into(), "bob".into()),
            ("invalid".into(), "Invalid".into(), "mallory".into()),
            ("live".into(), "Active".into(), "alice".into()),
            ("revoked".into(), "Revoked".into(), "alice".into()),
        ]
        .into()
    );
    let live = a["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "live")
        .unwrap();
    assert_eq!(live["version"], 1);
    assert!(live["lastRotatedAt"].is_string());
    assert!(live["expiresAt"].is_null());

    // Tenant b (staleAfter 1s): the copy is stale but owned; the legacy token is stale by
    // its last use and, being a legacy token, not Unowned.
    let expected_b: BTreeSet<Row> = [
        row("Stale", "Secret", "copied"),
        row("Stale", "Secret", "legacy-token"),
    ]
    .into();
    let b = report_with(&tb, &expected_b).await;
    assert_eq!(rows(&b), expected_b);
    let legacy = b["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "legacy-token")
        .unwrap();
    assert!(
        legacy["message"]
            .as_str()
            .unwrap()
            .contains("last used on 2020-01-01")
    );
    assert_eq!(b["credentials"], json!([]));

    // Tenant c (Offboarded): everything left over, but not the default ServiceAccount.
    let expected_c: BTreeSet<Row> = [
        row("OrphanedByOffboarding", "Secret", "leftover"),
        row("OrphanedByOffboarding", "ServiceAccount", "leftover-sa"),
    ]
    .into();
    let c = report_with(&tc, &expected_c).await;
    assert_eq!(rows(&c), expected_c);

    // --finding narrows the findings only.
    let out = report(&["-o", "json", "--tenant", &ta, "--finding", "CrossTenant"]).await;
    let narrowed: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(rows(&narrowed).len(), 4);
    assert!(rows(&narrowed).iter().all(|(f, _, _)| f == "CrossTenant"));
    assert_eq!(narrowed["credentials"].as_array().unwrap().len(), 5);
    w.assert_no_value(&out);

    // CSV: a header, then one line per finding.
    let out = report(&["-o", "csv", "--tenant", &tc]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "finding,tenant,namespace,kind,name,message");
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[1].starts_with(&format!(
        "OrphanedByOffboarding,{tc},{},Secret,leftover,",
        w.c.ns
    )));
    w.assert_no_value(&out);

    // Table: most severe first, then the credentials.
    let out = report(&["--tenant", &ta]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let table: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(table[0], "FINDINGS (9)");
    assert!(table[2].starts_with("CrossTenant "), "{}", out.stdout);
    assert!(table[10].starts_with("Unowned "), "{}", out.stdout);
    assert!(out.stdout.contains("CREDENTIALS (5)"), "{}", out.stdout);
    assert!(
        out.stdout.contains(" ago (2020-01-01T00:00:00Z)"),
        "{}",
        out.stdout
    );
    w.assert_no_value(&out);

    // --fail-on: 1 when such a finding is in scope, 0 otherwise; the report is printed either way.
    let out = report(&["--tenant", &tc, "--fail-on", "OrphanedByOffboarding"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.contains("leftover-sa"));
    let out = report(&[
        "--tenant",
        &ta,
        "--fail-on",
        "OrphanedByOffboarding",
        "--fail-on",
        "Stale",
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = report(&["-o", "json", "--tenant", &ta, "--fail-on", "crosstenant"]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    w.assert_no_value(&out);

    // The whole cluster's report, in every format, holds no value either.
    for format in ["json", "csv", "table"] {
        let out = report(&["-o", format]).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        w.assert_no_value(&out);
    }

    w.cleanup().await;
}

#[tokio::test]
async fn report_without_a_cluster_says_so_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-kubeconfig");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["report", "-o", "json"])
        .env("KUBECONFIG", &missing)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("keyward report: "));
}

/// Sample value of `keyward_inventory_findings{tenant, finding}`, 0 when absent.
#[tokio::test]
async fn findings_gauge_follows_watches_and_the_value_scan() {
    use std::sync::Arc;
    let w = World::build().await;
    let [ta, tb, tc] = w.tenants.clone();
    let client = w.a.client.clone();
    let metrics = Arc::new(keyward::metrics::Metrics::new());
    let run = tokio::spawn(keyward::inventory::run(
        client.clone(),
        metrics.clone(),
        store::<Tenant>(&client),
        store::<ApiKey>(&client),
        store::<keyward::api::ServiceAccountCredential>(&client),
        keyward::inventory::Options {
            namespace: None,
            scan_interval: Duration::from_secs(2),
            ..Default::default()
        },
    ));

    let expected = [
        (ta.as_str(), "CrossTenant", 4),
        (ta.as_str(), "Expired", 1),
        (ta.as_str(), "Revoked", 1),
        (ta.as_str(), "Invalid", 2),
        (ta.as_str(), "Unowned", 1),
        (tb.as_str(), "Stale", 2),
        (tc.as_str(), "OrphanedByOffboarding", 2),
    ];
    wait_metrics(&metrics, "counting every finding", T, |m| {
        expected.iter().all(|(t, f, n)| gauge(m, t, f) == *n)
    })
    .await;

    // A deleted Secret leaves the counts through the watch; a deleted copy through the
    // next scan.
    Api::<Secret>::namespaced(client.clone(), &w.a.ns)
        .delete("plain", &DeleteParams::default())
        .await
        .unwrap();
    Api::<Secret>::namespaced(client.clone(), &w.b.ns)
        .delete("copied", &DeleteParams::default())
        .await
        .unwrap();
    wait_metrics(&metrics, "forgetting the deleted Secrets", T, |m| {
        gauge(m, &ta, "Unowned") == 0
            && gauge(m, &ta, "CrossTenant") == 3
            && gauge(m, &tb, "Stale") == 1
    })
    .await;
    let text = metrics.encode();
    for value in &w.values {
        assert!(
            !text.contains(value.as_str()),
            "a value appears in the metrics"
        );
    }

    run.abort();
    w.cleanup().await;
}

/// A Secret held by a finalizer of the test's own, released when dropped (even when the test
/// fails, so its namespace can still be deleted).
struct Held {
    namespace: String,
    name: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        support::kubectl(&[
            "patch",
            "secret",
            &self.name,
            "-n",
            &self.namespace,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
}

#[tokio::test]
async fn secrets_not_controlled_by_an_existing_keyward_object_are_unmanaged() {
    let env = TestEnv::new("inv-dodge").await;
    let tenant = support::create_tenant(&env, json!({})).await;
    let op = Operator::start(&env.ns).await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    support::create(&keys, "real", json!({"tenant": tenant, "owner": "alice"})).await;
    let real = wait_for(&keys, "real", "Active", T, |k: &ApiKey| {
        state(k) == Some(CredentialState::Active)
    })
    .await;
    let real_uid = real.metadata.uid.clone().expect("the ApiKey's uid");

    // What keyward puts on its own Secrets, without being keyward's: the labels alone, a
    // controller reference to an ApiKey that does not exist, and a reference to the real
    // ApiKey that is not its controller. None has a keyward.io/owner annotation.
    let labels = json!({
        "app.kubernetes.io/managed-by": "keyward",
        "keyward.io/tenant": tenant,
        "keyward.io/credential": "real",
    });
    let reference = |name: &str, uid: &str, controller: bool| {
        json!([{"apiVersion": "keyward.io/v1alpha1", "kind": "ApiKey", "name": name,
                "uid": uid, "controller": controller}])
    };
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    make(
        &secrets,
        json!({"metadata": {"name": "labelled", "labels": labels},
               "stringData": {"api-key": "posing-1"}}),
    )
    .await;
    // The garbage collector deletes a dependent whose owner does not exist; a finalizer
    // keeps it (terminating, still readable) for as long as the test looks at it.
    let held = Held {
        namespace: env.ns.clone(),
        name: "ghost-owned".into(),
    };
    make(
        &secrets,
        json!({"metadata": {"name": "ghost-owned", "labels": labels,
                            "finalizers": ["keyward.io/test-hold"],
                            "ownerReferences": reference("ghost", "6b7e0c1a-9f3d-4c2e-8a61-00000000dead", true)},
               "stringData": {"api-key": "posing-2"}}),
    )
    .await;
    make(
        &secrets,
        json!({"metadata": {"name": "not-controller", "labels": labels,
                            "ownerReferences": reference("real", &real_uid, false)},
               "stringData": {"api-key": "posing-3"}}),
    )
    .await;

    // Each is Unowned; the ApiKey's own Secret, controlled by it, is managed and no finding.
    let expected: BTreeSet<Row> = [
        row("Unowned", "Secret", "labelled"),
        row("Unowned", "Secret", "ghost-owned"),
        row("Unowned", "Secret", "not-controller"),
    ]
    .into();
    let report = report_with(&tenant, &expected).await;
    assert_eq!(rows(&report), expected);
    assert!(
        secrets.get("ghost-owned").await.is_ok(),
        "the finalizer kept the Secret with the made-up owner while the report read it"
    );

    // The operator's own inventory (its gauge) classifies them the same way.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let metrics = op.metrics().await;
        if gauge(&metrics, &tenant, "Unowned") == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the operator does not count 3 Unowned Secrets of tenant {tenant}:\n{}",
            metrics
                .lines()
                .filter(|l| l.starts_with("keyward_inventory_findings"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    drop(held);
    drop(op);
    let _ = Api::<Tenant>::all(env.client.clone())
        .delete(&tenant, &DeleteParams::default())
        .await;
    env.cleanup().await;
}
