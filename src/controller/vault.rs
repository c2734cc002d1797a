//! The ApiKey controller's side of the Vault store: where a key's values live, the
//! finalizer that destroys them when the key is deleted, and what a pass reads of Vault.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::Context;
use crate::api::ApiKey;
use crate::error::{Error, Result};
use crate::policy::vault::{DEFAULT_MOUNT, mount_problem, resolve};
use crate::store::kubernetes::FIELD_MANAGER;
use crate::store::vault::{Found, Vault, VaultError};

/// The finalizer that holds a deleted ApiKey until its values are destroyed in Vault.
pub const FINALIZER: &str = "keyward.io/vault";

/// Where one ApiKey's values live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub mount: String,
    pub path: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.mount, self.path)
    }
}

/// The target of `key` in `tenant`'s prefix, or why it is refused (`InvalidVaultPath`).
/// `None` when the key keeps no value in Vault.
pub fn target(
    key: &ApiKey,
    prefix: &str,
    tenant: &str,
    namespace: &str,
) -> Option<std::result::Result<Target, String>> {
    let vault = key.spec.vault.as_ref()?;
    let mount = vault
        .mount
        .as_deref()
        .unwrap_or(DEFAULT_MOUNT)
        .trim_matches('/');
    if let Some(problem) = mount_problem(mount) {
        return Some(Err(problem));
    }
    Some(
        resolve(prefix, tenant, namespace, &vault.path).map(|path| Target {
            mount: mount.to_owned(),
            path,
        }),
    )
}

pub fn has_finalizer(key: &ApiKey) -> bool {
    key.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer (a JSON patch that fails if the list changed since it was read).
pub async fn add_finalizer(ctx: &Context, key: &ApiKey) -> Result<()> {
    let api: Api<ApiKey> =
        Api::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default());
    let patch = match key.meta().finalizers.as_ref() {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        Some(list) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": list},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    };
    patch_finalizers(&api, key, patch).await
}

/// Removes the finalizer, and only it.
async fn remove_finalizer(ctx: &Context, key: &ApiKey) -> Result<()> {
    let api: Api<ApiKey> =
        Api::namespaced(ctx.client.clone(), &key.namespace().unwrap_or_default());
    let list = key.finalizers();
    let Some(index) = list.iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let patch = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]);
    patch_finalizers(&api, key, patch).await
}

async fn patch_finalizers(api: &Api<ApiKey>, key: &ApiKey, patch: serde_json::Value) -> Result<()> {
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(Error::Serialize)?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(&key.name_any(), &params, &Patch::<()>::Json(patch))
        .await?;
    Ok(())
}

/// A deleted ApiKey: its values are destroyed in Vault (if they are its own), then the
/// finalizer goes. While Vault cannot be reached the finalizer stays and the pass is
/// retried with backoff; `docs/vault.md` says how to let a key go when Vault is gone for
/// good.
pub async fn finalize(ctx: &Context, key: &ApiKey, data_key: &str) -> Result<()> {
    if !has_finalizer(key) {
        return Ok(());
    }
    let Some(vault) = ctx.vault.as_ref() else {
        ctx.event(
            key,
            EventType::Warning,
            "VaultUnavailable",
            "Finalize",
            format!(
                "keyward runs without --vault-addr, so the values of this key cannot be destroyed in Vault; the {FINALIZER} finalizer stays until Vault is configured or it is removed by hand"
            ),
        )
        .await;
        return Err(Error::Vault(VaultError::Config(
            "no Vault store configured".to_owned(),
        )));
    };
    let namespace = key.namespace().unwrap_or_default();
    let tenant = key
        .status
        .as_ref()
        .and_then(|s| s.tenant.clone())
        .or_else(|| key.spec.tenant.clone());
    let uid = key.uid().unwrap_or_default();
    if let Some(tenant) = tenant
        && let Some(Ok(target)) = target(key, &vault.config().prefix, &tenant, &namespace)
    {
        destroy_if_ours(vault, &target, &uid, data_key).await?;
        tracing::info!(namespace, name = key.name_any(), vault_path = %target, "Vault values destroyed for a deleted ApiKey");
    }
    remove_finalizer(ctx, key).await
}

/// Destroys every version and the metadata at `target` if this credential wrote them.
pub async fn destroy_if_ours(
    vault: &Vault,
    target: &Target,
    uid: &str,
    data_key: &str,
) -> std::result::Result<bool, VaultError> {
    match vault
        .read(&target.mount, &target.path, uid, data_key)
        .await?
    {
        Found::Stored { .. } | Found::Unwritten { .. } => {
            vault.destroy_all(&target.mount, &target.path).await?;
            Ok(true)
        }
        Found::Absent { .. } | Found::Foreign => Ok(false),
    }
}
