//! The ApiKey controller's side of the Vault store: where a key's values live, the
//! finalizer that destroys them when the key is deleted, and what a pass reads of Vault.

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use chrono::{DateTime, Utc};

use super::context::Context;
use crate::api::ApiKey;
use crate::error::{Error, Result};
use crate::policy::api_key::{KeyAction, KeyPlan, SecretState};
use crate::policy::vault::{DEFAULT_MOUNT, mount_problem, resolve};
use crate::store::kubernetes::FIELD_MANAGER;
use crate::store::kubernetes::Observed;
use crate::store::value::Value;
use crate::store::vault::{Found, Record, Vault, VaultError};

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
pub async fn remove_finalizer(ctx: &Context, key: &ApiKey) -> Result<()> {
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
    let uid = key.uid().unwrap_or_default();
    vault.forget(&uid);
    let tenant = key
        .status
        .as_ref()
        .and_then(|s| s.tenant.clone())
        .or_else(|| key.spec.tenant.clone());
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

/// The credential a Vault record names.
pub struct Holder<'a> {
    pub credential: String,
    pub uid: &'a str,
    pub tenant: &'a str,
    pub owner: &'a str,
}

/// Makes Vault match the plan, before the Secret, and returns what the path holds then: a new value is a new KV version (its
/// record first), the end of an overlap destroys the older versions, and a withdrawal
/// destroys every version and the metadata. A path this credential did not write is never
/// touched.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    vault: &Vault,
    target: &Target,
    holder: &Holder<'_>,
    plan: &KeyPlan,
    found: &Found,
    current: Option<&Value>,
    data_key: &str,
    now: DateTime<Utc>,
) -> Result<Found, VaultError> {
    let (mount, path) = (target.mount.as_str(), target.path.as_str());
    match (&plan.action, found) {
        (KeyAction::Withdraw, Found::Stored { .. } | Found::Unwritten { .. }) => {
            vault.destroy_all(mount, path).await?;
            Ok(Found::Absent { current_kv: 0 })
        }
        (
            KeyAction::Issue { .. } | KeyAction::Rotate { .. },
            Found::Stored { .. } | Found::Unwritten { .. } | Found::Absent { .. },
        ) => {
            let (Some(served), Some(current)) = (plan.served.as_ref(), current) else {
                return Ok(found.clone());
            };
            let current_kv = match found {
                Found::Stored { record, .. } => record.kv_version,
                Found::Unwritten { current_kv, .. } | Found::Absent { current_kv } => *current_kv,
                Found::Foreign => return Ok(Found::Foreign),
            };
            let mut served = served.clone();
            served.fingerprint = current.fingerprint().to_string();
            let record = Record {
                credential: holder.credential.clone(),
                credential_uid: holder.uid.to_owned(),
                tenant: holder.tenant.to_owned(),
                owner: holder.owner.to_owned(),
                served,
                kv_version: current_kv.saturating_add(1),
                // Older versions are destroyed once no overlap serves them.
                previous_kv_version: (current_kv > 0).then_some(current_kv),
            };
            vault.write(mount, path, &record, data_key, current).await?;
            Ok(Found::Stored {
                record: clean_older(vault, target, record, now).await?,
                value: current.clone(),
            })
        }
        (_, Found::Stored { record, value }) => {
            let mut record = record.clone();
            if record.owner != holder.owner || record.tenant != holder.tenant {
                record.owner = holder.owner.to_owned();
                record.tenant = holder.tenant.to_owned();
                vault.write_record(mount, path, &record).await?;
            }
            Ok(Found::Stored {
                record: clean_older(vault, target, record, now).await?,
                value: value.clone(),
            })
        }
        // Someone else's path, or nothing to do.
        _ => Ok(found.clone()),
    }
}

/// Destroys the versions older than the record's once its overlap is over, and records
/// that they are gone (so a pass that died in between does it again).
async fn clean_older(
    vault: &Vault,
    target: &Target,
    mut record: Record,
    now: DateTime<Utc>,
) -> Result<Record, VaultError> {
    let overlap_open = record.served.previous_valid_until.is_some_and(|u| u > now);
    if record.previous_kv_version.is_none() || overlap_open {
        return Ok(record);
    }
    let destroyed = vault
        .destroy_older(&target.mount, &target.path, record.kv_version)
        .await?;
    record.previous_kv_version = None;
    record.served.previous_valid_until = None;
    vault
        .write_record(&target.mount, &target.path, &record)
        .await?;
    tracing::info!(vault_path = %target, kv_version = record.kv_version, destroyed = ?destroyed, "older Vault versions destroyed");
    Ok(record)
}

/// The previous value to serve beside the current one in the Secret during an overlap.
pub async fn previous_value(
    vault: Option<(&Vault, &Target)>,
    found: Option<&Found>,
    observed: &Observed,
    data_key: &str,
) -> Option<Value> {
    let (Some((vault, target)), Some(Found::Stored { record, .. })) = (vault, found) else {
        return observed.previous.clone();
    };
    match &observed.state {
        SecretState::Ours(s) if s.version == record.served.version => observed.previous.clone(),
        // The Secret lags one rotation behind Vault (a pass died between the two).
        SecretState::Ours(s) if s.version.saturating_add(1) == record.served.version => {
            observed.current.clone()
        }
        _ => match record.previous_kv_version {
            Some(kv) => vault
                .read_version(&target.mount, &target.path, kv, data_key)
                .await
                .ok()
                .flatten(),
            None => None,
        },
    }
}
