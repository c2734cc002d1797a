//! Leader election on the real control plane: only the Lease holder acts, a standby takes
//! over when the holder dies, and a replica whose Lease was taken away sends no write once
//! another replica leads, not even when it was paused while that happened.

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use keyward::api::{ApiKey, Tenant};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use support::fault::Process;
use support::operator::Operator;
use support::{TestEnv, wait_for};

const T: Duration = Duration::from_secs(60);
const LEASE: &str = "keyward";

async fn tenant(env: &TestEnv) -> String {
    support::create_tenant(env, json!({})).await
}

async fn key(env: &TestEnv, name: &str, spec: Value) {
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

/// Two replicas electing a leader through a 4 s Lease in the test's namespace.
async fn replicas(env: &TestEnv) -> (Operator, Operator) {
    let args = [
        "--leader-elect",
        "--leader-elect-namespace",
        env.ns.as_str(),
        "--leader-elect-lease-duration",
        "4s",
    ];
    (
        Operator::start_with(&env.ns, &args).await,
        Operator::start_with(&env.ns, &args).await,
    )
}

/// The operator's JSON log lines.
fn log_lines(op: &Operator) -> Vec<Value> {
    op.logs()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn timestamp(line: &Value) -> DateTime<Utc> {
    let text = line["timestamp"].as_str().expect("a log line's timestamp");
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|err| panic!("log timestamp {text}: {err}"))
        .with_timezone(&Utc)
}

/// When the operator first logged `message`.
fn logged_at(op: &Operator, message: &str) -> Option<DateTime<Utc>> {
    log_lines(op)
        .iter()
        .find(|l| l["message"] == message)
        .map(timestamp)
}

/// The operator's identity in the Lease (it logs it while waiting for leadership).
fn identity(op: &Operator) -> String {
    log_lines(op)
        .iter()
        .find(|l| l["message"] == "waiting for leadership")
        .and_then(|l| l["identity"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no identity logged:\n{}", op.logs()))
}

/// Every write the operator sent (past its fence) other than the Lease's own: when, and
/// which.
fn writes(op: &Operator) -> Vec<(DateTime<Utc>, String)> {
    log_lines(op)
        .iter()
        .filter(|l| l["message"] == "write sent")
        .filter(|l| !l["path"].as_str().unwrap_or_default().contains("/leases"))
        .map(|l| {
            (
                timestamp(l),
                format!("{} {}", l["method"].as_str().unwrap_or("?"), l["path"]),
            )
        })
        .collect()
}

/// Waits (bounded by `limit`) until `cond` holds of what the operators logged; log files
/// offer nothing to watch.
async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not {what} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The process behind `op`, found by its metrics port.
fn process(op: &Operator) -> Process {
    let address = format!("127.0.0.1:{}", op.metrics_port);
    let exe = env!("CARGO_BIN_EXE_keyward");
    let found: Vec<Process> = std::fs::read_dir("/proc")
        .expect("reading /proc")
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let ours = args.first().map(String::as_str) == Some(exe)
                && args
                    .windows(2)
                    .any(|w| w[0] == "--metrics-addr" && w[1] == address);
            if ours { Process::of(pid) } else { None }
        })
        .collect();
    assert_eq!(found.len(), 1, "processes on {address}: {found:?}");
    found[0]
}

fn signal(process: Process, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(process.pid.to_string())
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {}", process.pid);
}

/// Which of the two replicas holds the Lease, once one does: (leader, standby).
async fn leader_and_standby<'a>(
    env: &TestEnv,
    first: &'a Operator,
    second: &'a Operator,
) -> (&'a Operator, &'a Operator) {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    let lease = wait_for(&leases, LEASE, "held", T, |l: &Lease| {
        l.spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            .is_some_and(|h| !h.is_empty())
    })
    .await;
    let holder = lease.spec.and_then(|s| s.holder_identity);
    if holder.as_deref() == Some(identity(first).as_str()) {
        (first, second)
    } else {
        assert_eq!(holder.as_deref(), Some(identity(second).as_str()));
        (second, first)
    }
}

/// Writes the Lease over to `holder`, as a replica taking it would (renewTime now).
async fn give_lease_to(env: &TestEnv, holder: &str) {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    for _ in 0..20 {
        let mut lease = leases.get(LEASE).await.expect("reading the Lease");
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(holder.to_owned());
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        match leases.replace(LEASE, &PostParams::default(), &lease).await {
            Ok(_) => return,
            // The leader renewed in between.
            Err(kube::Error::Api(status)) if status.is_conflict() => continue,
            Err(err) => panic!("replacing the Lease: {err}"),
        }
    }
    panic!("the Lease kept changing under the test");
}

/// Keys that rotate every 2 s, so the leader has a write due at any moment.
async fn busy_keys(env: &TestEnv, tenant: &str) {
    for name in ["r0", "r1", "r2"] {
        key(
            env,
            name,
            json!({
                "tenant": tenant, "owner": "alice",
                "rotation": {"every": "2s", "overlap": "1s"},
            }),
        )
        .await;
    }
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    wait_for(&keys, "r0", "issued", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version).is_some()
    })
    .await;
}

/// The writes `old` sent at or after `since`.
fn writes_since(old: &Operator, since: DateTime<Utc>) -> Vec<(DateTime<Utc>, String)> {
    writes(old)
        .into_iter()
        .filter(|(at, _)| *at >= since)
        .collect()
}

fn refused(op: &Operator) -> usize {
    op.logs()
        .matches("refused: this replica does not hold the leader Lease")
        .count()
}

#[tokio::test]
async fn with_leader_election_only_the_lease_holder_acts_and_a_standby_takes_over() {
    let env = TestEnv::new("leader").await;
    let tenant = tenant(&env).await;
    let (mut first, mut second) = replicas(&env).await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    key(&env, "a", json!({"tenant": tenant, "owner": "alice"})).await;
    wait_for(&keys, "a", "issued", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version) == Some(1)
    })
    .await;
    let issued = |op: &Operator, name: &str| {
        op.audit()
            .iter()
            .filter(|a| a["action"] == "Issued" && a["object"]["name"] == name)
            .count()
    };
    // Both replicas are ready (warm caches); exactly one of them acted. (The audit line
    // follows the status write, so give it a moment, bounded.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while issued(&first, "a") + issued(&second, "a") == 0 && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a1, a2) = (issued(&first, "a"), issued(&second, "a"));
    assert_eq!(a1 + a2, 1, "issued by {a1} + {a2} replicas");
    let (leader, standby) = if a1 == 1 {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };

    // The leader dies; the standby takes the Lease once it runs out and issues the next key.
    leader.kill().await;
    key(&env, "b", json!({"tenant": tenant, "owner": "alice"})).await;
    wait_for(&keys, "b", "issued by the new leader", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version) == Some(1)
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while issued(standby, "b") == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(issued(standby, "b"), 1);
    cleanup(env, &tenant).await;
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_away_makes_no_write_once_another_replica_leads() {
    let env = TestEnv::new("leader-taken").await;
    let tenant = tenant(&env).await;
    let (first, second) = replicas(&env).await;
    busy_keys(&env, &tenant).await;
    let (old, new) = leader_and_standby(&env, &first, &second).await;
    let old_process = process(old);
    until("writing", T, || !writes(old).is_empty()).await;

    give_lease_to(&env, "intruder").await;
    until("leading after the intruder's Lease ran out", T, || {
        logged_at(new, "became leader").is_some()
    })
    .await;
    let took_over = logged_at(new, "became leader").expect("logged");
    until("writing as the new leader", T, || {
        !writes_since(new, took_over).is_empty()
    })
    .await;
    until("stopped", T, || !old_process.is_alive()).await;

    let late = writes_since(old, took_over);
    assert!(
        late.is_empty(),
        "the old leader wrote after {took_over}: {late:#?}\n{}",
        old.logs()
    );
    assert!(
        logged_at(old, "lost leadership").is_some(),
        "{}",
        old.logs()
    );
    assert!(
        logged_at(old, "keyward run failed").is_some(),
        "{}",
        old.logs()
    );
    eprintln!(
        "old leader: {} writes, the last at {:?}; {} refused; new leader from {took_over}",
        writes(old).len(),
        writes(old).last().map(|w| w.0),
        refused(old)
    );
    cleanup(env, &tenant).await;
}

#[tokio::test]
async fn a_paused_leader_whose_lease_was_taken_writes_nothing_when_it_resumes() {
    let env = TestEnv::new("leader-paused").await;
    let tenant = tenant(&env).await;
    let (first, second) = replicas(&env).await;
    busy_keys(&env, &tenant).await;
    let (old, new) = leader_and_standby(&env, &first, &second).await;
    let old_process = process(old);
    until("writing", T, || !writes(old).is_empty()).await;

    // A leader frozen (a stalled node, a long pause) while its Lease is taken: when it
    // resumes, its rotations are overdue and it has not yet heard of the new holder.
    signal(old_process, "STOP");
    give_lease_to(&env, "intruder").await;
    until("leading after the intruder's Lease ran out", T, || {
        logged_at(new, "became leader").is_some()
    })
    .await;
    let took_over = logged_at(new, "became leader").expect("logged");
    until("writing as the new leader", T, || {
        !writes_since(new, took_over).is_empty()
    })
    .await;
    signal(old_process, "CONT");
    until("stopped", T, || !old_process.is_alive()).await;

    let late = writes_since(old, took_over);
    assert!(
        late.is_empty(),
        "the resumed leader wrote after {took_over}: {late:#?}\n{}",
        old.logs()
    );
    assert!(
        logged_at(old, "lost leadership").is_some(),
        "{}",
        old.logs()
    );
    assert!(
        logged_at(old, "keyward run failed").is_some(),
        "{}",
        old.logs()
    );
    eprintln!(
        "resumed leader: {} writes refused; new leader from {took_over}",
        refused(old)
    );
    cleanup(env, &tenant).await;
}

#[tokio::test]
async fn a_leader_stopped_cleanly_hands_the_lease_over_at_once() {
    // A Lease that outlives its holder by a minute: a standby that leads well before
    // then was handed the Lease, it did not wait for it to run out.
    let env = TestEnv::new("leader-release").await;
    let tenant = tenant(&env).await;
    let args = [
        "--leader-elect",
        "--leader-elect-namespace",
        env.ns.as_str(),
        "--leader-elect-lease-duration",
        "60s",
    ];
    let first = Operator::start_with(&env.ns, &args).await;
    let second = Operator::start_with(&env.ns, &args).await;
    let (old, new) = leader_and_standby(&env, &first, &second).await;
    let old_process = process(old);
    key(&env, "a", json!({"tenant": tenant, "owner": "alice"})).await;
    let keys: Api<ApiKey> = Api::namespaced(env.client.clone(), &env.ns);
    wait_for(&keys, "a", "issued", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version) == Some(1)
    })
    .await;

    // SIGTERM, as the kubelet sends on a rollout or a drain.
    signal(old_process, "TERM");
    until("the old leader exited", Duration::from_secs(30), || {
        !old_process.is_alive()
    })
    .await;
    assert!(
        logged_at(old, "released the Lease").is_some(),
        "{}",
        old.logs()
    );
    until(
        "the standby leads, long before the 60 s Lease would have run out",
        Duration::from_secs(20),
        || logged_at(new, "became leader").is_some(),
    )
    .await;
    // And acts: the next key is issued by it.
    key(&env, "b", json!({"tenant": tenant, "owner": "alice"})).await;
    wait_for(&keys, "b", "issued by the new leader", T, |k: &ApiKey| {
        k.status.as_ref().and_then(|s| s.version) == Some(1)
    })
    .await;
    let released = logged_at(old, "released the Lease").expect("logged");
    let late: Vec<_> = writes(old)
        .into_iter()
        .filter(|(at, _)| *at >= released)
        .collect();
    assert!(
        late.is_empty(),
        "the old leader wrote after releasing: {late:#?}"
    );
    cleanup(env, &tenant).await;
}
