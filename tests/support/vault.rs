//! The local Vault server (`hack/vault.sh up`): its address and root token, a root client
//! for looking at what the operator stored, and the operator flags that use it.

use std::collections::HashMap;
use std::process::Command;

use vaultrs::api::kv2::responses::ReadSecretMetadataResponse;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use super::repo;

/// `VAULT_ADDR` and the root token of the local server, from `hack/vault.sh env`.
pub fn env() -> (String, String) {
    let out = Command::new(repo().join("hack/vault.sh"))
        .arg("env")
        .output()
        .expect("running hack/vault.sh env");
    assert!(
        out.status.success(),
        "Vault is not up (run `hack/vault.sh up`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .map(|v| v.trim_matches('\'').to_owned())
            .unwrap_or_else(|| panic!("{name} missing from hack/vault.sh env"))
    };
    (var("VAULT_ADDR"), var("VAULT_TOKEN"))
}

/// A client with the root token.
pub fn root() -> VaultClient {
    keyward::store::vault::install_crypto_provider();
    let (addr, token) = env();
    VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(addr)
            .token(token)
            .build()
            .unwrap(),
    )
    .unwrap()
}

/// The operator's flags for the local Vault (token auth), and its environment.
pub fn operator_flags() -> (Vec<String>, Vec<(String, String)>) {
    let (addr, token) = env();
    (
        vec!["--vault-addr".to_owned(), addr],
        vec![("VAULT_TOKEN".to_owned(), token)],
    )
}

/// The metadata of `path` under `secret/`, None when there is none.
pub async fn metadata(path: &str) -> Option<ReadSecretMetadataResponse> {
    match vaultrs::kv2::read_metadata(&root(), "secret", path).await {
        Ok(m) => Some(m),
        Err(ClientError::APIError { code: 404, .. }) => None,
        Err(err) => panic!("reading Vault metadata of {path}: {err}"),
    }
}

/// The data of one version of `path` under `secret/` (the latest when None).
pub async fn data(path: &str, version: Option<u64>) -> Option<HashMap<String, String>> {
    let client = root();
    let read = match version {
        Some(v) => vaultrs::kv2::read_version(&client, "secret", path, v).await,
        None => vaultrs::kv2::read(&client, "secret", path).await,
    };
    match read {
        Ok(d) => Some(d),
        Err(ClientError::APIError { code: 404, .. }) => None,
        Err(err) => panic!("reading Vault data of {path}: {err}"),
    }
}

/// The versions of `path` that are not destroyed, in order.
pub fn live_versions(m: &ReadSecretMetadataResponse) -> Vec<u64> {
    let mut live: Vec<u64> = m
        .versions
        .iter()
        .filter(|(_, v)| !v.destroyed)
        .filter_map(|(k, _)| k.parse().ok())
        .collect();
    live.sort_unstable();
    live
}

/// Runs `hack/vault.sh <command>` (kill, start) and asserts it worked.
pub fn control(command: &str) {
    let out = Command::new(repo().join("hack/vault.sh"))
        .arg(command)
        .output()
        .expect("running hack/vault.sh");
    assert!(
        out.status.success(),
        "hack/vault.sh {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes every ApiKey of `namespace` and waits until they are gone: run while the
/// operator still runs, since a key kept in Vault holds the finalizer `keyward.io/vault`
/// until its values are destroyed (and would hold its namespace in Terminating).
pub async fn delete_keys(client: &kube::Client, namespace: &str) {
    use kube::api::{Api, DeleteParams, ListParams};
    let keys: Api<keyward::api::ApiKey> = Api::namespaced(client.clone(), namespace);
    let _ = keys
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while keys
        .list(&ListParams::default())
        .await
        .is_ok_and(|l| !l.items.is_empty())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `keyward_vault_requests_total` by operation (answered and failed together), from the
/// operator's `/metrics`.
pub async fn requests(op: &super::operator::Operator) -> std::collections::BTreeMap<String, f64> {
    let text = op.metrics().await;
    text.lines()
        .filter(|l| l.starts_with("keyward_vault_requests_total{"))
        .filter_map(|l| {
            let operation = l
                .split("operation=\"")
                .nth(1)?
                .split('"')
                .next()?
                .to_owned();
            let value: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((operation, value))
        })
        .fold(std::collections::BTreeMap::new(), |mut acc, (o, v)| {
            *acc.entry(o).or_default() += v;
            acc
        })
}
