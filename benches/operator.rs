//! keyward's headline figures on the local plane, with a cluster-wide operator (release
//! build), printed as a table and written to `docs/performance.md`:
//!
//! - mass issue and mass rotation of N ApiKeys (all made due at once by one Tenant policy
//!   change): time, rate, requests per credential, and the same two writes per key (the
//!   Secret, the status) sent by a bare client on the same plane, as a ratio;
//! - operator RSS (and peak) after issue and after the rotation wave, with 100,000 Secrets and
//!   1,000 ServiceAccountCredentials beside the keys at the largest scale;
//! - requests over a quiet minute;
//! - expiry lag (p50/p99/max) of 1,000 keys expiring within 10 s, and of 100 keys at rest
//!   expiring during a second wave of every key's rotation, requested by annotation;
//! - time from a value being copied into another tenant's namespace to `CrossTenant=True`;
//! - another client's steady stream of unrelated writes (ConfigMap patches, 100/s) during
//!   the rotation wave against the same stream alone just before it: its rate and p99,
//!   and the API server's own latency (`apiserver_request_duration_seconds`) for
//!   keyward's writes and for the other client's.
//!
//! `cargo bench --bench operator` (or `make bench`), alone on a running plane
//! (`make cluster-up`). Knobs: `KEYWARD_BENCH_KEYS` (scales, default `1000,10000`),
//! `KEYWARD_BENCH_SECRETS` (100000, at the largest scale), `KEYWARD_BENCH_SACS` (1000, at
//! the largest scale), `KEYWARD_BENCH_EXPIRING` (1000, at the smallest scale),
//! `KEYWARD_BENCH_WAVE_EXPIRING` (100, at every scale),
//! `KEYWARD_BENCH_QUIET_SECS` (60), `KEYWARD_BENCH_LOAD_RATE` (100 writes/s),
//! `KEYWARD_BENCH_OPERATOR_ARGS` (more `keyward run` flags, space-separated, e.g.
//! `--kube-qps 0` to measure without the rate limit), `KEYWARD_BENCH_OPERATOR_WRAPPER` (a
//! command the operator runs under, space-separated, e.g. `heaptrack -o /tmp/keyward` for a
//! heap profile; the memory figures are then the wrapper's), `KEYWARD_BENCH_REPORT` (default
//! `docs/performance.md`; empty: print only), `KEYWARD_KUBECONFIG`.

mod common;
use common::{
    apiserver_latency, create_all, env_or, kubeconfig, latency_quantile, memory, requests, settled,
    steady_writes,
};

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use keyward::api::{ApiKey, CredentialState, ServiceAccountCredential, Tenant};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Config, Resource, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// Keys per namespace.
const PER_NAMESPACE: usize = 1000;
/// Namespaces the Secrets of the largest scale are spread over.
const SECRET_NAMESPACES: usize = 100;
/// The longest any phase may take.
const PHASE_TIMEOUT: Duration = Duration::from_secs(900);
const BENCH_LABEL: &str = "keyward.io/bench-run";

/// One line of the report: what, the figure, the target.
type Row = (String, String, String);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench targets without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("operator bench: run it with `cargo bench --bench operator`");
        return Ok(());
    }
    let mut scales: Vec<usize> = std::env::var("KEYWARD_BENCH_KEYS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    scales.sort_unstable();
    let largest = scales.last().copied().unwrap_or(0);
    let secrets = env_or("KEYWARD_BENCH_SECRETS", 100_000);
    let sacs = env_or("KEYWARD_BENCH_SACS", 1000);
    let expiring = env_or("KEYWARD_BENCH_EXPIRING", 1000);
    let wave_expiring = env_or("KEYWARD_BENCH_WAVE_EXPIRING", 100);
    let quiet = Duration::from_secs(env_or("KEYWARD_BENCH_QUIET_SECS", 60) as u64);
    let path = kubeconfig();
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e} (run `make cluster-up`)", path.display()))?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = Client::try_from(config)?;

    let mut rows: Vec<Row> = Vec::new();
    let mut rates: Vec<(usize, f64)> = Vec::new();
    for (i, &keys) in scales.iter().enumerate() {
        let world = World {
            client: client.clone(),
            id: format!("{:06x}", rand::random::<u32>() & 0xff_ffff),
            keys,
            secrets: if keys == largest { secrets } else { 0 },
            sacs: if keys == largest { sacs } else { 0 },
            expiring: if i == 0 { expiring } else { 0 },
            wave_expiring,
            quiet: if i == 0 { quiet } else { Duration::ZERO },
        };
        println!(
            "operator bench: {keys} ApiKeys, {} Secrets, {} ServiceAccountCredentials (run {})",
            world.secrets, world.sacs, world.id
        );
        let result = world.measure(&mut rows).await;
        world.cleanup().await;
        rates.push((keys, result?));
    }
    if let [(small, first), .., (large, last)] = rates.as_slice() {
        rows.push((
            format!("rotation rate per key at {large} keys vs {small}"),
            format!("{:.2}×", last / first),
            "≥ 1.0×".into(),
        ));
    }

    let mut table = String::from("| what | figure | target |\n| --- | --- | --- |\n");
    for (what, figure, target) in &rows {
        table.push_str(&format!("| {what} | {figure} | {target} |\n"));
    }
    println!("\n{table}");
    let report =
        std::env::var("KEYWARD_BENCH_REPORT").unwrap_or_else(|_| "docs/performance.md".into());
    if !report.is_empty() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&report);
        std::fs::write(&path, performance_page(&table, &scales))?;
        println!("written to {}", path.display());
    }
    Ok(())
}

/// The page `docs/performance.md`: the machine, the command, the figures.
fn performance_page(table: &str, scales: &[usize]) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(
            || "?".into(),
            |kib| format!("{:.0} GiB", kib as f64 / 1048576.0),
        );
    let kernel = read("/proc/sys/kernel/osrelease");
    let when = chrono::Utc::now().format("%Y-%m-%d");
    format!(
        "# Performance\n\n\
         Written by `cargo bench --bench operator` (part of `make bench`) on {when}: \
         {cpus} CPUs, {memory} of memory, Linux {kernel}, the local plane of \
         `make cluster-up` (etcd, kube-apiserver and kube-controller-manager on the same \
         machine as the bench and the operator), the operator's release build running \
         cluster-wide with `--min-rotation-interval 1s`. Scales: {scales:?} ApiKeys. \
         Requests are the operator's own (`keyward_kube_requests_total`); memory is the \
         operator's `VmRSS` (and `VmHWM`, the peak) from `/proc`. See `benches/operator.rs` \
         for what each phase does, and its knobs.\n\n{table}",
        kernel = kernel.trim(),
    )
}

struct World {
    client: Client,
    id: String,
    keys: usize,
    secrets: usize,
    sacs: usize,
    expiring: usize,
    wave_expiring: usize,
    quiet: Duration,
}

impl World {
    fn tenant(&self) -> String {
        format!("bench-{}", self.id)
    }

    fn key_namespaces(&self) -> Vec<String> {
        (0..self.keys.div_ceil(PER_NAMESPACE))
            .map(|i| format!("bench-{}-k{i:02}", self.id))
            .collect()
    }

    fn secret_namespaces(&self) -> Vec<String> {
        let n = if self.secrets == 0 {
            0
        } else {
            SECRET_NAMESPACES
        };
        (0..n)
            .map(|i| format!("bench-{}-s{i:03}", self.id))
            .collect()
    }

    fn extra_namespaces(&self) -> [String; 2] {
        [
            format!("bench-{}-exp", self.id),
            format!("bench-{}-foreign", self.id),
        ]
    }

    /// Where the other client writes: no tenant's.
    fn load_namespace(&self) -> String {
        format!("bench-{}-load", self.id)
    }

    fn all_namespaces(&self) -> Vec<String> {
        let mut all = self.key_namespaces();
        all.extend(self.secret_namespaces());
        all.extend(self.extra_namespaces());
        all.push(self.load_namespace());
        all
    }

    fn selector(&self) -> String {
        format!("{BENCH_LABEL}={}", self.id)
    }

    fn key(&self, i: usize) -> (String, String) {
        (
            self.key_namespaces()[i / PER_NAMESPACE].clone(),
            format!("k{i:05}"),
        )
    }

    async fn cleanup(&self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for ns in self.all_namespaces() {
            let _ = namespaces.delete(&ns, &DeleteParams::background()).await;
        }
        for tenant in [self.tenant(), format!("{}-other", self.tenant())] {
            let _ = Api::<Tenant>::all(self.client.clone())
                .delete(&tenant, &DeleteParams::default())
                .await;
        }
        // The next scale's operator is cluster-wide: it must not find this one's objects.
        let deadline = Instant::now() + PHASE_TIMEOUT;
        for ns in self.all_namespaces() {
            while namespaces.get_opt(&ns).await.ok().flatten().is_some()
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }

    /// Runs every phase; returns the rotation rate (keys per second).
    async fn measure(&self, rows: &mut Vec<Row>) -> anyhow::Result<f64> {
        let n = self.keys;
        let label = json!({BENCH_LABEL: self.id});
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let owned: Vec<String> = {
            let mut owned = self.key_namespaces();
            owned.extend(self.secret_namespaces());
            owned.push(self.extra_namespaces()[0].clone());
            owned
        };
        for ns in self.all_namespaces() {
            let object = Namespace {
                metadata: ObjectMeta {
                    name: Some(ns),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            namespaces.create(&PostParams::default(), &object).await?;
        }
        let tenants: Api<Tenant> = Api::all(self.client.clone());
        tenants
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "keyward.io/v1alpha1", "kind": "Tenant",
                    "metadata": {"name": self.tenant()},
                    "spec": {"namespaces": owned, "owners": [{"name": "bench", "kind": "User"}]},
                }))?,
            )
            .await?;
        // The foreign namespace belongs to another tenant: a copy there is cross-tenant.
        tenants
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "keyward.io/v1alpha1", "kind": "Tenant",
                    "metadata": {"name": format!("{}-other", self.tenant())},
                    "spec": {"namespaces": [self.extra_namespaces()[1]],
                             "owners": [{"name": "bench", "kind": "User"}]},
                }))?,
            )
            .await?;

        let created = Instant::now();
        create_secrets(&self.client, &self.secret_namespaces(), self.secrets).await?;
        if self.secrets > 0 {
            println!(
                "  created {} Secrets in {:.1}s",
                self.secrets,
                created.elapsed().as_secs_f64()
            );
        }
        for ns in self.key_namespaces() {
            let objects: Vec<Value> = (0..n)
                .map(|i| self.key(i))
                .filter(|(kns, _)| *kns == ns)
                .map(|(_, name)| {
                    json!({"apiVersion": "keyward.io/v1alpha1", "kind": "ApiKey",
                           "metadata": {"name": name, "labels": label},
                           "spec": {"tenant": self.tenant(), "owner": "bench"}})
                })
                .collect();
            create_all(
                &Api::<ApiKey>::namespaced(self.client.clone(), &ns),
                objects,
            )
            .await;
        }

        // Mass issue: every key exists before the operator starts.
        let mut op = Operator::start().await?;
        op.wait_ready().await?;
        let at_ready = requests(op.port).await;
        let issue_started = Instant::now();
        let keys: Api<ApiKey> = Api::all(self.client.clone());
        wait_all(&keys, &self.selector(), n, |k: &ApiKey| {
            k.status.as_ref().and_then(|s| s.version) >= Some(1)
        })
        .await?;
        let issue = issue_started.elapsed();
        let issued_requests = settled(op.port).await - at_ready;
        rows.push((
            format!("mass issue of {n} keys"),
            format!(
                "{:.1} s ({:.0}/s), {:.2} requests per key",
                issue.as_secs_f64(),
                n as f64 / issue.as_secs_f64(),
                issued_requests / n as f64
            ),
            "≤ 2 requests per key".into(),
        ));
        let issued_at = Instant::now();

        if self.sacs > 0 {
            let ns = self.key_namespaces()[0].clone();
            let objects: Vec<Value> = (0..self.sacs)
                .map(|i| {
                    json!({"apiVersion": "keyward.io/v1alpha1", "kind": "ServiceAccountCredential",
                           "metadata": {"name": format!("sa{i:04}"), "labels": label},
                           "spec": {"tenant": self.tenant(), "owner": "bench"}})
                })
                .collect();
            create_all(
                &Api::<ServiceAccountCredential>::namespaced(self.client.clone(), &ns),
                objects,
            )
            .await;
            let sacs: Api<ServiceAccountCredential> = Api::all(self.client.clone());
            wait_all(&sacs, &self.selector(), self.sacs, |s| {
                s.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Active)
            })
            .await?;
            settled(op.port).await;
        }
        let (rss, hwm) = memory(op.pid);
        rows.push((
            format!(
                "RSS after issue: {n} keys, {} Secrets, {} SACs",
                self.secrets, self.sacs
            ),
            format!("{} (peak {})", mib(rss), mib(hwm)),
            if n >= 10_000 {
                "≤ 96 MiB".into()
            } else {
                String::new()
            },
        ));

        // A quiet minute, while the keys age for the rotation wave.
        if !self.quiet.is_zero() {
            let before = requests(op.port).await;
            tokio::time::sleep(self.quiet).await;
            let sent = requests(op.port).await - before;
            rows.push((
                format!("requests over {} s of quiet", self.quiet.as_secs()),
                format!("{sent:.0}"),
                "0".into(),
            ));
        }

        // Mass rotation: one Tenant policy change makes every key due at once. The interval
        // is longer than the wave, so no key rotates twice before it ends.
        let every = (issue * 2 + Duration::from_secs(10)).max(Duration::from_secs(20));
        let since = issued_at.elapsed();
        if since < every {
            tokio::time::sleep(every - since).await;
        }
        // The other client alone, for as long as a wave of 1,000 keys takes.
        let load_rate = env_or("KEYWARD_BENCH_LOAD_RATE", 100) as u32;
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let alone = tokio::spawn(steady_writes(
            self.client.clone(),
            self.load_namespace(),
            load_rate,
            stop,
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        let _ = stop_tx.send(true);
        let alone = alone.await?;
        let keyward_writes = |verb: &str, resource: &str| {
            ["PATCH", "PUT", "POST", "APPLY", "DELETE"].contains(&verb)
                && ["secrets", "apikeys", "events"].contains(&resource)
        };
        let other_writes = |verb: &str, resource: &str| verb == "PATCH" && resource == "configmaps";
        let (keyward_before, other_before) = (
            apiserver_latency(&self.client, keyward_writes).await,
            apiserver_latency(&self.client, other_writes).await,
        );
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let beside = tokio::spawn(steady_writes(
            self.client.clone(),
            self.load_namespace(),
            load_rate,
            stop,
        ));

        let before = requests(op.port).await;
        let wave = Instant::now();
        tenants
            .patch(
                &self.tenant(),
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"policy": {"maxRotationInterval": format!("{}s", every.as_secs())}}}),
                ),
            )
            .await?;
        wait_all(&keys, &self.selector(), n, |k: &ApiKey| {
            k.status.as_ref().and_then(|s| s.version) >= Some(2)
        })
        .await?;
        let rotation = wave.elapsed();
        let _ = stop_tx.send(true);
        let beside = beside.await?;
        let (keyward_after, other_after) = (
            apiserver_latency(&self.client, keyward_writes).await,
            apiserver_latency(&self.client, other_writes).await,
        );
        let rotated_requests = settled(op.port).await - before;
        tenants
            .patch(
                &self.tenant(),
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"policy": null}})),
            )
            .await?;
        let rate = n as f64 / rotation.as_secs_f64();
        let (rss, hwm) = memory(op.pid);
        rows.push((
            format!("mass rotation of {n} keys"),
            format!(
                "{:.1} s ({rate:.0}/s), {:.2} requests per key",
                rotation.as_secs_f64(),
                rotated_requests / n as f64
            ),
            "≤ 3 requests per key".into(),
        ));
        rows.push((
            format!("another client's {load_rate} writes/s during the rotation wave of {n} keys"),
            format!(
                "{:.0}/s ({:.0}% of its {:.0}/s alone), p99 {:.3} s (alone {:.3} s), {} failed",
                beside.rate(),
                100.0 * beside.rate() / alone.rate().max(f64::MIN_POSITIVE),
                alone.rate(),
                beside.quantile(0.99),
                alone.quantile(0.99),
                beside.failed
            ),
            "≥ 80%, p99 < 1 s".into(),
        ));
        let (keyward_p99, keyward_n) = latency_quantile(&keyward_before, &keyward_after, 0.99);
        let (other_p99, other_n) = latency_quantile(&other_before, &other_after, 0.99);
        rows.push((
            format!("API server latency during the wave of {n} keys, p99 (its histogram's bucket)"),
            format!(
                "keyward's writes ≤ {keyward_p99} s ({keyward_n:.0} requests); the other client's ≤ {other_p99} s ({other_n:.0})"
            ),
            String::new(),
        ));
        rows.push((
            format!("RSS after the rotation wave of {n} keys"),
            format!("{} (peak {})", mib(rss), mib(hwm)),
            if n >= 10_000 {
                "≤ 96 MiB".into()
            } else {
                String::new()
            },
        ));
        settled(op.port).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let (rss, _) = memory(op.pid);
        rows.push((
            "RSS 30 s later".into(),
            mib(rss),
            if n >= 10_000 {
                "≤ 96 MiB".into()
            } else {
                String::new()
            },
        ));

        if self.wave_expiring > 0 {
            rows.push(self.expiry_during_wave(n).await?);
        }
        if self.expiring > 0 {
            rows.push(self.expiry_lag().await?);
        }
        rows.push(self.copy_found().await?);
        op.stop().await;
        op.report_errors();

        // The same two writes per key, from a bare client, with the operator stopped.
        let bare = Instant::now();
        stream::iter(0..n)
            .map(|i| {
                let (ns, name) = self.key(i);
                let client = self.client.clone();
                async move {
                    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
                    let keys: Api<ApiKey> = Api::namespaced(client, &ns);
                    let value = format!("{:032x}", rand::random::<u128>());
                    let _ = secrets
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"stringData": {"api-key": value}})),
                        )
                        .await;
                    let _ = keys
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {"version": 3}})),
                        )
                        .await;
                }
            })
            .buffer_unordered(64)
            .collect::<()>()
            .await;
        let bare = bare.elapsed();
        rows.push((
            format!("bare client, the same two writes for {n} keys (64 at a time)"),
            format!(
                "{:.1} s: keyward's rotation takes {:.2}× as long",
                bare.as_secs_f64(),
                rotation.as_secs_f64() / bare.as_secs_f64()
            ),
            if n == 1000 {
                "≤ 1.0×".into()
            } else {
                String::new()
            },
        ));
        Ok(rate)
    }

    /// Keys at rest expiring during a second rotation wave, which every key's rotation
    /// request (`keyward.io/rotate`, as a pipeline's mass annotation would set it) starts:
    /// how late each is seen Expired. Their deadlines fall from 5 s into the wave, spread
    /// over 5 s, while thousands of rotations are due before them.
    async fn expiry_during_wave(&self, n: usize) -> anyhow::Result<Row> {
        let ns = self.extra_namespaces()[0].clone();
        let count = self.wave_expiring;
        let label = format!("{BENCH_LABEL}={}-wave-exp", self.id);
        let base = chrono::Utc::now() + chrono::Duration::seconds(15);
        let deadline =
            move |i: usize| base + chrono::Duration::milliseconds((i * 5_000 / count) as i64);
        let objects: Vec<Value> = (0..count)
            .map(|i| {
                json!({"apiVersion": "keyward.io/v1alpha1", "kind": "ApiKey",
                       "metadata": {"name": format!("w{i:05}"), "labels": {BENCH_LABEL: format!("{}-wave-exp", self.id)}},
                       "spec": {"tenant": self.tenant(), "owner": "bench",
                                "expiresAt": deadline(i).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}})
            })
            .collect();
        let expiring: Api<ApiKey> = Api::namespaced(self.client.clone(), &ns);
        create_all(&expiring, objects).await;
        wait_all(&expiring, &label, count, |k: &ApiKey| {
            k.status.as_ref().and_then(|s| s.version) >= Some(1)
        })
        .await?;
        let watch = {
            let (expiring, label) = (expiring.clone(), label.clone());
            tokio::spawn(async move {
                wait_all(&expiring, &label, count, |k: &ApiKey| {
                    k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Expired)
                })
                .await
            })
        };
        let start = base - chrono::Duration::seconds(5);
        if let Ok(wait) = (start - chrono::Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
        let request = format!("wave-{}", self.id);
        let wave = Instant::now();
        let all: Api<ApiKey> = Api::all(self.client.clone());
        let rotated = {
            let (all, selector, request) = (all.clone(), self.selector(), request.clone());
            tokio::spawn(async move {
                wait_all(&all, &selector, n, |k: &ApiKey| {
                    k.status
                        .as_ref()
                        .and_then(|s| s.last_rotation_request.as_deref())
                        == Some(request.as_str())
                })
                .await
            })
        };
        stream::iter(0..n)
            .map(|i| {
                let (ns, name) = self.key(i);
                let keys: Api<ApiKey> = Api::namespaced(self.client.clone(), &ns);
                let patch = json!({"metadata": {"annotations": {"keyward.io/rotate": request}}});
                async move {
                    let _ = keys
                        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await;
                }
            })
            .buffer_unordered(64)
            .collect::<()>()
            .await;
        rotated.await??;
        let took = wave.elapsed();
        let seen = watch.await??;
        Ok((
            format!(
                "expiry lag, {count} keys expiring 5 to 10 s into a wave of {n} requested rotations ({:.1} s)",
                took.as_secs_f64()
            ),
            lag_figure(&seen, 'w', deadline),
            "p99 ≤ 1 s".into(),
        ))
    }

    /// Keys expiring 40 s from now, spread over 10 s: how late each is seen Expired.
    async fn expiry_lag(&self) -> anyhow::Result<Row> {
        let ns = self.extra_namespaces()[0].clone();
        let base = chrono::Utc::now() + chrono::Duration::seconds(40);
        let deadline =
            |i: usize| base + chrono::Duration::milliseconds((i * 10_000 / self.expiring) as i64);
        let objects: Vec<Value> = (0..self.expiring)
            .map(|i| {
                json!({"apiVersion": "keyward.io/v1alpha1", "kind": "ApiKey",
                       "metadata": {"name": format!("e{i:05}"), "labels": {BENCH_LABEL: format!("{}-exp", self.id)}},
                       "spec": {"tenant": self.tenant(), "owner": "bench",
                                "expiresAt": deadline(i).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}})
            })
            .collect();
        create_all(
            &Api::<ApiKey>::namespaced(self.client.clone(), &ns),
            objects,
        )
        .await;
        let keys: Api<ApiKey> = Api::namespaced(self.client.clone(), &ns);
        let seen = wait_all(
            &keys,
            &format!("{BENCH_LABEL}={}-exp", self.id),
            self.expiring,
            |k: &ApiKey| k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Expired),
        )
        .await?;
        Ok((
            format!("expiry lag, {} keys expiring within 10 s", self.expiring),
            lag_figure(&seen, 'e', deadline),
            "p99 ≤ 1 s".into(),
        ))
    }

    /// A key's value copied into another tenant's namespace: how soon its key says so.
    async fn copy_found(&self) -> anyhow::Result<Row> {
        let (ns, name) = self.key(0);
        let value = Api::<Secret>::namespaced(self.client.clone(), &ns)
            .get(&name)
            .await?
            .data
            .and_then(|d| d.get("api-key").cloned())
            .ok_or_else(|| anyhow::anyhow!("{ns}/{name} holds no value"))?;
        let copy = Secret {
            metadata: ObjectMeta {
                name: Some("pasted".into()),
                ..ObjectMeta::default()
            },
            data: Some([("token".to_owned(), value)].into()),
            ..Secret::default()
        };
        let keys: Api<ApiKey> = Api::namespaced(self.client.clone(), &ns);
        let copied = Instant::now();
        Api::<Secret>::namespaced(self.client.clone(), &self.extra_namespaces()[1])
            .create(&PostParams::default(), &copy)
            .await?;
        loop {
            let key = keys.get(&name).await?;
            let flagged = key.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "CrossTenant" && c.status == "True")
            });
            if flagged || copied.elapsed() > Duration::from_secs(120) {
                let took = copied.elapsed();
                return Ok((
                    "a copied value to CrossTenant=True on its key".into(),
                    if flagged {
                        format!("{:.2} s", took.as_secs_f64())
                    } else {
                        "not within 120 s".into()
                    },
                    "≤ 5 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Creates `total` small Secrets spread over `namespaces`, 48 at a time.
async fn create_secrets(
    client: &Client,
    namespaces: &[String],
    total: usize,
) -> anyhow::Result<()> {
    if namespaces.is_empty() || total == 0 {
        return Ok(());
    }
    let per_ns = total.div_ceil(namespaces.len());
    let secrets: Vec<Value> = (0..total)
        .map(|i| {
            json!({"metadata": {"name": format!("s-{i:06}"), "namespace": namespaces[i / per_ns]},
                   "stringData": {"value": format!("v{i:016}")}})
        })
        .collect();
    stream::iter(secrets)
        .for_each_concurrent(48, |s| {
            let client = client.clone();
            async move {
                let ns = s["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if let Ok(secret) = serde_json::from_value::<Secret>(s) {
                    let api: Api<Secret> = Api::namespaced(client, &ns);
                    for _ in 0..5 {
                        match api.create(&PostParams::default(), &secret).await {
                            Err(kube::Error::Api(e)) if !e.is_already_exists() => {
                                tokio::time::sleep(Duration::from_millis(200)).await
                            }
                            Err(kube::Error::Service(_)) => {
                                tokio::time::sleep(Duration::from_millis(200)).await
                            }
                            _ => break,
                        }
                    }
                }
            }
        })
        .await;
    Ok(())
}

/// Waits, from one watch, until `count` objects with the label `selector` satisfy `done`;
/// returns the time each was first seen doing so.
/// p50, p99 and max of how late each key (named `<prefix><i>`) was seen Expired after
/// its deadline.
fn lag_figure(
    seen: &HashMap<String, chrono::DateTime<chrono::Utc>>,
    prefix: char,
    deadline: impl Fn(usize) -> chrono::DateTime<chrono::Utc>,
) -> String {
    let mut lags: Vec<f64> = seen
        .iter()
        .filter_map(|(name, at)| {
            let i: usize = name.strip_prefix(prefix)?.parse().ok()?;
            Some((*at - deadline(i)).num_milliseconds() as f64 / 1000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        let at = ((lags.len() as f64 - 1.0) * q).round() as usize;
        lags.get(at).copied().unwrap_or(f64::NAN)
    };
    format!(
        "p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    )
}

async fn wait_all<K>(
    api: &Api<K>,
    selector: &str,
    count: usize,
    done: impl Fn(&K) -> bool,
) -> anyhow::Result<HashMap<String, chrono::DateTime<chrono::Utc>>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut seen = HashMap::new();
    let mut events = watcher(api.clone(), watcher::Config::default().labels(selector))
        .default_backoff()
        .applied_objects()
        .boxed();
    let deadline = tokio::time::Instant::now() + PHASE_TIMEOUT;
    while seen.len() < count {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(Ok(object))) => {
                if done(&object) {
                    seen.entry(object.name_any())
                        .or_insert_with(chrono::Utc::now);
                }
            }
            Ok(Some(Err(_))) => {}
            Ok(None) | Err(_) => anyhow::bail!(
                "only {} of {count} objects ({selector}) got there within {PHASE_TIMEOUT:?}",
                seen.len()
            ),
        }
    }
    Ok(seen)
}

/// The operator under measurement: `keyward run`, release build, cluster-wide.
struct Operator {
    child: Child,
    pid: u32,
    port: u16,
    ready: tokio::sync::watch::Receiver<bool>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Operator {
    async fn start() -> anyhow::Result<Self> {
        let (mut command, port) = common::operator(
            std::path::Path::new(env!("CARGO_BIN_EXE_keyward")),
            "info",
            Stdio::piped(),
        )?;
        let extra = std::env::var("KEYWARD_BENCH_OPERATOR_ARGS").unwrap_or_default();
        let mut child = command
            .args(["--min-rotation-interval", "1s"])
            .args(extra.split_whitespace())
            .spawn()?;
        let pid = child.id().unwrap_or_default();
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = errors.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("caches synced; ready") {
                    let _ = ready_tx.send(true);
                }
                if (line.contains("\"ERROR\"") || line.contains("\"WARN\""))
                    && let Ok(mut kept) = kept.lock()
                {
                    kept.push(line);
                }
            }
        });
        Ok(Self {
            child,
            pid,
            port,
            ready,
            errors,
        })
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        match tokio::time::timeout(PHASE_TIMEOUT, self.ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(()),
            _ => anyhow::bail!("keyward run was not ready within {PHASE_TIMEOUT:?}"),
        }
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Prints how many warnings and errors the operator logged, and the first 5.
    fn report_errors(&self) {
        let errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        if !errors.is_empty() {
            println!("  the operator logged {} warnings or errors:", errors.len());
            for line in errors.iter().take(5) {
                println!("    {}", line.chars().take(400).collect::<String>());
            }
        }
    }
}
