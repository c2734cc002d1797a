//! Crash safety at the scale users run: 20 SIGKILLs at pseudo-random instants during mass
//! rotation of 500 keys with overlap, 50 of them with a consumer. Every write the
//! operator makes is recorded from watches, and afterwards: no key was lost or served
//! empty, no version was skipped, repeated or went back (in the Secret and in status),
//! each version had one value and its predecessor as previous value, and each version has
//! exactly one Event and at least one audit line (printed again, with the same id, only
//! when a kill fell between the line and its Event), and restarted its consumer exactly
//! once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Secret};
use keyward::api::{ApiKey, CredentialState};
use keyward::store::value::Fingerprint;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event as Watched, watcher};
use serde_json::json;
use support::TestEnv;
use support::operator::Operator;

const KILLS: usize = 20;

/// The scale, 500 keys by default (`KEYWARD_CRASH_KEYS` for a smaller run while
/// debugging); a tenth of them have a consumer.
fn keys_count() -> usize {
    std::env::var("KEYWARD_CRASH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

#[derive(Clone, Debug)]
struct Seen {
    version: i64,
    value: String,
    previous: Option<String>,
    rotated_at: String,
}

fn key_name(i: usize) -> String {
    format!("k{i:03}")
}

#[tokio::test]
async fn twenty_kills_during_mass_rotation_lose_repeat_or_skip_nothing() {
    let (keys_n, consumers_n) = (keys_count(), keys_count() / 10);
    let env = TestEnv::new("crash500").await;
    let tenant = support::create_tenant(&env, json!({})).await;
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.ns);
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);

    // Record every state of every managed Secret and of every consumer.
    let seen: Arc<Mutex<BTreeMap<String, Vec<Seen>>>> = Arc::default();
    let deleted: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let restarts: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let secret_recorder = {
        let (seen, deleted, secrets) = (seen.clone(), deleted.clone(), secrets.clone());
        tokio::spawn(async move {
            let mut events = watcher(
                secrets,
                watcher::Config::default().labels("app.kubernetes.io/managed-by=keyward"),
            )
            .boxed();
            while let Some(Ok(event)) = events.next().await {
                match event {
                    Watched::Apply(s) | Watched::InitApply(s) => {
                        let data = s.data.clone().unwrap_or_default();
                        let text = |k: &str| {
                            data.get(k)
                                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                        };
                        let a = s.annotations();
                        let record = Seen {
                            version: a
                                .get("keyward.io/version")
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(-1),
                            value: text("api-key").unwrap_or_default(),
                            previous: text("api-key-previous"),
                            rotated_at: a.get("keyward.io/rotated-at").cloned().unwrap_or_default(),
                        };
                        seen.lock()
                            .unwrap()
                            .entry(s.name_any())
                            .or_default()
                            .push(record);
                    }
                    Watched::Delete(s) => {
                        deleted.lock().unwrap().insert(s.name_any());
                    }
                    _ => {}
                }
            }
        })
    };
    let restart_recorder = {
        let (restarts, deployments) = (restarts.clone(), deployments.clone());
        tokio::spawn(async move {
            let mut events = watcher(deployments, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = events.next().await {
                if let Watched::Apply(d) | Watched::InitApply(d) = event {
                    let stamp = d
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.metadata.as_ref())
                        .and_then(|m| m.annotations.as_ref())
                        .and_then(|a| a.get("keyward.io/restartedAt"))
                        .cloned();
                    if let Some(stamp) = stamp {
                        let mut all = restarts.lock().unwrap();
                        let list = all.entry(d.name_any()).or_default();
                        if list.last() != Some(&stamp) {
                            list.push(stamp);
                        }
                    }
                }
            }
        })
    };

    for i in 0..consumers_n {
        let name = format!("app{i:03}");
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}}},
        }))
        .unwrap();
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .unwrap();
    }
    let mut op = Operator::start(&env.ns).await;
    // Issue first, without a schedule, sixteen creations at a time: how long the operator
    // takes to issue every key sets the rotation period, so that a slow machine runs the
    // same experiment (waves that finish well within the period) at a slower pace.
    let started = tokio::time::Instant::now();
    futures::stream::iter(0..keys_n)
        .map(|i| {
            let (keys, tenant) = (keys.clone(), tenant.clone());
            async move {
                let mut spec = json!({"tenant": tenant, "owner": "alice"});
                if i < consumers_n {
                    spec["consumers"] =
                        json!([{"kind": "Deployment", "name": format!("app{i:03}")}]);
                }
                support::create(&keys, &key_name(i), spec).await;
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
    loop {
        let all = keys.list(&ListParams::default()).await.unwrap().items;
        let issued = all
            .iter()
            .filter(|k| k.status.as_ref().and_then(|s| s.version).is_some())
            .count();
        if issued == keys_n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{issued} of {keys_n} keys issued within 300s; {}",
            op.summary()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let issue = started.elapsed();
    // Period: at least 8s, and at least four times the issue of every key.
    let pace = (issue.as_secs_f64() * 4.0 / 8.0).max(1.0);
    let every = Duration::from_secs_f64(8.0 * pace).as_secs().max(8);
    let scaled = |ms: u64| Duration::from_millis((ms as f64 * pace) as u64);
    eprintln!("crash test: {keys_n} keys issued in {issue:?}; rotating every {every}s");
    futures::stream::iter(0..keys_n)
        .map(|i| {
            let keys = keys.clone();
            async move {
                keys.patch(
                    &key_name(i),
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"spec": {"rotation": {"every": format!("{every}s"), "overlap": "3s"}}}),
                    ),
                )
                .await
                .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;

    // Kill the process at pseudo-random instants, across several rotation waves.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..KILLS {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        tokio::time::sleep(scaled(300 + state % 2500)).await;
        op.kill().await;
        tokio::time::sleep(scaled(state % 700)).await;
        op.restart().await;
    }

    // Stop scheduled rotation (a spec change); then every key settles on the new spec.
    tokio::time::sleep(scaled(4000)).await;
    // Sixteen at a time, so that the wave stops within seconds, not one key per round trip.
    let generations: BTreeMap<String, Option<i64>> = futures::stream::iter(0..keys_n)
        .map(|i| {
            let keys = keys.clone();
            async move {
                let patched = keys
                    .patch(
                        &key_name(i),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"rotation": null}})),
                    )
                    .await
                    .unwrap();
                (key_name(i), patched.metadata.generation)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let settle = tokio::time::Instant::now() + scaled(180_000);
    let finals: BTreeMap<String, ApiKey> = loop {
        let all = keys.list(&ListParams::default()).await.unwrap().items;
        let settled = all.iter().all(|k| {
            k.status.as_ref().is_some_and(|s| {
                s.state == Some(CredentialState::Active)
                    && s.observed_generation == generations[&k.name_any()]
            })
        });
        if settled {
            break all.into_iter().map(|k| (k.name_any(), k)).collect();
        }
        assert!(
            tokio::time::Instant::now() < settle,
            "keys did not settle: {}",
            op.summary()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    secret_recorder.abort();
    restart_recorder.abort();

    let seen = seen.lock().unwrap().clone();
    let restarts = restarts.lock().unwrap().clone();
    assert!(
        deleted.lock().unwrap().is_empty(),
        "Secrets were deleted: keys were lost: {:?}",
        deleted.lock().unwrap()
    );
    let events: Vec<Event> = Api::<Event>::namespaced(env.client.clone(), &env.ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let audit = op.audit();
    let logs = std::env::temp_dir().join("keyward-crash");
    let _ = std::fs::remove_dir_all(&logs);
    op.copy_logs(&logs);
    // Indexed once: the checks below look up every version of every key.
    let mut events_by: BTreeMap<(String, String), Vec<&Event>> = BTreeMap::new();
    for e in &events {
        if let (Some(name), Some(reason)) = (&e.involved_object.name, &e.reason) {
            events_by
                .entry((name.clone(), reason.clone()))
                .or_default()
                .push(e);
        }
    }
    let mut audit_by: BTreeMap<(String, String, i64), Vec<&serde_json::Value>> = BTreeMap::new();
    for a in &audit {
        if let (Some(action), Some(name), Some(version)) = (
            a["action"].as_str(),
            a["object"]["name"].as_str(),
            a["version"].as_i64(),
        ) {
            audit_by
                .entry((name.to_owned(), action.to_owned(), version))
                .or_default()
                .push(a);
        }
    }
    let mut rotations = 0;
    let mut repeated = Vec::new();
    for i in 0..keys_n {
        let name = key_name(i);
        let history = seen.get(&name).cloned().unwrap_or_default();
        assert!(!history.is_empty(), "{name}: never served");
        assert!(
            history.iter().all(|s| !s.value.is_empty()),
            "{name}: an empty key was served"
        );
        for pair in history.windows(2) {
            assert!(
                pair[1].version >= pair[0].version,
                "{name}: version went back: {} -> {}",
                pair[0].version,
                pair[1].version
            );
        }
        let mut by_version: BTreeMap<i64, &Seen> = BTreeMap::new();
        for s in &history {
            if let Some(first) = by_version.insert(s.version, s) {
                assert_eq!(
                    first.value, s.value,
                    "{name}: version {} has two values",
                    s.version
                );
                assert_eq!(
                    first.rotated_at, s.rotated_at,
                    "{name}: version {} rotated twice",
                    s.version
                );
            }
        }
        let versions: Vec<i64> = by_version.keys().copied().collect();
        let last = *versions.last().unwrap();
        assert_eq!(
            versions,
            (1..=last).collect::<Vec<_>>(),
            "{name}: a version was skipped"
        );
        for s in &history {
            if let Some(previous) = &s.previous {
                assert_eq!(
                    Some(previous),
                    by_version.get(&(s.version - 1)).map(|p| &p.value),
                    "{name}: version {} serves a wrong previous value",
                    s.version
                );
            }
        }
        // Status and Secret agree at the end.
        let status = finals[&name].status.clone().unwrap();
        assert_eq!(status.version, Some(last), "{name}: status version");
        assert_eq!(
            status.fingerprint,
            Some(Fingerprint::of(by_version[&last].value.as_bytes()).to_string()),
            "{name}: status fingerprint"
        );
        // One Event and one audit line per version.
        for version in 1..=last {
            let (reason, action) = if version == 1 {
                ("Issued", "Issued")
            } else {
                ("Rotated", "Rotated")
            };
            let suffix = format!(".{}-v{version}", reason.to_lowercase());
            let announced: Vec<&&Event> = events_by
                .get(&(name.clone(), reason.to_owned()))
                .into_iter()
                .flatten()
                .filter(|e| e.name_any().ends_with(&suffix))
                .collect();
            assert_eq!(
                announced.len(),
                1,
                "{name}: {} {reason} Events for version {version}",
                announced.len()
            );
            let lines: Vec<&serde_json::Value> = audit_by
                .get(&(name.clone(), action.to_owned(), version))
                .cloned()
                .unwrap_or_default();
            // The audit line is printed before its Event is created: a kill in between
            // prints it again after the restart, with the same id, and never loses it.
            assert!(
                !lines.is_empty(),
                "{name}: no {action} audit line for version {version}"
            );
            let event_name = announced.first().map(|e| e.name_any());
            for line in &lines {
                assert_eq!(
                    line["id"].as_str().map(str::to_owned),
                    event_name,
                    "{name}: audit line id for version {version}"
                );
                assert_eq!(line["fingerprint"], lines[0]["fingerprint"]);
            }
            if lines.len() > 1 {
                repeated.push(format!("{name} v{version} x{}", lines.len()));
            }
        }
        // Each consumer was restarted once per rotation, for that rotation's value.
        if i < consumers_n {
            let stamps = restarts
                .get(&format!("app{i:03}"))
                .cloned()
                .unwrap_or_default();
            let expected: Vec<String> = (2..=last)
                .map(|v| by_version[&v].rotated_at.clone())
                .collect();
            assert_eq!(stamps, expected, "{name}: consumer restarts");
        }
        rotations += last - 1;
    }
    assert!(
        rotations >= (keys_n * 3) as i64,
        "too few rotations to mean anything: {rotations}"
    );
    eprintln!(
        "crash test: {rotations} rotations of {keys_n} keys over {KILLS} kills; audit lines printed again after a kill: {} (first: {:?})",
        repeated.len(),
        &repeated[..repeated.len().min(10)]
    );
    let tenants: Api<keyward::api::Tenant> = Api::all(env.client.clone());
    let _ = tenants.delete(&tenant, &Default::default()).await;
    env.cleanup().await;
}
