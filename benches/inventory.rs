//! Inventory at scale on the local plane: creates 100,000 small Secrets in 100 namespaces
//! owned by one Tenant, starts `keyward run`, and reports how long the inventory takes to
//! sync and how much memory the operator holds then (targets: ≤ 30 s, ≤ 96 MiB RSS).
//!
//! `cargo bench --bench inventory` (or `make bench`), alone on a running plane
//! (`make cluster-up`): it runs a cluster-wide operator, which would also manage the
//! objects of integration tests running at the same time. With `KEYWARD_BENCH_NAMESPACED=1`
//! every Secret goes into one namespace and the operator runs with `--namespace` it, which
//! leaves other tests' objects alone. Knobs: `KEYWARD_BENCH_SECRETS`
//! (default 100000), `KEYWARD_BENCH_NAMESPACES` (100), `KEYWARD_BENCH_CONCURRENCY` (48),
//! `KEYWARD_BENCH_BIN` (the operator binary; default the one cargo built),
//! `KEYWARD_KUBECONFIG` (default `.cluster/kubeconfig`).

mod common;
use common::{env_or, kubeconfig, memory, operator};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use keyward::api::Tenant;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

const SYNC_TARGET: Duration = Duration::from_secs(30);
const RSS_TARGET_KIB: u64 = 96 * 1024;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench targets without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("inventory bench: run it with `cargo bench --bench inventory`");
        return Ok(());
    }
    let total = env_or("KEYWARD_BENCH_SECRETS", 100_000);
    let namespaced = std::env::var("KEYWARD_BENCH_NAMESPACED").is_ok_and(|v| v == "1");
    let namespaces = if namespaced {
        1
    } else {
        env_or("KEYWARD_BENCH_NAMESPACES", 100).max(1)
    };
    let concurrency = env_or("KEYWARD_BENCH_CONCURRENCY", 48).max(1);
    let path = kubeconfig();
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e} (run `make cluster-up`)", path.display()))?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = Client::try_from(config)?;

    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let names: Vec<String> = (0..namespaces)
        .map(|i| format!("bench-{run_id}-{i:03}"))
        .collect();
    let tenant = format!("bench-{run_id}");
    println!("inventory bench: {total} Secrets in {namespaces} namespaces (tenant {tenant})");

    let result = measure(&client, &names, &tenant, total, concurrency, namespaced).await;

    // Cleanup whatever happened: the namespace controller deletes the Secrets.
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for ns in &names {
        let _ = ns_api.delete(ns, &DeleteParams::background()).await;
    }
    let _ = Api::<Tenant>::all(client.clone())
        .delete(&tenant, &DeleteParams::default())
        .await;
    println!(
        "cleanup: deleting {} namespaces and the tenant (in the background)",
        names.len()
    );
    result
}

async fn measure(
    client: &Client,
    names: &[String],
    tenant: &str,
    total: usize,
    concurrency: usize,
    namespaced: bool,
) -> anyhow::Result<()> {
    let ns_api: Api<Namespace> = Api::all(client.clone());
    for ns in names {
        let object = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.clone()),
                labels: Some([("keyward.io/bench".to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        ns_api.create(&PostParams::default(), &object).await?;
    }
    let tenant_object: Tenant = serde_json::from_value(json!({
        "apiVersion": "keyward.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": tenant},
        "spec": {"namespaces": names, "owners": [{"name": "bench", "kind": "User"}]},
    }))?;
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant_object)
        .await?;

    // One managed key, issued once the operator starts, gives the value-copy scan a
    // fingerprint to look for, so the first scan reads every Secret.
    let key: keyward::api::ApiKey = serde_json::from_value(json!({
        "apiVersion": "keyward.io/v1alpha1", "kind": "ApiKey",
        "metadata": {"name": "bench-key"},
        "spec": {"tenant": tenant, "owner": "bench"},
    }))?;
    Api::<keyward::api::ApiKey>::namespaced(client.clone(), &names[0])
        .create(&PostParams::default(), &key)
        .await?;

    let created = Instant::now();
    let per_ns = total.div_ceil(names.len());
    let jobs = (0..total).map(|i| {
        let api: Api<Secret> = Api::namespaced(client.clone(), &names[i / per_ns]);
        async move {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(format!("s-{i:06}")),
                    // Half of them have an owner, so the findings cover both cases.
                    annotations: i
                        .is_multiple_of(2)
                        .then(|| [("keyward.io/owner".to_owned(), "bench".to_owned())].into()),
                    ..ObjectMeta::default()
                },
                data: Some(
                    [(
                        "value".to_owned(),
                        ByteString(format!("v{i:016}").into_bytes()),
                    )]
                    .into(),
                ),
                ..Secret::default()
            };
            // A create that fails (a timeout under load) is retried a few times.
            for attempt in 0..5 {
                match api.create(&PostParams::default(), &secret).await {
                    Ok(_) => return Ok(()),
                    Err(kube::Error::Api(s)) if s.is_already_exists() => return Ok(()),
                    Err(err) if attempt == 4 => return Err(err),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            Ok(())
        }
    });
    let mut done = 0usize;
    let mut results = stream::iter(jobs).buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        result?;
        done += 1;
        if done.is_multiple_of(10_000) {
            println!(
                "  created {done} Secrets ({:.0}/s)",
                done as f64 / created.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "created {total} Secrets in {:.1}s",
        created.elapsed().as_secs_f64()
    );

    let bin = std::env::var_os("KEYWARD_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_keyward")));
    let started = Instant::now();
    let (mut command, _) = operator(&bin, "info", Stdio::piped())?;
    if namespaced {
        command.args(["--namespace", &names[0]]);
    }
    let mut child = command.spawn()?;
    let pid = child.id().unwrap_or_default();
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
    let mut lines = BufReader::new(stderr).lines();

    let mut synced: Option<(Duration, u64, u64)> = None;
    let mut scanned: Option<Duration> = None;
    let deadline = started + Duration::from_secs(300);
    while scanned.is_none() {
        let line = match tokio::time::timeout_at(deadline.into(), lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(_) => anyhow::bail!("keyward run exited before the inventory synced"),
            Err(_) => break,
        };
        if synced.is_none() && line.contains(keyward::inventory::SYNCED_MESSAGE) {
            let (rss, hwm) = memory(pid);
            synced = Some((started.elapsed(), rss, hwm));
            println!(
                "inventory synced after {:.1}s: {line}",
                started.elapsed().as_secs_f64()
            );
        } else if line.contains("value-copy scan finished") {
            scanned = Some(started.elapsed());
            println!(
                "first value-copy scan done after {:.1}s: {line}",
                started.elapsed().as_secs_f64()
            );
        } else if line.contains("\"ERROR\"") {
            println!("  operator: {line}");
        }
    }
    let (rss_after_scan, hwm_after_scan) = memory(pid);
    let _ = child.kill().await;

    let Some((sync_time, rss, hwm)) = synced else {
        anyhow::bail!(
            "no `{}` log line within 300 s: does `keyward run` start keyward::inventory::run?",
            keyward::inventory::SYNCED_MESSAGE
        );
    };
    println!();
    println!("| what | figure | target |");
    println!("| --- | --- | --- |");
    println!(
        "| start to inventory synced ({total} Secrets) | {:.1} s | ≤ {} s |",
        sync_time.as_secs_f64(),
        SYNC_TARGET.as_secs()
    );
    println!(
        "| RSS at sync (peak so far) | {:.1} MiB ({:.1} MiB) | ≤ 96 MiB |",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    match scanned {
        Some(t) => println!(
            "| first value-copy scan finished | {:.1} s after start | |",
            t.as_secs_f64()
        ),
        None => println!("| first value-copy scan finished | not within 300 s | |"),
    }
    println!(
        "| RSS after the scan (peak) | {:.1} MiB ({:.1} MiB) | |",
        rss_after_scan as f64 / 1024.0,
        hwm_after_scan as f64 / 1024.0
    );
    if sync_time > SYNC_TARGET || rss > RSS_TARGET_KIB {
        println!("target missed");
    }
    Ok(())
}
