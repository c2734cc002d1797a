//! Failover of two `keyward run --leader-elect` replicas, with the chart's arguments (Lease
//! duration 15 s), on the local plane: the leader is SIGKILLed at the moment a rotation is
//! requested, and the bench measures how long until the standby holds the Lease ("became
//! leader" in its log) and until the rotation is served (status version + 1). It also
//! counts the writes each replica sent while it was a standby (none expected). The killed
//! replica is started again as the next standby, and the round repeats.
//!
//! `cargo bench --bench failover` (or `make bench`), on a running plane. Knobs:
//! `KEYWARD_BENCH_FAILOVER_ROUNDS` (5), `KEYWARD_BENCH_LEASE` (lease seconds, 15),
//! `KEYWARD_KUBECONFIG`.

mod common;
use common::{env_or, kubeconfig, operator};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::api::core::v1::Namespace;
use keyward::api::{ApiKey, Tenant};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

struct Replica {
    child: Option<tokio::process::Child>,
    log: PathBuf,
    runs: usize,
    dir: PathBuf,
    args: Vec<String>,
}

impl Replica {
    fn start(dir: &Path, name: &str, args: &[String]) -> anyhow::Result<Self> {
        let mut r = Self {
            child: None,
            log: PathBuf::new(),
            runs: 0,
            dir: dir.join(name),
            args: args.to_vec(),
        };
        std::fs::create_dir_all(&r.dir)?;
        r.spawn()?;
        Ok(r)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.runs += 1;
        self.log = self.dir.join(format!("stderr.{}", self.runs));
        let file = std::fs::File::create(&self.log)?;
        let bin = Path::new(env!("CARGO_BIN_EXE_keyward"));
        let (mut cmd, _) = operator(bin, "info,keyward::client=trace", Stdio::from(file))?;
        cmd.args(&self.args);
        self.child = Some(cmd.spawn()?);
        Ok(())
    }

    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn leads(&self) -> bool {
        self.lines().iter().any(|l| l["message"] == "became leader")
    }

    /// Writes other than the Lease's sent by this run before it became leader.
    fn standby_writes(&self) -> usize {
        self.lines()
            .iter()
            .take_while(|l| l["message"] != "became leader")
            .filter(|l| l["message"] == "write sent")
            .filter(|l| !l["path"].as_str().unwrap_or_default().contains("/leases"))
            .count()
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, as the kubelet sends on a rollout or a drain; waits for the exit.
    async fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
        }
    }
}

async fn until(limit: Duration, mut cond: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn version(key: &ApiKey) -> Option<i64> {
    key.status.as_ref().and_then(|s| s.version)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("failover bench: run it with `cargo bench --bench failover`");
        return Ok(());
    }
    let rounds = env_or("KEYWARD_BENCH_FAILOVER_ROUNDS", 5).max(1);
    let lease = env_or("KEYWARD_BENCH_LEASE", 15).max(1);
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig())?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = Client::try_from(config)?;
    let ns = format!("bench-failover-{:05x}", rand::random::<u32>() & 0xf_ffff);
    let tenant = format!("t-{ns}");
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(ns.clone()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await?;
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "keyward.io/v1alpha1", "kind": "Tenant",
                "metadata": {"name": tenant},
                "spec": {"namespaces": [ns], "owners": [{"name": "alice", "kind": "User"}]},
            }))?,
        )
        .await?;
    let keys: Api<ApiKey> = Api::namespaced(client.clone(), &ns);
    keys.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "keyward.io/v1alpha1", "kind": "ApiKey",
            "metadata": {"name": "k"},
            "spec": {"tenant": tenant, "owner": "alice"},
        }))?,
    )
    .await?;

    let dir = tempfile::tempdir()?;
    let args: Vec<String> = [
        "--namespace",
        &ns,
        "--leader-elect",
        "--leader-elect-namespace",
        &ns,
        &format!("--leader-elect-lease-duration={lease}s"),
        "--min-rotation-interval=1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut replicas = [
        Replica::start(dir.path(), "a", &args)?,
        Replica::start(dir.path(), "b", &args)?,
    ];
    let limit = Duration::from_secs(lease as u64 * 4 + 30);
    until(limit, async || replicas.iter().any(Replica::leads))
        .await
        .ok_or_else(|| anyhow::anyhow!("no replica became leader"))?;
    until(limit, async || {
        keys.get("k").await.ok().and_then(|k| version(&k)) == Some(1)
    })
    .await
    .ok_or_else(|| anyhow::anyhow!("the key was not issued"))?;

    println!(
        "failover bench: 2 replicas, --leader-elect-lease-duration={lease}s, {rounds} rounds per stop"
    );
    println!(
        "| stop | round | to the new leader (s) | to the rotation served (s) | standby writes |"
    );
    println!("|---|---|---|---|---|");
    let mut summary = Vec::new();
    for stop in ["SIGKILL", "SIGTERM"] {
        let (mut lead_times, mut serve_times) = (Vec::new(), Vec::new());
        for round in 1..=rounds {
            let leader = replicas
                .iter()
                .position(Replica::leads)
                .ok_or_else(|| anyhow::anyhow!("no leader before round {round}"))?;
            let standby = 1 - leader;
            let before = keys
                .get("k")
                .await
                .ok()
                .and_then(|k| version(&k))
                .unwrap_or(0);
            // Settled: the leader has finished its work, the standby waits.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let start = Instant::now();
            if stop == "SIGKILL" {
                replicas[leader].kill().await;
            } else {
                replicas[leader].terminate().await;
            }
            let patch = json!({"metadata": {"annotations": {"keyward.io/rotate": Utc::now().to_rfc3339()}}});
            keys.patch("k", &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            let led = until(limit, async || replicas[standby].leads())
                .await
                .map(|_| start.elapsed());
            let served = until(limit, async || {
                keys.get("k").await.ok().and_then(|k| version(&k)) > Some(before)
            })
            .await
            .map(|_| start.elapsed());
            let writes = replicas[standby].standby_writes();
            let show = |d: Option<Duration>| {
                d.map_or("timeout".to_owned(), |d| format!("{:.2}", d.as_secs_f64()))
            };
            println!(
                "| {stop} | {round} | {} | {} | {writes} |",
                show(led),
                show(served)
            );
            lead_times.extend(led);
            serve_times.extend(served);
            // The stopped replica comes back as the next standby.
            replicas[leader].spawn()?;
        }
        let stats = |v: &mut Vec<Duration>| {
            v.sort();
            let p50 = v.get(v.len() / 2).copied().unwrap_or_default();
            let max = v.last().copied().unwrap_or_default();
            format!(
                "p50 {:.2} s, max {:.2} s",
                p50.as_secs_f64(),
                max.as_secs_f64()
            )
        };
        summary.push(format!(
            "failover after {stop}: new leader {}; a rotation requested at the stop served {}",
            stats(&mut lead_times),
            stats(&mut serve_times)
        ));
    }
    for line in summary {
        println!("{line}");
    }
    for r in &mut replicas {
        r.kill().await;
    }
    let _ = tenants.delete(&tenant, &DeleteParams::default()).await;
    let _ = Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::background())
        .await;
    Ok(())
}
