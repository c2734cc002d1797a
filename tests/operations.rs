//! Operating properties on the real control plane: a quiet cluster costs no requests, the
//! contract's metrics are served, and a process killed at any instant mid-rotation never
//! loses a value, never rotates twice for one due time and never serves an empty key; a
//! rotation costs its three writes and nothing more; under a backlog, values are withdrawn
//! before rotations are done.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use keyward::api::{ApiKey, CredentialState, PartnerIntegration, Tenant};
use keyward::store::value::Fingerprint;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::json;
use support::fault;
use support::operator::Operator;
use support::{TestEnv, wait_for};

const T: Duration = Duration::from_secs(60);

async fn tenant(env: &TestEnv, extra: serde_json::Value) -> String {
    support::create_tenant(env, extra).await
}

async fn key(env: &TestEnv, name: &str, spec: serde_json::Value) {
    support::create(
        &Api::<ApiKey>::namespaced(env.client.clone(), &env.ns),
        name,
        spec,
    )
    .await;
}

async fn cleanup(env: TestEnv, tenant: &str) {
    let _ = Api::<Tenant>::all(env.client.clone())
        .delete(tenant, &DeleteParams::default())
        .await;
    env.cleanup().await;
}

/// Scrapes until `pred` holds (metrics are updated just after the status they reflect).
async fn metrics_until(op: &Operator, pred: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = op.metrics().await;
        if pred(&text) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_quiet_cluster_costs_no_requests() {
    let env = TestEnv::new("quiet").await;
    let tenant = tenant(&env, json!({})).await;
    let op = Operator::start(&env.ns).await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    const N: usize = 36;
    for i in 0..N {
        let spec = json!({"tenant": tenant, "owner": "alice", "rotation": {"every": "720h"}, "expiresAt": "2030-01-01T00:00:00Z"});
        key(&env, &format!("k{i:02}"), spec).await;
    }
    for i in 0..N {
        wait_for(&keys, &format!("k{i:02}"), "Active", T, |k: &ApiKey| {
            k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Active)
        })
        .await;
    }
    // Let the last reconciles of the burst (tenant counts, own status echoes) finish.
    let settled = fault::settled_requests(&op, Duration::from_secs(2), T).await;
    let writes: f64 = settled
        .iter()
        .filter(|(m, _)| *m != "GET")
        .map(|(_, v)| v)
        .sum();
    assert!(writes > 0.0, "the burst itself wrote: {settled:?}");

    // The quiet interval: nothing changes and nothing is due, so nothing is sent.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = fault::kube_requests(&op).await;
    assert_eq!(
        after, settled,
        "requests during a quiet interval with {N} keys"
    );
    cleanup(env, &tenant).await;
}

#[tokio::test]
async fn metrics_report_credentials_rotations_revocations_and_reconciles() {
    let env = TestEnv::new("metrics").await;
    let tenant = tenant(&env, json!({})).await;
    let op = Operator::start(&env.ns).await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    key(&env, "k", json!({"tenant": tenant, "owner": "alice", "rotation": {"every": "1h"}, "expiresAt": "2030-01-01T00:00:00Z"})).await;
    wait_for(&keys, "k", "Active", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version) == Some(1)
    })
    .await;
    keys.patch(
        "k",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"keyward.io/rotate": "1"}}})),
    )
    .await
    .unwrap();
    wait_for(&keys, "k", "rotated", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version) == Some(2)
    })
    .await;

    let text = metrics_until(&op, |t| t.contains("keyward_rotations_total")).await;
    let has = |needle: &str| text.lines().any(|l| l.contains(needle));
    let ns = &env.ns;
    assert!(
        has(&format!(
            "keyward_credentials{{namespace=\"{ns}\",tenant=\"{tenant}\",kind=\"ApiKey\",state=\"Active\"}} 1"
        )),
        "{text}"
    );
    assert!(
        has(&format!(
            "keyward_credential_expiry_timestamp_seconds{{namespace=\"{ns}\",name=\"k\",kind=\"ApiKey\",tenant=\"{tenant}\",owner=\"alice\"}} 1893456000"
        )),
        "{text}"
    );
    assert!(
        has("keyward_credential_next_rotation_timestamp_seconds{"),
        "{text}"
    );
    assert!(
        has(&format!(
            "keyward_rotations_total{{kind=\"ApiKey\",tenant=\"{tenant}\",result=\"success\"}} 1"
        )),
        "{text}"
    );
    assert!(
        has("keyward_reconcile_duration_seconds_count{controller=\"apikey\"}"),
        "{text}"
    );

    Api::<Tenant>::all(env.client.clone())
        .patch(
            &tenant,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"state": "Suspended"}})),
        )
        .await
        .unwrap();
    wait_for(&keys, "k", "Revoked", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Revoked)
    })
    .await;
    let text = metrics_until(&op, |t| t.contains("state=\"Revoked\"} 1")).await;
    assert!(
        text.contains(&format!("keyward_revocations_total{{kind=\"ApiKey\",tenant=\"{tenant}\",reason=\"TenantSuspended\"}} 1")),
        "{text}"
    );
    assert!(text.contains("state=\"Revoked\"} 1"), "{text}");
    // The inventory follows: the revoked key is now a finding of its tenant.
    let finding =
        format!("keyward_inventory_findings{{tenant=\"{tenant}\",finding=\"Revoked\"}} 1");
    let text = metrics_until(&op, |t| t.contains(&finding)).await;
    assert!(text.contains(&finding), "{text}");
    assert!(
        !text.contains("kind=\"ApiKey\",state=\"Active\"}"),
        "stale Active series: {text}"
    );
    cleanup(env, &tenant).await;
}

/// What one watch event showed of the served Secret.
#[derive(Clone, Debug)]
struct Seen {
    version: i64,
    value: String,
    previous: Option<String>,
    rotated_at: String,
}

#[tokio::test]
async fn killing_the_operator_mid_rotation_never_loses_or_doubles_a_rotation() {
    let env = TestEnv::new("crash").await;
    let tenant = tenant(&env, json!({})).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let deleted = Arc::new(Mutex::new(false));
    let recorder = {
        let (seen, deleted, secrets) = (seen.clone(), deleted.clone(), secrets.clone());
        tokio::spawn(async move {
            let mut events = watcher(
                secrets,
                watcher::Config::default().fields("metadata.name=k"),
            )
            .boxed();
            while let Some(Ok(event)) = events.next().await {
                match event {
                    Event::Apply(s) | Event::InitApply(s) => {
                        let data = s.data.clone().unwrap_or_default();
                        let text = |k: &str| {
                            data.get(k)
                                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                        };
                        let a = s.annotations();
                        seen.lock().unwrap().push(Seen {
                            version: a
                                .get("keyward.io/version")
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(-1),
                            value: text("api-key").unwrap_or_default(),
                            previous: text("api-key-previous"),
                            rotated_at: a.get("keyward.io/rotated-at").cloned().unwrap_or_default(),
                        });
                    }
                    Event::Delete(_) => *deleted.lock().unwrap() = true,
                    _ => {}
                }
            }
        })
    };

    let mut op = Operator::start(&env.ns).await;
    key(
        &env,
        "k",
        json!({"tenant": tenant, "owner": "alice", "rotation": {"every": "2s", "overlap": "1s"}}),
    )
    .await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    wait_for(&keys, "k", "issued", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version).is_some()
    })
    .await;

    // Kill the process at pseudo-random instants, across many rotations.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        tokio::time::sleep(Duration::from_millis(100 + state % 1900)).await;
        op.kill().await;
        tokio::time::sleep(Duration::from_millis(state % 700)).await;
        op.restart().await;
    }
    // Stop scheduled rotation (a spec change), then status and Secret must agree.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let patched = keys
        .patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"rotation": null}})),
        )
        .await
        .unwrap();
    let generation = patched.metadata.generation;
    let final_key = wait_for(
        &keys,
        "k",
        "settled on the new spec",
        T,
        move |k: &ApiKey| {
            k.status.as_ref().is_some_and(|s| {
                s.state == Some(CredentialState::Active) && s.observed_generation == generation
            })
        },
    )
    .await;
    recorder.abort();

    let seen = seen.lock().unwrap().clone();
    assert!(
        !*deleted.lock().unwrap(),
        "the Secret was deleted: a key was lost"
    );
    assert!(
        seen.iter().all(|s| !s.value.is_empty()),
        "an empty key was served"
    );
    // Versions only go up; each version has exactly one value (no rotation was done twice).
    let mut by_version: BTreeMap<i64, &Seen> = BTreeMap::new();
    for pair in seen.windows(2) {
        assert!(
            pair[1].version >= pair[0].version,
            "version went back: {} -> {}",
            pair[0].version,
            pair[1].version
        );
    }
    for s in &seen {
        if let Some(first) = by_version.insert(s.version, s) {
            assert_eq!(
                first.value, s.value,
                "version {} written with two values",
                s.version
            );
            assert_eq!(
                first.rotated_at, s.rotated_at,
                "version {} rotated twice",
                s.version
            );
        }
    }
    // During an overlap the previous value is the one the last version served.
    for s in &seen {
        if let Some(previous) = &s.previous {
            let before = by_version
                .get(&(s.version - 1))
                .expect("the previous version was served");
            assert_eq!(
                previous, &before.value,
                "version {} serves a wrong previous value",
                s.version
            );
        }
    }
    // Rotations are at least `every` apart: one per due time.
    let times: Vec<chrono::DateTime<chrono::Utc>> = by_version
        .values()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(&s.rotated_at)
                .unwrap()
                .with_timezone(&chrono::Utc)
        })
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::Duration::seconds(2),
            "two rotations within one interval: {pair:?}"
        );
    }
    let status = final_key.status.unwrap();
    let secret = secrets.get("k").await.unwrap();
    assert_eq!(
        secret.annotations().get("keyward.io/version"),
        status.version.map(|v| v.to_string()).as_ref()
    );
    let value = secret.data.unwrap()["api-key"].0.clone();
    assert_eq!(
        status.fingerprint,
        Some(Fingerprint::of(&value).to_string())
    );
    assert!(
        by_version.len() >= 5,
        "too few rotations to mean anything: {}",
        by_version.len()
    );
    eprintln!(
        "crash test: {} versions observed over 20 kills",
        by_version.len()
    );
    cleanup(env, &tenant).await;
}

#[tokio::test]
async fn a_value_copied_into_another_tenants_namespace_sets_cross_tenant_on_the_key() {
    let env = TestEnv::new("copy").await;
    let other = TestEnv::new("copy-dest").await;
    let tenant = tenant(&env, json!({})).await;
    let other_tenant = tenant_named(&other).await;
    let op = Operator::start_with(&env.ns, &["--scan-interval", "1s"]).await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    key(&env, "k", json!({"tenant": tenant, "owner": "alice"})).await;
    wait_for(&keys, "k", "issued", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version) == Some(1)
    })
    .await;
    let value = Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .get("k")
        .await
        .unwrap()
        .data
        .unwrap()["api-key"]
        .clone();
    let copy: Secret = serde_json::from_value(json!({"metadata": {"name": "pasted"}})).unwrap();
    let mut copy = copy;
    copy.data = Some([("token".to_owned(), value.clone())].into());
    Api::<Secret>::namespaced(other.client.clone(), &other.ns)
        .create(&kube::api::PostParams::default(), &copy)
        .await
        .unwrap();
    let k = wait_for(&keys, "k", "CrossTenant=True", T, |k: &ApiKey| {
        k.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "CrossTenant" && c.status == "True")
        })
    })
    .await;
    let cross = k
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "CrossTenant")
        .unwrap();
    assert_eq!(cross.reason, "ValueCopied");
    assert!(
        cross.message.contains(&format!("{}/pasted", other.ns)),
        "{}",
        cross.message
    );
    let text = String::from_utf8_lossy(&value.0).into_owned();
    assert!(
        !(op.logs() + &op.stdout()).contains(&text),
        "a value appears in the operator's output"
    );
    let _ = Api::<Tenant>::all(env.client.clone())
        .delete(&other_tenant, &DeleteParams::default())
        .await;
    other.cleanup().await;
    cleanup(env, &tenant).await;
}

async fn tenant_named(env: &TestEnv) -> String {
    support::create_tenant(env, json!({})).await
}

/// An issue costs its writes (the Secret's create, its Event, the key's status, and the
/// tenant's count of credentials), with no read: keyward's watch of its Secrets does not
/// hold one of that name, so it is created, which could not take over one that exists. A
/// rotation costs its three writes (the Secret, the Event, the status): the Secret's state
/// comes from the operator's own watch. The passes their writes wake (the Secret's and the
/// status's watch events) send nothing.
#[tokio::test]
async fn an_issue_and_a_rotation_cost_their_writes_and_the_passes_they_wake_none() {
    let env = TestEnv::new("cost").await;
    let tenant = tenant(&env, json!({})).await;
    let op = Operator::start(&env.ns).await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    let quiet = Duration::from_secs(2);
    let requests = || {
        op.logs()
            .lines()
            .filter(|l| l.contains("read sent") || l.contains("write sent"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let spent = |before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>| {
        after
            .iter()
            .map(|(m, v)| (m.clone(), v - before.get(m).copied().unwrap_or_default()))
            .filter(|(_, v)| *v > 0.0)
            .collect::<BTreeMap<String, f64>>()
    };
    let expected = |counts: &[(&str, f64)]| {
        counts
            .iter()
            .map(|(m, v)| ((*m).to_owned(), *v))
            .collect::<BTreeMap<String, f64>>()
    };

    let before = fault::settled_requests(&op, quiet, T).await;
    key(&env, "k", json!({"tenant": tenant, "owner": "alice"})).await;
    wait_for(&keys, "k", "issued", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version) == Some(1)
    })
    .await;
    let after = fault::settled_requests(&op, quiet, T).await;
    assert_eq!(
        spent(&before, &after),
        expected(&[("PATCH", 2.0), ("POST", 2.0)]),
        "issue: the Secret's create and its Event (POST), the key's and the tenant's status \
         (PATCH), no read; requests: {}",
        requests()
    );

    for round in 0..3 {
        let before = fault::settled_requests(&op, quiet, T).await;
        let request = format!("cost-{round}");
        keys.patch(
            "k",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"keyward.io/rotate": request}}})),
        )
        .await
        .unwrap();
        let want = request.clone();
        wait_for(&keys, "k", "rotated", T, move |k: &ApiKey| {
            k.status
                .as_ref()
                .and_then(|s| s.last_rotation_request.as_deref())
                == Some(want.as_str())
        })
        .await;
        let after = fault::settled_requests(&op, quiet, T).await;
        assert_eq!(
            spent(&before, &after),
            expected(&[("PATCH", 1.0), ("POST", 1.0), ("PUT", 1.0)]),
            "rotation {round}: the Secret (PUT), its Event (POST) and the status (PATCH), \
             nothing more; requests: {}",
            requests()
        );
    }
    cleanup(env, &tenant).await;
}

/// The keys of `keys` whose status satisfies `pred`.
async fn counted(keys: &Api<ApiKey>, prefix: &str, pred: impl Fn(&ApiKey) -> bool) -> usize {
    keys.list(&Default::default())
        .await
        .map(|list| {
            list.items
                .iter()
                .filter(|k| k.name_any().starts_with(prefix) && pred(k))
                .count()
        })
        .unwrap_or_default()
}

async fn until_counted(
    keys: &Api<ApiKey>,
    prefix: &str,
    want: usize,
    what: &str,
    pred: impl Fn(&ApiKey) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let n = counted(keys, prefix, &pred).await;
        if n >= want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {n} of {want} after 180 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn keys_revoked_or_expiring_during_a_backlog_of_rotations_lose_their_value_before_it_drains()
{
    const BACKLOG: usize = 60;
    const URGENT: usize = 3;
    let env = TestEnv::new("urgent").await;
    let tenant = tenant(&env, json!({})).await;
    let pis: Api<PartnerIntegration> = Api::namespaced(env.client.clone(), &env.ns);
    support::create(
        &pis,
        "globex",
        json!({"tenant": tenant, "partner": {"name": "Globex"}, "owner": "alice"}),
    )
    .await;
    // One pass at a time, ten requests a second: a rotation (two or three writes) takes
    // 0.2 to 0.3 s, so sixty of them are a backlog of twelve seconds or more.
    let op = Operator::start_with(
        &env.ns,
        &["--concurrency=1", "--kube-qps=10", "--kube-burst=1"],
    )
    .await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    let plain = json!({"tenant": tenant, "owner": "alice"});
    for i in 0..BACKLOG {
        key(&env, &format!("r-{i}"), plain.clone()).await;
    }
    for i in 0..URGENT {
        key(&env, &format!("e-{i}"), plain.clone()).await;
        key(
            &env,
            &format!("u-{i}"),
            json!({"tenant": tenant, "owner": "alice", "integration": "globex"}),
        )
        .await;
    }
    let issued = |k: &ApiKey| k.status.as_ref().and_then(|s| s.version) == Some(1);
    until_counted(&keys, "r-", BACKLOG, "backlog keys issued", issued).await;
    until_counted(&keys, "e-", URGENT, "expiring keys issued", issued).await;
    until_counted(&keys, "u-", URGENT, "integration keys issued", issued).await;
    fault::settled_requests(&op, Duration::from_secs(2), T).await;

    // Every key is asked to rotate, the backlog's first: the rest wait behind it. Then
    // some of those waiting are given an expiry three seconds away, and the integration
    // of the others is suspended; neither is a new pass (each key's pass is waiting), so
    // the gate has to decide them again.
    let rotate = |k: &str| {
        let keys = keys.clone();
        let name = k.to_owned();
        async move {
            keys.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"keyward.io/rotate": "backlog"}}}),
                ),
            )
            .await
            .unwrap();
        }
    };
    for i in 0..BACKLOG {
        rotate(&format!("r-{i}")).await;
    }
    for i in 0..URGENT {
        rotate(&format!("e-{i}")).await;
        rotate(&format!("u-{i}")).await;
    }
    let expires = keyward::policy::format_time(chrono::Utc::now() + chrono::Duration::seconds(3));
    for i in 0..URGENT {
        keys.patch(
            &format!("e-{i}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"expiresAt": expires}})),
        )
        .await
        .unwrap();
    }
    pis.patch(
        "globex",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspended": true}})),
    )
    .await
    .unwrap();

    let state = |want: CredentialState| {
        move |k: &ApiKey| k.status.as_ref().and_then(|s| s.state) == Some(want)
    };
    let rotated = |k: &ApiKey| {
        k.status
            .as_ref()
            .and_then(|s| s.last_rotation_request.as_deref())
            == Some("backlog")
    };
    until_counted(
        &keys,
        "u-",
        URGENT,
        "integration keys revoked",
        state(CredentialState::Revoked),
    )
    .await;
    let done = counted(&keys, "r-", rotated).await;
    assert!(
        done < BACKLOG / 3,
        "the revocations waited for the rotations: {done} of {BACKLOG} rotated before the \
         last of {URGENT} revoked keys lost its value"
    );
    until_counted(
        &keys,
        "e-",
        URGENT,
        "expiring keys expired",
        state(CredentialState::Expired),
    )
    .await;
    let done = counted(&keys, "r-", rotated).await;
    assert!(
        done < BACKLOG * 2 / 3,
        "the expiries waited for the rotations: {done} of {BACKLOG} rotated before the \
         last of {URGENT} keys that expired 3 s after the backlog began lost its value"
    );
    // Their Secrets are gone, not only their status.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    for name in (0..URGENT).flat_map(|i| [format!("u-{i}"), format!("e-{i}")]) {
        assert!(
            secrets.get_opt(&name).await.unwrap().is_none(),
            "{name} still has its Secret"
        );
    }
    // The backlog drains behind them: nothing is starved.
    until_counted(&keys, "r-", BACKLOG, "backlog rotated", rotated).await;
    cleanup(env, &tenant).await;
}
