//! Faults and probes for tests that hurt the operator: an API server outage
//! (`hack/cluster.sh restart-apiserver`), the identity of a running `keyward run` process,
//! and the figures its metrics server gives (request counts, health).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};

use super::operator::Operator;

/// When an outage began and ended, as UNIX times in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Outage {
    /// When SIGKILL was sent to kube-apiserver.
    pub killed: f64,
    /// When its `/readyz` answered ok again.
    pub ready: f64,
}

/// Crashes the local plane's kube-apiserver (SIGKILL), keeps it down for `down`, starts it
/// again and waits until `/readyz` is ok (`hack/cluster.sh restart-apiserver`).
pub async fn restart_apiserver(down: Duration) -> Outage {
    let script = super::repo().join("hack/cluster.sh");
    let out = tokio::process::Command::new(&script)
        .arg("restart-apiserver")
        .arg(format!("{:.3}", down.as_secs_f64()))
        .output()
        .await
        .unwrap_or_else(|err| panic!("running {}: {err}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cluster.sh restart-apiserver failed ({}):\n{stdout}{stderr}",
        out.status
    );
    eprintln!("{}", stderr.trim_end());
    let killed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("killed ")?.trim().parse().ok());
    let ready = stdout.lines().last().and_then(|l| l.trim().parse().ok());
    match (killed, ready) {
        (Some(killed), Some(ready)) => Outage { killed, ready },
        _ => panic!("cluster.sh restart-apiserver printed no kill and ready times:\n{stdout}"),
    }
}

/// The current UNIX time in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A process by PID and kernel start time, so a reused PID is never taken for the same
/// process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub start_ticks: u64,
}

impl Process {
    /// The `keyward run --namespace <namespace>` process this test started (there is one
    /// per test namespace).
    pub fn operator(namespace: &str) -> Self {
        let exe = env!("CARGO_BIN_EXE_keyward");
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("reading /proc").flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let ours = args.first().map(String::as_str) == Some(exe)
                && args.get(1).map(String::as_str) == Some("run")
                && args
                    .windows(2)
                    .any(|w| w[0] == "--namespace" && w[1] == namespace);
            if ours && let Some(process) = Self::of(pid) {
                found.push(process);
            }
        }
        assert_eq!(
            found.len(),
            1,
            "expected one `keyward run --namespace {namespace}` process, found {found:?}"
        );
        found[0]
    }

    /// The process `pid` if it runs (and is not a zombie).
    pub fn of(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        if rest.first() == Some(&"Z") {
            return None;
        }
        // Field 22 of stat, starttime; `rest` starts at field 3.
        let start_ticks = rest.get(19)?.parse().ok()?;
        Some(Self { pid, start_ticks })
    }

    /// Whether this very process still runs.
    pub fn is_alive(&self) -> bool {
        Self::of(self.pid) == Some(*self)
    }
}

/// `keyward_kube_requests_total` by method, from the operator's `/metrics`.
pub async fn kube_requests(op: &Operator) -> BTreeMap<String, f64> {
    let text = op.metrics().await;
    text.lines()
        .filter(|l| l.starts_with("keyward_kube_requests_total{"))
        .filter_map(|l| {
            let method = l.split("method=\"").nth(1)?.split('"').next()?.to_owned();
            let value: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((method, value))
        })
        .fold(BTreeMap::new(), |mut acc, (m, v)| {
            *acc.entry(m).or_default() += v;
            acc
        })
}

/// The total of `kube_requests`.
pub fn total(requests: &BTreeMap<String, f64>) -> f64 {
    requests.values().sum()
}

/// Waits (bounded by `limit`) until the operator's request count has not moved for
/// `quiet`, and returns it: the requests a change caused, once it has been dealt with.
pub async fn settled_requests(
    op: &Operator,
    quiet: Duration,
    limit: Duration,
) -> BTreeMap<String, f64> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = kube_requests(op).await;
    let mut since = tokio::time::Instant::now();
    while since.elapsed() < quiet && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = kube_requests(op).await;
        if now != last {
            last = now;
            since = tokio::time::Instant::now();
        }
    }
    last
}

/// Whether `/healthz` answers 200.
pub async fn healthy(op: &Operator) -> bool {
    op.get("/healthz")
        .await
        .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
}

/// A keyward kind (`Tenant`, `PartnerIntegration`, `ApiKey`, `ServiceAccountCredential`)
/// read as plain JSON, so an object the typed client would refuse (a hostile value admission
/// let through) never breaks the reading test. `namespace` is None for Tenants.
pub fn keyward_api(
    client: &kube::Client,
    namespace: Option<&str>,
    kind: &str,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("keyward.io", "v1alpha1", kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// ApiKeys read as plain JSON (see [`keyward_api`]).
pub fn api_keys(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    keyward_api(client, Some(namespace), "ApiKey")
}

/// `status` of a keyward object read through `api_keys`.
pub fn status(object: &DynamicObject) -> &Value {
    &object.data["status"]
}

/// `status.version`, 0 when there is none.
pub fn version(object: &DynamicObject) -> i64 {
    status(object)["version"].as_i64().unwrap_or(0)
}

/// Asks for a rotation of the ApiKey `name` by setting `keyward.io/rotate` to `value`.
pub async fn request_rotation(keys: &Api<DynamicObject>, name: &str, value: &str) {
    keys.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"keyward.io/rotate": value}}})),
    )
    .await
    .unwrap_or_else(|err| panic!("requesting a rotation of {name}: {err}"));
}
