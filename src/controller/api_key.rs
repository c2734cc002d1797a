//! ApiKey: gather (tenancy, integration, Secret) → decide (policy) → apply the Secret
//! write in a crash-safe order → report (status, Events, audit, metrics) → requeue when
//! the next thing is due.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, RESTART_FIELD_MANAGER};
use super::credential::{self, Deed, Facts, state_changed, ts};
use super::owned::Owned;
use super::status::now;
use crate::api::{ApiKey, ApiKeyStatus, ConsumerKind, CredentialState, Timestamp, labels};
use crate::audit::AuditAction;
use crate::error::{Error, Result};
use crate::metrics::RotationResult;
use crate::policy::api_key::Served;
use crate::policy::api_key::{
    KeyAction, KeyPlan, RotationInput, SecretState, plan, vault_unavailable,
};
use crate::policy::credential::{
    CredentialSpec, Delivery, Lifecycle, PriorRecord, ServedRecord, Verdict, delivery, reason,
};
use crate::policy::vault::DEFAULT_PREFIX;
use crate::policy::{format_duration, format_time};
use crate::store::kubernetes::{self as secrets, Desired, Observed};
use crate::store::value::{Value, generate};
use crate::store::vault::Found;

pub const KIND: &str = "ApiKey";
const DEFAULT_KEY: &str = "api-key";

/// The name of the Secret that serves `key`.
pub fn secret_name(key: &ApiKey) -> String {
    key.spec
        .secret
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| key.name_any())
}

fn data_key(key: &ApiKey) -> String {
    key.spec
        .secret
        .as_ref()
        .and_then(|s| s.key.clone())
        .unwrap_or_else(|| DEFAULT_KEY.to_owned())
}

/// The spec fields decisions depend on, parsed once. A field that admission let through
/// and that cannot be used is named in the returned problem.
fn parse_spec(key: &ApiKey) -> (CredentialSpec, Duration, Option<String>) {
    let mut problem = None;
    let rotation = key.spec.rotation.as_ref();
    let every = rotation.and_then(|r| match r.every.parse() {
        Ok(every) => Some(every),
        Err(e) => {
            problem = Some(format!("spec.rotation.every: {e}"));
            None
        }
    });
    let overlap = match rotation.and_then(|r| r.overlap.as_ref()).map(|o| o.parse()) {
        Some(Ok(overlap)) => overlap,
        Some(Err(e)) => {
            problem.get_or_insert(format!("spec.rotation.overlap: {e}"));
            Duration::zero()
        }
        None => Duration::zero(),
    };
    if let Some(every) = every
        && overlap >= every
    {
        problem.get_or_insert(format!(
            "spec.rotation.overlap ({}) must be shorter than spec.rotation.every ({})",
            format_duration(overlap),
            format_duration(every)
        ));
    }
    (
        CredentialSpec {
            integration: key.spec.integration.clone(),
            tenant: key.spec.tenant.clone(),
            owner: key.spec.owner.clone(),
            expires_at: key.spec.expires_at.map(|t| t.0),
            rotation_every: every,
        },
        overlap,
        problem,
    )
}

/// What the urgency of a pass of this key is decided from: its status and its lifecycle
/// now (no request). The credential gate admits the most urgent first.
pub fn due(key: &ApiKey, ctx: &Context) -> super::gate::Due {
    let now = now();
    let prior = key.status.clone().unwrap_or_default();
    // Active, and the effective rotation interval (the tenant's policy included).
    let (active, every, ends_at) = key
        .namespace()
        .map(|namespace| {
            let (spec, _, problem) = parse_spec(key);
            let lifecycle = credential::lifecycle(ctx, &ctx.tenancy(), key, &namespace, &spec, now);
            let active = lifecycle.is_active() && problem.is_none();
            (
                active,
                lifecycle.rotation_every,
                lifecycle.next_due.filter(|_| active),
            )
        })
        .unwrap_or((false, None, None));
    let rotated = prior.last_rotated_at.or(prior.issued_at).map(|t| t.0);
    let renew_at = [
        prior.next_rotation_at.map(|t| t.0),
        rotated
            .zip(every)
            .and_then(|(at, every)| at.checked_add_signed(every)),
    ]
    .into_iter()
    .flatten()
    .min();
    let request = key.annotations().get(labels::ROTATE).map(String::as_str);
    super::gate::Due {
        deleting: key.metadata.deletion_timestamp.is_some(),
        served: prior.state == Some(CredentialState::Active),
        active,
        ends_at,
        renew_at,
        overlap_ends: prior.previous_valid_until.map(|t| t.0),
        requested: request.is_some() && request != prior.last_rotation_request.as_deref(),
    }
}

pub async fn reconcile(key: Arc<ApiKey>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer("apikey");
    let Some(key) = credential::current(&ctx, &ctx.keys, key).await? else {
        return Ok(Action::await_change());
    };
    let namespace = key.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let uid = key.uid().ok_or(Error::MissingMetadata("uid"))?;
    let data_key = data_key(&key);
    if key.metadata.deletion_timestamp.is_some() {
        // The Secret goes with its owner (garbage collection); Vault's versions go here.
        super::vault::finalize(&ctx, &key, &data_key).await?;
        return Ok(Action::await_change());
    }
    let now = now();

    // Gather.
    let (spec, overlap, problem) = parse_spec(&key);
    let prior = key.status.clone().unwrap_or_default();
    let tenancy = ctx.tenancy();
    let mut lifecycle = credential::lifecycle(&ctx, &tenancy, key.as_ref(), &namespace, &spec, now);
    if let Some(problem) = problem {
        // Nothing is issued, and nothing is retried until the spec changes.
        credential::invalid_spec(&mut lifecycle, problem);
    }
    let secret_enabled = key.spec.secret.as_ref().and_then(|s| s.enabled) != Some(false);
    // Where the values live in Vault: under the tenant's prefix, or refused.
    let prefix = ctx
        .vault
        .as_ref()
        .map(|v| v.config().prefix.clone())
        .unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
    let path_tenant = lifecycle
        .tenant
        .clone()
        .or_else(|| prior.tenant.clone())
        .unwrap_or_default();
    let target = match super::vault::target(&key, &prefix, &path_tenant, &namespace) {
        Some(Ok(target)) => Some(target),
        Some(Err(problem)) => {
            if lifecycle.is_active() || lifecycle.state == CredentialState::Pending {
                credential::invalid_spec(&mut lifecycle, problem);
                lifecycle.reason = reason::INVALID_VAULT_PATH.to_owned();
            }
            None
        }
        None => None,
    };
    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret_name = secret_name(&key);
    // What Vault holds: read when a value may be there, or is to be written. The finalizer
    // that destroys it on deletion goes on before the first write.
    // A key whose tenant was never resolved has no prefix, and never wrote to Vault.
    let vault = ctx
        .vault
        .as_deref()
        .zip(target.as_ref())
        .filter(|_| !path_tenant.is_empty());
    // A Secret keyward's watch does not hold is absent, unless a create found its name
    // taken: the pass's first write is then that create, which cannot take over one that
    // exists after all. With Vault in play it is read: Vault's write comes first.
    let existing = if vault.is_some() {
        ctx.secrets
            .get(&secrets_api, &namespace, &secret_name)
            .await?
    } else {
        ctx.secrets
            .get_or_absent(&secrets_api, &namespace, &secret_name)
            .await?
    };
    let observed = secrets::observe(existing.as_ref(), &uid, &data_key);
    let mut found = None;
    let mut vault_error = None;
    if let Some((store, target)) = vault {
        let has_finalizer = super::vault::has_finalizer(&key);
        if lifecycle.is_active() && !has_finalizer {
            super::vault::add_finalizer(&ctx, &key).await?;
        }
        if lifecycle.is_active() || has_finalizer {
            // The pass woken by this process's own status write knows what the pass before
            // it left in Vault.
            found = store.recall(&uid, key.resource_version().as_deref());
            if found.is_none() {
                match store
                    .read(&target.mount, &target.path, &uid, &data_key)
                    .await
                {
                    Ok(f) => found = Some(f),
                    Err(err) => vault_error = Some(err),
                }
            }
        }
    }
    let foreign_secret = secret_enabled && matches!(observed.state, SecretState::Foreign);
    let mut version_floor = None;
    let state = match &found {
        _ if foreign_secret => SecretState::Foreign,
        Some(Found::Stored { record, .. }) => SecretState::Ours(record.served.clone()),
        Some(Found::Unwritten { record, .. }) => {
            // Its value never reached Vault: that version is written again, with a new
            // value nobody has seen.
            version_floor = Some(record.served.version.saturating_sub(1));
            SecretState::Absent
        }
        Some(Found::Absent { .. }) => SecretState::Absent,
        Some(Found::Foreign) => SecretState::Foreign,
        None if vault_error.is_some() && !secret_enabled => served_from_status(&prior),
        None => observed.state.clone(),
    };

    // Decide.
    let rotate_annotation = key.annotations().get(labels::ROTATE).map(String::as_str);
    let rotation = RotationInput {
        overlap,
        rotate_annotation,
        last_rotation_request: prior.last_rotation_request.as_deref(),
        last_version: prior.version.max(version_floor),
    };
    let mut plan = plan(lifecycle, &state, &rotation, now);
    if !secret_enabled && ctx.vault.is_none() {
        plan = vault_unavailable(plan, &observed.state, now);
    }
    if matches!(found, Some(Found::Foreign)) && plan.lifecycle.reason == reason::SECRET_CONFLICT {
        plan.lifecycle.message = format!(
            "the Vault path {} holds a secret this ApiKey did not write; it is left untouched",
            target.as_ref().map(ToString::to_string).unwrap_or_default()
        );
    }
    if let Some(err) = &vault_error
        && matches!(
            plan.action,
            KeyAction::Issue { .. } | KeyAction::Rotate { .. }
        )
    {
        // Vault first: no new value while it cannot be reached; the current one stays, and
        // a rotation request stays unanswered until the value that answers it is written.
        plan.action = KeyAction::None;
        plan.last_rotation_request = prior.last_rotation_request.clone();
        plan.served = match &state {
            SecretState::Ours(served) => Some(served.clone()),
            _ => None,
        };
        if plan.served.is_none() && plan.lifecycle.is_active() {
            plan.lifecycle.state = CredentialState::Pending;
            plan.lifecycle.reason = reason::VAULT_UNAVAILABLE.to_owned();
            plan.lifecycle.message = format!("waiting for Vault to issue the first value: {err}");
        }
    }
    // A foreign Secret of that name: its change or deletion wakes this key.
    ctx.conflicts.set(
        (KIND, Some(namespace.clone()), key.name_any()),
        foreign_secret.then(|| ("Secret", namespace.clone(), secret_name.clone())),
    );

    // Apply: a renamed Secret goes first (it must not keep serving), then Vault, then the
    // Secret (one write holds the value and the record of it), the consumers, the
    // announcement, and last the status, so that each step a crash interrupts is finished
    // by the next pass.
    let source_current = match &found {
        Some(Found::Stored { value, .. }) => Some(value.clone()),
        Some(_) => None,
        None => observed.current.clone(),
    };
    // What Vault holds once this pass is done (for the pass its status write wakes).
    let mut vault_after = None;
    let applied = async {
        if prior.observed_generation != key.metadata.generation {
            ctx.secrets
                .remove_strays(&secrets_api, &namespace, &uid, &secret_name)
                .await?;
        }
        let (current, previous) = match &plan.action {
            KeyAction::Issue { .. } => (Some(generate(key.spec.generator.as_ref())?), None),
            KeyAction::Rotate {
                previous_valid_until,
                ..
            } => (
                Some(generate(key.spec.generator.as_ref())?),
                previous_valid_until.and(source_current.clone()),
            ),
            KeyAction::Withdraw => (None, None),
            _ => {
                let overlap_open = plan
                    .served
                    .as_ref()
                    .is_some_and(|s| s.previous_valid_until.is_some());
                let previous = if overlap_open && secret_enabled {
                    super::vault::previous_value(vault, found.as_ref(), &observed, &data_key).await
                } else {
                    None
                };
                (source_current.clone(), previous)
            }
        };
        if let (Some((store, target)), Some(found)) = (vault, found.as_ref()) {
            let tenant = plan.lifecycle.tenant.clone().unwrap_or_default();
            let owner = plan.lifecycle.owner.clone().unwrap_or_default();
            let this = super::vault::Holder {
                credential: format!("{namespace}/{}", key.name_any()),
                uid: &uid,
                tenant: &tenant,
                owner: &owner,
            };
            vault_after = Some(
                super::vault::apply(
                    store,
                    target,
                    &this,
                    &plan,
                    found,
                    current.as_ref(),
                    &data_key,
                    now,
                )
                .await
                .map_err(Error::Vault)?,
            );
        }
        if secret_enabled {
            apply_secret(
                &key,
                &ctx.secrets,
                &secrets_api,
                &secret_name,
                &data_key,
                &uid,
                existing.as_ref(),
                &observed,
                &mut plan,
                current.as_ref(),
                previous.as_ref(),
            )
            .await
        } else {
            // Vault only: a Secret served before (spec.secret.enabled was true) goes.
            if let Some(existing) = existing
                .as_ref()
                .filter(|e| secrets::is_controlled_by(&e.metadata, &uid))
            {
                ctx.secrets.delete(&secrets_api, &existing.metadata).await?;
            }
            Ok(match (plan.served.as_mut(), current.as_ref()) {
                (Some(served), Some(current)) if plan.action != KeyAction::Withdraw => {
                    served.fingerprint = current.fingerprint().to_string();
                    Some(served.fingerprint.clone())
                }
                _ => None,
            })
        }
    }
    .await;
    // Whether this pass wrote what it announces (a new value, or the withdrawal).
    let wrote = matches!(
        plan.action,
        KeyAction::Issue { .. } | KeyAction::Rotate { .. } | KeyAction::Withdraw
    );
    let fingerprint = match applied {
        Ok(fingerprint) => fingerprint,
        Err(err) => {
            let rotating = matches!(plan.action, KeyAction::Rotate { .. });
            let synced = match &err {
                Error::Vault(e) => Verdict::new(
                    false,
                    reason::VAULT_UNAVAILABLE,
                    format!(
                        "writing Vault {}: {e}; the current value stays served",
                        target.as_ref().map(ToString::to_string).unwrap_or_default()
                    ),
                ),
                _ => Verdict::new(
                    false,
                    "SyncFailed",
                    format!("writing Secret {secret_name}: {err}"),
                ),
            };
            credential::report_sync_failure(
                &ctx,
                key.as_ref(),
                &plan.lifecycle,
                rotating,
                synced,
                now,
            )
            .await;
            return Err(err);
        }
    };
    let synced = match (&key.spec.vault, ctx.vault.as_ref(), &target, &vault_error) {
        (Some(_), None, _, _) => Verdict::new(
            false,
            reason::VAULT_UNAVAILABLE,
            if secret_enabled {
                format!(
                    "Secret {secret_name} is up to date; no Vault store is configured, so spec.vault is not written"
                )
            } else {
                "no Vault store is configured (keyward runs without --vault-addr)".to_owned()
            },
        ),
        (Some(_), Some(_), Some(target), Some(err)) => Verdict::new(
            false,
            reason::VAULT_UNAVAILABLE,
            format!(
                "Vault {target}: {err}; the current value stays served and rotation waits for Vault"
            ),
        ),
        (Some(_), Some(_), Some(target), None) => Verdict::new(
            true,
            "Synced",
            if secret_enabled {
                format!("Vault {target} and Secret {secret_name} are up to date")
            } else {
                format!("Vault {target} is up to date (no Secret: spec.secret.enabled is false)")
            },
        ),
        _ => Verdict::new(
            true,
            "Synced",
            format!("Secret {secret_name} is up to date"),
        ),
    };
    // What the pass delivered, against what the last status recorded: a value a crashed
    // or failed pass wrote is announced (and its consumers restarted) by the pass that
    // finds it.
    let served = plan
        .served
        .as_ref()
        .filter(|_| plan.lifecycle.is_active())
        .zip(fingerprint.as_deref());
    let delivered = served.and_then(|(s, fingerprint)| {
        let record = PriorRecord {
            active: prior.state == Some(CredentialState::Active),
            issued_at: prior.issued_at.map(|t| t.0),
            version: prior.version,
            fingerprint: prior.fingerprint.as_deref(),
            last_rotation_request: prior.last_rotation_request.as_deref(),
        };
        delivery(
            &record,
            &ServedRecord {
                version: s.version,
                issued_at: s.issued_at,
                fingerprint,
                rotation_request: s.rotation_request.as_deref(),
            },
        )
    });
    if let (Some(d), Some((s, _))) = (delivered, served)
        && d.version() > 1
    {
        restart_consumers(&ctx, &key, &namespace, s.rotated_at).await?;
    }

    // Report.
    if let (Some(fp), Some(tenant)) = (&fingerprint, plan.lifecycle.tenant.as_deref())
        && !plan.lifecycle.cross_tenant.status
        && let Some(copied) = ctx.copied_elsewhere(&tenancy, tenant, fp)
    {
        plan.lifecycle.cross_tenant = copied;
    }
    let status = build_status(&key, &prior, &plan, fingerprint, synced, now);
    let changed = state_changed(prior.state, &prior.conditions, &plan.lifecycle);
    let facts = Facts {
        version: status.version,
        fingerprint: status.fingerprint.clone(),
        issued_at: status.issued_at,
        last_rotated_at: status.last_rotated_at,
        next_rotation_at: status.next_rotation_at,
        previous_valid_until: status.previous_valid_until,
        expires_at: status.expires_at,
        token_expires_at: None,
    };
    let announced = credential::report(
        &ctx,
        key.as_ref(),
        &plan.lifecycle,
        delivered.map(|d| deed(d, &plan.lifecycle)),
        changed,
        wrote,
        facts,
    )
    .await;
    if announced && matches!(delivered, Some(Delivery::Rotated { .. })) {
        let tenant = plan.lifecycle.tenant.as_deref().unwrap_or_default();
        ctx.metrics.rotation(KIND, tenant, RotationResult::Success);
    }
    // A key that serves nothing and has nothing left in Vault needs no finalizer, and
    // without it its later passes (a Tenant change fanning out, say) send Vault nothing.
    let nothing_left = !plan.lifecycle.is_active()
        && matches!(vault_after, Some(Found::Absent { .. } | Found::Foreign))
        && super::vault::has_finalizer(&key);
    // What Vault holds now, for the next pass that sees the key at the version this pass
    // leaves it at: the one its status write returned, or the one it read when the status
    // stays as it was.
    let left_at = if key.status.as_ref() != Some(&status) {
        credential::write_status(&ctx, key.as_ref(), &namespace, &status).await?;
        credential::written_version(&ctx, &uid)
    } else {
        key.resource_version()
    };
    if let Some(store) = ctx.vault.as_deref() {
        match (vault_after, left_at, nothing_left) {
            (Some(after), Some(version), false) => store.remember(&uid, version, after),
            _ => store.forget(&uid),
        }
    }
    if nothing_left {
        super::vault::remove_finalizer(&ctx, &key).await?;
    }
    if let Some(err) = vault_error {
        // Recorded above (Synced=False); retried with backoff until Vault answers.
        return Err(Error::Vault(err));
    }
    if matches!(found, Some(Found::Foreign)) {
        // Nothing watches a Vault path: look again now and then.
        return Ok(Action::requeue(VAULT_CONFLICT_RETRY));
    }
    Ok(super::requeue_at(plan.next_due))
}

/// How often a key whose Vault path holds someone else's secret looks at it again.
const VAULT_CONFLICT_RETRY: std::time::Duration = std::time::Duration::from_secs(300);

/// What a Vault-only key served, as its last status recorded it: the state planned on
/// while Vault cannot be read, so nothing is issued twice and the status keeps its record.
fn served_from_status(prior: &ApiKeyStatus) -> SecretState {
    match (
        prior.state,
        prior.version,
        prior.fingerprint.as_ref(),
        prior.issued_at,
        prior.last_rotated_at,
    ) {
        (
            Some(CredentialState::Active),
            Some(version),
            Some(fingerprint),
            Some(issued),
            Some(rotated),
        ) => SecretState::Ours(Served {
            version,
            fingerprint: fingerprint.clone(),
            issued_at: issued.0,
            rotated_at: rotated.0,
            previous_valid_until: prior.previous_valid_until.map(|t| t.0),
            rotation_request: prior.last_rotation_request.clone(),
        }),
        _ => SecretState::Absent,
    }
}

/// Makes the Secret match the plan, serving `current` (and `previous` during an overlap).
/// Returns the fingerprint of the value now served.
#[allow(clippy::too_many_arguments)]
async fn apply_secret(
    key: &ApiKey,
    owned: &Owned<Secret>,
    api: &Api<Secret>,
    secret_name: &str,
    data_key: &str,
    uid: &str,
    existing: Option<&Secret>,
    observed: &Observed,
    plan: &mut KeyPlan,
    current: Option<&Value>,
    previous: Option<&Value>,
) -> Result<Option<String>> {
    if plan.action == KeyAction::Withdraw {
        if let Some(existing) = existing.filter(|e| secrets::is_controlled_by(&e.metadata, uid)) {
            owned.delete(api, &existing.metadata).await?;
        }
        return Ok(None);
    }
    if matches!(observed.state, SecretState::Foreign) {
        // Never touched.
        return Ok(None);
    }
    let (Some(served), Some(current)) = (plan.served.as_mut(), current) else {
        return Ok(None);
    };
    served.fingerprint = current.fingerprint().to_string();
    let tenant = plan.lifecycle.tenant.clone().unwrap_or_default();
    let owner = plan.lifecycle.owner.clone().unwrap_or_default();
    let desired = secrets::build(&Desired {
        name: secret_name,
        namespace: &key.namespace().unwrap_or_default(),
        owner_reference: OwnerReference {
            api_version: ApiKey::api_version(&()).into_owned(),
            kind: ApiKey::kind(&()).into_owned(),
            name: key.name_any(),
            uid: uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
        tenant: &tenant,
        credential: &key.name_any(),
        owner: &owner,
        expires_at: plan.lifecycle.expiry.as_ref().map(|d| d.at),
        key: data_key,
        served,
        current,
        previous: served.previous_valid_until.and(previous),
    });
    // `existing` is ours here (a foreign one returned above), or absent: a create.
    if existing.is_none_or(|e| secrets::differs(e, &desired)) {
        owned.write(api, existing, desired).await?;
    }
    Ok(Some(served.fingerprint.clone()))
}

/// Restarts each consumer for the value rotated at `rotated_at`, as `kubectl rollout
/// restart` does: the pod-template annotation `keyward.io/restartedAt`, written under
/// keyward's own field manager, carries that rotation time, and a consumer is patched only
/// while its annotation is older. So a pass repeated after a crash, a restart of the
/// controller or a change of leader never restarts a consumer twice for one value, and a
/// pass that died before restarting it does so. A missing consumer, or one the controller
/// may not patch, is a warning; any other failure fails the pass, which is retried before
/// its status is written.
async fn restart_consumers(
    ctx: &Context,
    key: &ApiKey,
    namespace: &str,
    rotated_at: DateTime<Utc>,
) -> Result<()> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    for consumer in key.spec.consumers.iter().flatten() {
        let client = ctx.client.clone();
        let name = consumer.name.as_str();
        let result = match consumer.kind {
            ConsumerKind::Deployment => {
                restart(
                    Api::<Deployment>::namespaced(client, namespace),
                    name,
                    rotated_at,
                    |d| d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()),
                )
                .await
            }
            ConsumerKind::StatefulSet => {
                restart(
                    Api::<StatefulSet>::namespaced(client, namespace),
                    name,
                    rotated_at,
                    |d| d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()),
                )
                .await
            }
            ConsumerKind::DaemonSet => {
                restart(
                    Api::<DaemonSet>::namespaced(client, namespace),
                    name,
                    rotated_at,
                    |d| d.spec.as_ref().and_then(|s| s.template.metadata.as_ref()),
                )
                .await
            }
        };
        let kind = format!("{:?}", consumer.kind);
        match result {
            Ok(true) => tracing::info!(namespace, consumer = name, kind, "consumer restarted"),
            Ok(false) => {}
            // Missing, or RBAC refuses it (the chart's rbac.restartConsumers=false):
            // retrying cannot help, and the rotation must not wait for a restart it will
            // never get.
            Err(kube::Error::Api(s)) if s.is_not_found() || s.code == 403 => {
                let why = if s.is_not_found() {
                    "not found".to_owned()
                } else {
                    format!("the controller may not patch it ({})", s.reason)
                };
                ctx.event(
                    key,
                    EventType::Warning,
                    "ConsumerNotRestarted",
                    "Restart",
                    format!("consumer {kind}/{name} {why}; not restarted"),
                )
                .await;
            }
            Err(err) => {
                ctx.event(
                    key,
                    EventType::Warning,
                    "ConsumerNotRestarted",
                    "Restart",
                    format!("restarting consumer {kind}/{name}: {err}"),
                )
                .await;
                return Err(err.into());
            }
        }
    }
    Ok(())
}

/// Patches the restart annotation of one workload unless it already carries `rotated_at`
/// or a later time. Returns whether it was patched.
async fn restart<K>(
    api: Api<K>,
    name: &str,
    rotated_at: DateTime<Utc>,
    template: impl Fn(&K) -> Option<&ObjectMeta>,
) -> std::result::Result<bool, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let workload = api.get(name).await?;
    let stamped = template(&workload)
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(labels::RESTARTED_AT))
        .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
        .map(|t| t.with_timezone(&Utc));
    if restart_done(stamped, rotated_at) {
        return Ok(false);
    }
    let patch = json!({
        "spec": {"template": {"metadata": {"annotations": {labels::RESTARTED_AT: format_time(rotated_at)}}}},
    });
    let params = PatchParams {
        field_manager: Some(RESTART_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch)).await?;
    Ok(true)
}

/// Whether a workload whose restart annotation says `stamped` has restarted for the value
/// rotated at `rotated_at`. Times are compared at the second the annotation keeps.
fn restart_done(stamped: Option<DateTime<Utc>>, rotated_at: DateTime<Utc>) -> bool {
    stamped.is_some_and(|t| t.timestamp() >= rotated_at.timestamp())
}

fn build_status(
    key: &ApiKey,
    prior: &ApiKeyStatus,
    plan: &KeyPlan,
    fingerprint: Option<String>,
    synced: Verdict,
    now: DateTime<Utc>,
) -> ApiKeyStatus {
    let l: &Lifecycle = &plan.lifecycle;
    let generation = key.metadata.generation;
    let served = plan.served.as_ref().filter(|_| l.is_active());
    let conditions = credential::conditions(l, &synced, generation, &prior.conditions, now);
    ApiKeyStatus {
        observed_generation: generation,
        state: Some(l.state),
        tenant: l.tenant.clone(),
        owner: l.owner.clone(),
        version: served.map(|s| s.version).or(prior.version),
        fingerprint: served.and(fingerprint),
        issued_at: ts(served.map(|s| s.issued_at)),
        renewed_at: Some(Timestamp(l.renewed_at)),
        last_rotated_at: ts(served.map(|s| s.rotated_at)).or(prior.last_rotated_at),
        next_rotation_at: ts(served.and(plan.next_rotation_at)),
        previous_valid_until: ts(served.and_then(|s| s.previous_valid_until)),
        expires_at: ts(l.expiry.as_ref().map(|d| d.at)),
        last_rotation_request: plan.last_rotation_request.clone(),
        conditions,
    }
}

/// The Event and audit line for a value delivered.
fn deed(delivered: Delivery, l: &Lifecycle) -> Deed {
    let (action, what, note) = match delivered {
        Delivery::Issued { version } => (
            AuditAction::Issued,
            format!("issued-v{version}"),
            format!("version {version} issued, {}", l.message),
        ),
        Delivery::Rotated { version, requested } => (
            AuditAction::Rotated,
            format!("rotated-v{version}"),
            format!(
                "version {version} issued by {} rotation",
                if requested { "requested" } else { "scheduled" }
            ),
        ),
        // An ApiKey's value never changes within a version.
        Delivery::Refreshed { version } => (
            AuditAction::Issued,
            format!("issued-v{version}"),
            format!("version {version} issued, {}", l.message),
        ),
    };
    Deed {
        action,
        note: format!("{}: {note}", reason::ACTIVE),
        event_action: None,
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiKeySpec;

    fn key(rotation: serde_json::Value) -> ApiKey {
        let spec: ApiKeySpec = serde_json::from_value(serde_json::json!({
            "tenant": "acme", "owner": "alice", "rotation": rotation,
        }))
        .unwrap();
        ApiKey::new("k", spec)
    }

    #[test]
    fn a_consumer_restarts_once_per_rotation_time() {
        use chrono::TimeZone;
        let rotated = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        assert!(!restart_done(None, rotated));
        assert!(!restart_done(Some(rotated - Duration::seconds(1)), rotated));
        assert!(restart_done(Some(rotated), rotated));
        // The annotation keeps seconds: a rotation within the same second is the same.
        assert!(restart_done(
            Some(rotated),
            rotated + Duration::milliseconds(400)
        ));
        assert!(restart_done(Some(rotated + Duration::hours(1)), rotated));
    }

    #[test]
    fn an_unusable_duration_is_a_spec_problem_naming_the_field() {
        let (_, _, problem) =
            parse_spec(&key(serde_json::json!({"every": "99999999999999999999h"})));
        assert!(
            problem
                .as_deref()
                .is_some_and(|p| p.starts_with("spec.rotation.every: ")),
            "{problem:?}"
        );
        let (_, _, problem) = parse_spec(&key(serde_json::json!({"every": "1h", "overlap": "2h"})));
        assert!(
            problem
                .as_deref()
                .is_some_and(|p| p.contains("spec.rotation.overlap")),
            "{problem:?}"
        );
        let (spec, overlap, problem) =
            parse_spec(&key(serde_json::json!({"every": "1h", "overlap": "10m"})));
        assert_eq!(problem, None);
        assert_eq!(spec.rotation_every, Some(Duration::hours(1)));
        assert_eq!(overlap, Duration::minutes(10));
    }
}
