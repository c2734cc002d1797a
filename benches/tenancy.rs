//! The cost of one Tenant change at scale, on the local plane, with a cluster-wide
//! operator: 300 Tenants in one parent chain (the last owns a namespace with 10 keys) and
//! 1,000 flat Tenants each owning a namespace with 10 keys (10,010 keys in all). Once
//! everything is issued and the operator is quiet, it changes one Tenant at a time and
//! reports the API requests the operator sent for each change
//! (`keyward_kube_requests_total`), beside the number of objects the change affects.
//!
//! `cargo bench --bench tenancy` (or `make bench`), alone on a running plane: the operator
//! is cluster-wide. Knobs: `KEYWARD_BENCH_CHAIN` (300), `KEYWARD_BENCH_FLAT` (1000),
//! `KEYWARD_BENCH_KEYS` (keys per namespace, 10), `KEYWARD_KUBECONFIG`.

mod common;
use common::{create_all, env_or, kubeconfig, operator, settled};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use keyward::api::{ApiKey, CredentialState, Tenant};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("tenancy bench: run it with `cargo bench --bench tenancy`");
        return Ok(());
    }
    let (chain_len, flat_len, per_ns) = (
        env_or("KEYWARD_BENCH_CHAIN", 300).max(1),
        env_or("KEYWARD_BENCH_FLAT", 1000).max(1),
        env_or("KEYWARD_BENCH_KEYS", 10),
    );
    let path = kubeconfig();
    let config = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = Client::try_from(config)?;
    let run = format!("{:05x}", rand::random::<u32>() & 0xf_ffff);
    let chain: Vec<String> = (0..chain_len).map(|i| format!("bc{run}-{i}")).collect();
    let flat: Vec<String> = (0..flat_len).map(|i| format!("bf{run}-{i}")).collect();
    let leaf_ns = format!("bc{run}-leaf");
    let mut namespaces: Vec<String> = flat.clone();
    namespaces.push(leaf_ns.clone());
    println!(
        "tenancy bench: {chain_len} chained + {flat_len} flat tenants, {per_ns} keys per namespace, {} keys",
        namespaces.len() * per_ns
    );

    let ns_api: Api<Namespace> = Api::all(client.clone());
    stream::iter(namespaces.clone())
        .for_each_concurrent(32, |name| {
            let api = ns_api.clone();
            async move {
                let ns = Namespace {
                    metadata: ObjectMeta {
                        name: Some(name),
                        ..ObjectMeta::default()
                    },
                    ..Namespace::default()
                };
                let _ = api.create(&PostParams::default(), &ns).await;
            }
        })
        .await;
    let owners = json!([{"name": "bench", "kind": "User"}]);
    let tenant = |name: &str, spec: Value| json!({"apiVersion": "keyward.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name}, "spec": spec});
    let mut tenants: Vec<Value> = Vec::new();
    for (i, name) in chain.iter().enumerate() {
        let mut spec = json!({"owners": owners});
        if let Some(parent) = i.checked_sub(1).and_then(|p| chain.get(p)) {
            spec["parent"] = json!(parent);
        }
        if i + 1 == chain.len() {
            spec["namespaces"] = json!([leaf_ns]);
        }
        tenants.push(tenant(name, spec));
    }
    for name in &flat {
        tenants.push(tenant(
            name,
            json!({"owners": owners, "namespaces": [name]}),
        ));
    }
    let tenants_api: Api<Tenant> = Api::all(client.clone());
    create_all(&tenants_api, tenants).await;
    let owner_of = |ns: &str| {
        if ns == leaf_ns {
            chain.last().cloned().unwrap_or_default()
        } else {
            ns.to_owned()
        }
    };
    let started = Instant::now();
    for ns in &namespaces {
        let keys: Api<ApiKey> = Api::namespaced(client.clone(), ns);
        let objects = (0..per_ns)
            .map(|i| json!({"apiVersion": "keyward.io/v1alpha1", "kind": "ApiKey", "metadata": {"name": format!("k{i}")}, "spec": {"tenant": owner_of(ns), "owner": "bench"}}))
            .collect();
        create_all(&keys, objects).await;
    }
    println!(
        "created tenants and keys in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let (mut command, port) = operator(
        std::path::Path::new(env!("CARGO_BIN_EXE_keyward")),
        "warn",
        Stdio::null(),
    )?;
    let mut child = command.spawn()?;
    let started = Instant::now();
    let all_keys: Api<ApiKey> = Api::all(client.clone());
    let total = namespaces.len() * per_ns;
    loop {
        let active = all_keys
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|k| {
                k.namespace()
                    .is_some_and(|n| n.starts_with("bc") || n.starts_with("bf"))
                    && k.status.as_ref().and_then(|s| s.state) == Some(CredentialState::Active)
            })
            .count();
        if active >= total || started.elapsed() > Duration::from_secs(600) {
            println!(
                "{active} of {total} keys Active after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let patch = |spec: Value| json!({"spec": spec});
    let params = PatchParams::default();
    let mut rows = Vec::new();
    for (what, name, spec, affected) in [
        (
            "a flat tenant's displayName",
            flat[flat.len() / 2].clone(),
            json!({"displayName": "renamed"}),
            format!("1 tenant, {per_ns} keys, nothing changes"),
        ),
        (
            "a flat tenant suspended",
            flat[flat.len() / 2].clone(),
            json!({"state": "Suspended"}),
            format!("1 tenant, {per_ns} keys revoked"),
        ),
        (
            "the chain's root displayName",
            chain[0].clone(),
            json!({"displayName": "holding"}),
            format!("{chain_len} tenants, {per_ns} keys, nothing changes"),
        ),
        (
            "the chain's root suspended",
            chain[0].clone(),
            json!({"state": "Suspended"}),
            format!("{chain_len} tenants' state, {per_ns} keys revoked"),
        ),
    ] {
        let before = settled(port).await;
        tenants_api
            .patch(&name, &params, &Patch::Merge(&patch(spec)))
            .await?;
        let after = settled(port).await;
        rows.push((what, affected, after - before));
    }
    let _ = child.kill().await;
    println!();
    println!(
        "| change (among {} tenants) | affects | requests |",
        chain_len + flat_len
    );
    println!("| --- | --- | --- |");
    for (what, affected, n) in rows {
        println!("| {what} | {affected} | {n} |");
    }

    for ns in &namespaces {
        let _ = ns_api.delete(ns, &DeleteParams::background()).await;
    }
    stream::iter(chain.iter().chain(flat.iter()).cloned().collect::<Vec<_>>())
        .for_each_concurrent(32, |name| {
            let api = tenants_api.clone();
            async move {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
        })
        .await;
    println!("cleanup: deleting namespaces and tenants (in the background)");
    Ok(())
}
