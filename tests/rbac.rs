//! The RBAC proof: the chart's ClusterRoles are exactly what the controller needs.
//!
//! Every `keyward run` of the integration tests runs as the chart's ServiceAccount
//! (keyward-system/keyward, through a token: hack/operator-identity.sh installs the chart's
//! RBAC and writes the kubeconfig), and the local plane's audit log records each of its
//! requests (hack/audit-policy.yaml). Read after all the other tests have run (`make test`
//! runs this one last, as it is `#[ignore]`d), the log shows:
//! - no request of that user was denied: the chart grants every verb the controller uses;
//! - every verb on every resource of every rule of the chart's ClusterRoles was used by
//!   some allowed request: the chart grants nothing the controller does not use.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Api;
use serde_json::Value;

const USER: &str = "system:serviceaccount:keyward-system:keyward";
/// The chart's ClusterRoles for the controller, as `helm template keyward` names them.
const ROLES: [&str; 2] = ["keyward-controller", "keyward-leader-election"];

/// The annotation on a ClusterRole listing grants exempt from the "every grant used" check.
const EXEMPT: &str = "keyward.io/rbac-proof-unexercised";

/// (API group, resource[/subresource], verb).
type Permission = (String, String, String);

/// The object's name, when the request names one (a list or watch by
/// `fieldSelector=metadata.name=` names it too).
fn object_name(event: &Value) -> Option<&str> {
    event.pointer("/objectRef/name").and_then(Value::as_str)
}

fn permission(event: &Value) -> Option<Permission> {
    let object = event.get("objectRef")?;
    let resource = object.get("resource")?.as_str()?;
    let resource = match object.get("subresource").and_then(Value::as_str) {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    let group = object
        .get("apiGroup")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some((
        group.to_owned(),
        resource,
        event.get("verb")?.as_str()?.to_owned(),
    ))
}

/// Refused by authorization. (A 403 can also come from admission, e.g. an Event created in
/// a namespace being deleted: RBAC allowed that one.)
fn denied(event: &Value) -> bool {
    event
        .pointer("/annotations/authorization.k8s.io~1decision")
        .and_then(Value::as_str)
        == Some("forbid")
}

#[tokio::test]
#[ignore = "reads the audit log of the whole integration run: `make test` runs it after the others"]
async fn the_charts_rbac_is_exactly_what_the_controller_uses() {
    // The tests run operators scoped to their namespaces; the chart runs one cluster-wide,
    // with its Lease in the release namespace: such a run, until it leads and its watches
    // have listed, adds the requests only that mode sends (ClusterRoleBindings, cluster-wide
    // lists, the Lease through the chart's own RoleBinding).
    let mut chart_run = support::operator::Operator::start_cluster_wide(&[
        "--leader-elect",
        "--leader-elect-namespace",
        "keyward-system",
    ])
    .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !chart_run.logs().contains("became leader") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster-wide operator did not lead within 60s:\n{}",
            chart_run.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    chart_run.kill().await;

    let dir = support::repo().join(".cluster");
    let path = dir.join("audit.log");
    let mut log = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "{}: {err}: the local plane must run with hack/audit-policy.yaml (hack/cluster.sh does)",
            path.display()
        )
    });
    // The API server rotates the log past 1 GiB into audit-<time>.log files.
    for entry in std::fs::read_dir(&dir).expect("reading .cluster").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("audit-") && name.ends_with(".log") {
            log.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    let mut used: BTreeMap<Permission, usize> = BTreeMap::new();
    let mut used_by_name: BTreeSet<(Permission, String)> = BTreeSet::new();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    let mut allowed: BTreeSet<String> = BTreeSet::new();
    let mut requests = 0usize;
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if event.pointer("/user/username").and_then(Value::as_str) != Some(USER) {
            continue;
        }
        requests += 1;
        let uri = event
            .get("requestURI")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let verb = event.get("verb").and_then(Value::as_str).unwrap_or("?");
        // The request without its query, which varies (resourceVersion, limit, continue),
        // but with the object's name, which a list or watch by name carries in its query.
        let request = format!(
            "{verb} {} {}",
            uri.split('?').next().unwrap_or(uri),
            object_name(&event).unwrap_or_default()
        );
        if denied(&event) {
            *refused.entry(request).or_default() += 1;
            continue;
        }
        allowed.insert(request);
        if let Some(p) = permission(&event) {
            if let Some(name) = object_name(&event) {
                used_by_name.insert((p.clone(), name.to_owned()));
            }
            *used.entry(p).or_default() += 1;
        }
    }
    assert!(
        requests > 0,
        "no request of {USER} in {}: did the integration tests run, with the operator kubeconfig of hack/operator-identity.sh?",
        path.display()
    );
    // A kube-apiserver that has just started (tests/outage.rs restarts it) refuses
    // requests until its RBAC caches have synced (the decision's reason is then empty). The
    // same request allowed at another time shows the chart grants it: such refusals are
    // the server's, not the chart's.
    let (transient, gaps): (BTreeMap<_, _>, BTreeMap<_, _>) = refused
        .into_iter()
        .partition(|(request, _)| allowed.contains(request));
    if !transient.is_empty() {
        eprintln!(
            "{} requests refused while the API server was starting, each allowed at another time:",
            transient.values().sum::<usize>()
        );
        for (r, n) in &transient {
            eprintln!("  {r} ({n}x)");
        }
    }
    assert!(
        gaps.is_empty(),
        "the chart's RBAC refused requests the controller sent (a verb the chart lacks):\n{}",
        gaps.iter()
            .map(|(r, n)| format!("  {r} ({n}x)"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let client = support::client().await;
    let roles: Api<ClusterRole> = Api::all(client);
    let mut unused = BTreeSet::new();
    let mut granted = 0usize;
    let mut exempt_granted = BTreeSet::new();
    let mut exempt_declared = BTreeSet::new();
    for name in ROLES {
        let role = roles.get(name).await.unwrap_or_else(|err| {
            panic!("ClusterRole {name}: {err}: run hack/operator-identity.sh")
        });
        // Grants the chart explains, in the template and this annotation, as needed but
        // not brought about by every run: "verb group/resource" entries, `;`-separated.
        let exempt: BTreeSet<String> = role
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(EXEMPT))
            .map(|v| {
                v.split(';')
                    .map(|e| e.trim().to_owned())
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        exempt_declared.extend(exempt.iter().cloned());
        for rule in role.rules.iter().flatten() {
            assert!(
                rule.non_resource_urls.is_none(),
                "{name}: a rule with nonResourceURLs is not checked here: {rule:?}"
            );
            // A rule limited to names is used when each name was the object of a request.
            let names: Vec<Option<&String>> = match &rule.resource_names {
                Some(names) => names.iter().map(Some).collect(),
                None => vec![None],
            };
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        assert!(
                            group != "*" && resource != "*" && verb != "*",
                            "{name}: wildcards grant more than any request shows: {rule:?}"
                        );
                        let p = (group.clone(), resource.clone(), verb.clone());
                        for object in &names {
                            granted += 1;
                            let was_used = match object {
                                None => used.contains_key(&p),
                                Some(o) => used_by_name.contains(&(p.clone(), o.to_string())),
                            };
                            let entry = format!("{verb} {group}/{resource}");
                            if exempt.contains(&entry) && object.is_none() {
                                exempt_granted.insert(entry.clone());
                                if was_used {
                                    eprintln!("{name}: {entry} (exempt) was used in this run");
                                }
                                continue;
                            }
                            if !was_used {
                                let named = object.map(|o| format!(" {o}")).unwrap_or_default();
                                unused.insert(format!("{name}: {entry}{named}"));
                            }
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "{requests} requests of {USER}, none refused by the chart; {granted} granted (group, resource, verb[, name]); used:"
    );
    for ((group, resource, verb), n) in &used {
        eprintln!("  {verb:>6} {group}/{resource}: {n}");
    }
    let stale: Vec<&String> = exempt_declared.difference(&exempt_granted).collect();
    assert!(
        stale.is_empty(),
        "{EXEMPT} names grants the role does not have: {stale:?}"
    );
    assert!(
        unused.is_empty(),
        "the chart grants what no request of the integration run used (remove it, or exercise it in a test):\n  {}",
        unused.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}
