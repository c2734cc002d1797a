//! An API server outage on the real control plane: kube-apiserver is killed (SIGKILL) for
//! 10 s while one `keyward run` manages keys that rotate every few seconds, a key whose
//! expiry falls inside the outage, rotation requests written up to the instant of the kill
//! and one written the moment the API server is back. The same process, never restarted,
//! must converge within 5 s of the API server being ready again.
//!
//! It restarts the API server every other test shares, so it is `#[ignore]`d: `cargo test
//! --test '*'` (`make integration`) never runs it beside the others, and `hack/test.sh`
//! runs it alone, after them, with `-- --ignored`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Secret;
use keyward::api::ApiKey;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use support::fault::{self, Outage, Process};
use support::operator::Operator;
use support::{TestEnv, wait_for};

/// How long the API server stays down.
const OUTAGE: Duration = Duration::from_secs(10);
/// The contract under test: converged this long after the API server is ready again.
const CONVERGENCE: Duration = Duration::from_secs(5);
/// How long the test keeps looking past `CONVERGENCE`, so a failure says how late.
const OBSERVE: Duration = Duration::from_secs(30);
const T: Duration = Duration::from_secs(30);
/// Keys with a rotation schedule.
const ROTATING: usize = 4;
const EVERY: Duration = Duration::from_secs(2);
/// Keys that get a rotation request in the last instants before the kill.
const REQUESTED: usize = 20;
/// The key whose request is written the moment the API server is ready again.
const AFTER: &str = "req-after";
/// The key whose expiry falls inside the outage.
const EXPIRING: &str = "exp";

fn time(value: &Value) -> Option<f64> {
    DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
}

fn ready_reason(key: &DynamicObject) -> String {
    fault::status(key)["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn requested(key: &DynamicObject) -> Option<String> {
    key.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("keyward.io/rotate"))
        .cloned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn rotate_patch(value: &str) -> Patch<Value> {
    Patch::Merge(json!({"metadata": {"annotations": {"keyward.io/rotate": value}}}))
}

/// Deletes the test's Tenant and namespace when the test ends, passed or failed.
struct Cleanup {
    tenant: String,
    namespace: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (kind, name) in [("tenant", &self.tenant), ("namespace", &self.namespace)] {
            let _ = support::kubectl(&["delete", kind, name, "--ignore-not-found", "--wait=false"]);
        }
    }
}

/// What must hold again after the outage, per key.
enum Fact {
    /// The schedule resumed: the rotations missed during the outage collapse into one
    /// catch-up (which may land just before `/readyz` is ok: the API server takes writes a
    /// moment earlier), and a later one is made after ready.
    Rotating { before: i64 },
    /// `status.lastRotationRequest` equals the request, answered by exactly one rotation.
    Answered { request: String, before: i64 },
    /// The Secret is gone, `state: Expired`, `Ready=False reason=Expired`.
    Expired,
}

impl Fact {
    fn holds(&self, key: &DynamicObject, secret_present: bool, ready: f64) -> bool {
        let status = fault::status(key);
        match self {
            Self::Rotating { before } => {
                fault::version(key) >= before + 2
                    && time(&status["lastRotatedAt"]).is_some_and(|t| t > ready)
            }
            Self::Answered { request, .. } => status["lastRotationRequest"] == request.as_str(),
            Self::Expired => {
                !secret_present && status["state"] == "Expired" && ready_reason(key) == "Expired"
            }
        }
    }
}

#[tokio::test]
#[ignore = "restarts the shared API server: hack/test.sh runs it alone, after the other integration tests"]
async fn the_same_process_converges_within_5s_of_the_api_server_returning() {
    let env = TestEnv::new("outage").await;
    let tenant = support::create_tenant(&env, json!({})).await;
    let _cleanup = Cleanup {
        tenant: tenant.clone(),
        namespace: env.ns.clone(),
    };
    let op = Operator::start(&env.ns).await;
    let process = Process::operator(&env.ns);
    let keys = fault::api_keys(&env.client, &env.ns);
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let typed: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    let create = |name: String, extra: Value| {
        let spec = support::merged(json!({"tenant": tenant, "owner": "alice"}), extra);
        let api = typed.clone();
        async move { support::create(&api, &name, spec).await }
    };
    let issued = |name: String| {
        let api = typed.clone();
        async move {
            wait_for(&api, &name, "issued", T, |k: &ApiKey| {
                k.status.as_ref().and_then(|s| s.version) >= Some(1)
            })
            .await
        }
    };

    let rotating: Vec<String> = (0..ROTATING).map(|i| format!("rot-{i}")).collect();
    let requested_keys: Vec<String> = (0..REQUESTED).map(|i| format!("req-{i:02}")).collect();
    let every = format!("{}s", EVERY.as_secs());
    for name in &rotating {
        create(name.clone(), json!({"rotation": {"every": every}})).await;
    }
    for name in requested_keys.iter().chain([&AFTER.to_owned()]) {
        create(name.clone(), json!({})).await;
    }
    // Rotation runs before the outage. This needs an operator whose --min-rotation-interval
    // is below EVERY (tests/support/operator.rs passes a small one by default).
    for name in &rotating {
        wait_for(
            &typed,
            name,
            "rotated on its schedule (is the operator's --min-rotation-interval below it?)",
            T,
            |k| k.status.as_ref().and_then(|s| s.version) >= Some(2),
        )
        .await;
    }
    for name in requested_keys.iter().chain([&AFTER.to_owned()]) {
        issued(name.clone()).await;
    }

    // Expires a few seconds after the kill, long before the API server is back.
    let expires = Utc::now() + chrono::Duration::seconds(6);
    let expires_at = expires.to_rfc3339_opts(SecondsFormat::Secs, true);
    create(EXPIRING.to_owned(), json!({"expiresAt": expires_at})).await;
    issued(EXPIRING.to_owned()).await;
    assert!(
        secrets.get_opt(EXPIRING).await.unwrap().is_some(),
        "{EXPIRING}'s Secret is served before the outage"
    );

    let mut facts: BTreeMap<String, Fact> = BTreeMap::new();
    for name in &rotating {
        let before = fault::version(&keys.get(name).await.unwrap());
        facts.insert(name.clone(), Fact::Rotating { before });
    }
    facts.insert(EXPIRING.to_owned(), Fact::Expired);
    let mut versions = BTreeMap::new();
    for name in requested_keys.iter().chain([&AFTER.to_owned()]) {
        versions.insert(name.clone(), fault::version(&keys.get(name).await.unwrap()));
    }

    // The hard case: rotation requests written one after another while the API server is
    // being killed, so that the last ones are written an instant before it dies: some the
    // operator answers in time, some it has seen and not answered (its writes fail), some
    // it never sees before the watch breaks. A write whose answer is lost may still have
    // been stored; what the annotation holds after the restart decides.
    let outage = tokio::spawn(fault::restart_apiserver(OUTAGE));
    let mut written = Vec::new();
    for (i, name) in requested_keys.iter().enumerate() {
        let request = format!("before-{i:02}-{}", support::suffix());
        let (params, patch) = (PatchParams::default(), rotate_patch(&request));
        let stored = matches!(
            tokio::time::timeout(Duration::from_secs(2), keys.patch(name, &params, &patch)).await,
            Ok(Ok(_))
        );
        written.push((name.clone(), request, fault::unix_now()));
        if !stored {
            break;
        }
    }
    let Outage {
        killed: killed_at,
        ready,
    } = outage.await.expect("the outage task");

    // The request written the moment the API server is ready again; the first requests
    // after /readyz turns ok can still meet a connection the crash broke.
    let request_after = format!("after-{}", support::suffix());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Err(err) = keys
        .patch(
            AFTER,
            &PatchParams::default(),
            &rotate_patch(&request_after),
        )
        .await
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "requesting a rotation of {AFTER} after the restart: {err}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    facts.insert(
        AFTER.to_owned(),
        Fact::Answered {
            request: request_after,
            before: versions[AFTER],
        },
    );
    let mut pending_at_kill = 0;
    for (name, request, _) in &written {
        let key = keys.get(name).await.unwrap();
        if requested(&key).as_deref() == Some(request.as_str()) {
            pending_at_kill += 1;
            let before = versions[name];
            facts.insert(
                name.clone(),
                Fact::Answered {
                    request: request.clone(),
                    before,
                },
            );
        }
    }
    let last_write = written.iter().map(|w| w.2).fold(f64::MIN, f64::max);
    assert!(
        pending_at_kill > 0,
        "no rotation request was stored before the kill"
    );
    let expiry = expires.timestamp() as f64;
    assert!(
        killed_at < expiry && expiry < ready,
        "{EXPIRING}'s expiresAt {expires_at} lies inside the outage ({killed_at:.3} .. {ready:.3})"
    );

    // Poll (100 ms) rather than watch: what is measured is when each fact first holds.
    let mut converged: BTreeMap<String, f64> = BTreeMap::new();
    let mut last_seen: BTreeMap<String, Value> = BTreeMap::new();
    while converged.len() < facts.len() && fault::unix_now() < ready + OBSERVE.as_secs_f64() {
        for (name, fact) in &facts {
            if converged.contains_key(name) {
                continue;
            }
            let Ok(key) = keys.get(name).await else {
                continue;
            };
            let secret_present = match fact {
                Fact::Expired => match secrets.get_opt(name).await {
                    Ok(secret) => secret.is_some(),
                    Err(_) => continue,
                },
                _ => true,
            };
            if fact.holds(&key, secret_present, ready) {
                converged.insert(name.clone(), fault::unix_now());
            }
            let mut seen = fault::status(&key).clone();
            seen["requested"] = json!(requested(&key));
            seen["secretPresent"] = json!(secret_present);
            last_seen.insert(name.clone(), seen);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!(
        "outage: killed at {killed_at:.3}, ready at {ready:.3} ({:.3}s down); {} requests \
         written before the kill, the last {:.3}s before it, {pending_at_kill} stored",
        ready - killed_at,
        written.len(),
        killed_at - last_write,
    );
    let mut answered_before_kill = 0;
    for (name, at) in &converged {
        eprintln!("outage: {name} converged {:.3}s after ready", at - ready);
    }
    for (name, fact) in &facts {
        if let (Fact::Answered { .. }, Some(seen)) = (fact, last_seen.get(name))
            && time(&seen["lastRotatedAt"]).is_some_and(|t| t < killed_at)
            && name != AFTER
        {
            answered_before_kill += 1;
        }
    }
    let slowest = converged.values().fold(f64::MIN, |a, b| a.max(*b)) - ready;
    eprintln!(
        "outage: convergence time {slowest:.3}s ({} of {} facts); of {pending_at_kill} \
         requests pending at the kill, {answered_before_kill} had been answered before it",
        converged.len(),
        facts.len()
    );

    let alive = process.is_alive();
    let healthy = fault::healthy(&op).await;
    let diagnostics = |last_seen: &BTreeMap<String, Value>| {
        format!(
            "\nlast seen: {}\noperator alive: {alive}, /healthz ok: {healthy}\noperator log (tail):\n{}",
            serde_json::to_string_pretty(last_seen).unwrap_or_default(),
            tail(&op.logs(), 40)
        )
    };
    assert!(
        alive,
        "the operator process {process:?} did not survive the outage{}",
        diagnostics(&last_seen)
    );
    assert_eq!(
        Process::operator(&env.ns),
        process,
        "the operator was never restarted"
    );
    assert!(
        healthy,
        "/healthz is ok after the outage{}",
        diagnostics(&last_seen)
    );
    let late: Vec<String> = facts
        .keys()
        .filter(|name| {
            converged
                .get(*name)
                .is_none_or(|at| at - ready > CONVERGENCE.as_secs_f64())
        })
        .map(|name| match converged.get(name) {
            Some(at) => format!("{name} after {:.3}s", at - ready),
            None => format!("{name} not within {OBSERVE:?}"),
        })
        .collect();
    let failing: BTreeMap<String, Value> = last_seen
        .iter()
        .filter(|(name, _)| late.iter().any(|l| l.starts_with(name.as_str())))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    let log_copy = std::env::temp_dir().join("keyward-outage-operator.log");
    let _ = std::fs::write(&log_copy, op.logs());
    eprintln!("outage: the operator's log is in {}", log_copy.display());
    assert!(
        late.is_empty(),
        "not converged within {CONVERGENCE:?} of the API server being ready: {late:?} \
         (rot-*: the catch-up rotation and a scheduled one after ready; req-*: \
         lastRotationRequest answered; exp: Secret gone, state Expired, Ready reason Expired){}",
        diagnostics(&failing)
    );

    // Each request was answered by exactly one rotation.
    for (name, fact) in &facts {
        if let Fact::Answered { before, .. } = fact {
            let key = keys.get(name).await.unwrap();
            assert_eq!(
                fault::version(&key),
                before + 1,
                "{name}: one rotation per request"
            );
        }
    }
    // And the schedule keeps going, not only its first step after the outage.
    let at_convergence: BTreeMap<String, i64> = {
        let mut v = BTreeMap::new();
        for name in &rotating {
            v.insert(name.clone(), fault::version(&keys.get(name).await.unwrap()));
        }
        v
    };
    tokio::time::sleep(EVERY * 3 + Duration::from_secs(1)).await;
    for name in &rotating {
        let now = fault::version(&keys.get(name).await.unwrap());
        assert!(
            now >= at_convergence[name] + 2,
            "{name}: rotating every {EVERY:?}, version went only from {} to {now} in {:?} \
             after convergence{}",
            at_convergence[name],
            EVERY * 3 + Duration::from_secs(1),
            diagnostics(&BTreeMap::new())
        );
    }
}
