//! ApiKey: gather (tenancy, integration, Secret) → decide (policy) → apply the Secret
//! write in a crash-safe order → report (status, Events, audit, metrics) → requeue when
//! the next thing is due.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, FIELD_MANAGER, RESTART_FIELD_MANAGER};
use super::status::{condition, find, now, prior_owner};
use crate::api::{
    ApiKey, ApiKeyStatus, ConsumerKind, CredentialState, PartnerIntegration, Timestamp, labels,
};
use crate::audit::{self, AuditAction, AuditRecord, ObjectRef as AuditObject};
use crate::error::{Error, Result};
use crate::metrics::{CredentialKey, CredentialSnapshot, RotationResult};
use crate::policy::api_key::{KeyAction, KeyPlan, RotationInput, plan};
use crate::policy::credential::{
    CredentialInput, CredentialSpec, IntegrationFacts, Lifecycle, Verdict, decide, reason,
};
use crate::policy::format_time;
use crate::store::kubernetes::{self as secrets, Desired, Observed};
use crate::store::value::{Value, generate};

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

/// The spec fields decisions depend on, parsed once.
fn parse_spec(key: &ApiKey) -> Result<(CredentialSpec, Duration)> {
    let invalid = |message: String| Error::InvalidSpec {
        kind: KIND,
        name: key.name_any(),
        message,
    };
    let rotation = key.spec.rotation.as_ref();
    let every = rotation
        .map(|r| r.every.parse())
        .transpose()
        .map_err(|e| invalid(format!("rotation.every: {e}")))?;
    let overlap = rotation
        .and_then(|r| r.overlap.as_ref())
        .map(|o| o.parse())
        .transpose()
        .map_err(|e| invalid(format!("rotation.overlap: {e}")))?
        .unwrap_or_else(Duration::zero);
    Ok((
        CredentialSpec {
            integration: key.spec.integration.clone(),
            tenant: key.spec.tenant.clone(),
            owner: key.spec.owner.clone(),
            expires_at: key.spec.expires_at.map(|t| t.0),
            rotation_every: every,
        },
        overlap,
    ))
}

/// A PartnerIntegration as credential decisions see it.
pub fn integration_facts(pi: &PartnerIntegration) -> IntegrationFacts {
    let conditions = pi
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    IntegrationFacts {
        name: pi.name_any(),
        tenant: pi.spec.tenant.clone(),
        owner: pi.spec.owner.clone(),
        expires_at: pi.spec.expires_at.map(|t| t.0),
        suspended: pi.spec.suspended.unwrap_or(false),
        owner_binding: prior_owner(conditions, Some(&pi.spec.owner)).binding,
    }
}

pub async fn reconcile(key: Arc<ApiKey>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer("apikey");
    let namespace = key.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = key.name_any();
    let uid = key.uid().ok_or(Error::MissingMetadata("uid"))?;
    let now = now();

    // Gather.
    let (spec, overlap) = parse_spec(&key)?;
    let tenancy = ctx.tenancy();
    let integration = spec.integration.as_ref().map(|pi| {
        ctx.integrations
            .get(&ObjectRef::new(pi).within(&namespace))
            .map(|pi| integration_facts(&pi))
    });
    let prior = key.status.clone().unwrap_or_default();
    let input = CredentialInput {
        namespace: &namespace,
        generation: key.metadata.generation.unwrap_or_default(),
        spec: &spec,
        integration: integration.as_ref().map(Option::as_ref),
        tenancy: &tenancy,
        observed_generation: prior.observed_generation,
        renewed_at: prior.renewed_at.map(|t| t.0),
        prior_owner: prior_owner(&prior.conditions, prior.owner.as_deref()),
        now,
    };
    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret_name = secret_name(&key);
    let data_key = data_key(&key);
    let existing = secrets_api.get_opt(&secret_name).await?;
    let observed = secrets::observe(existing.as_ref(), &uid, &data_key);

    // Decide.
    let rotate_annotation = key.annotations().get(labels::ROTATE).map(String::as_str);
    let rotation = RotationInput {
        overlap,
        rotate_annotation,
        last_rotation_request: prior.last_rotation_request.as_deref(),
        last_version: prior.version,
    };
    let lifecycle = decide(&input);
    let mut plan = plan(lifecycle, &observed.state, &rotation, now);

    // Apply: the Secret first (one write holds the value and the record of it), then status.
    let fingerprint = apply_secret(
        &ctx,
        &key,
        &secrets_api,
        &secret_name,
        &data_key,
        &uid,
        existing.as_ref(),
        &observed,
        &mut plan,
    )
    .await;
    let synced = match &fingerprint {
        Ok(_) => Verdict::new(
            true,
            "Synced",
            format!("Secret {secret_name} is up to date"),
        ),
        Err(err) => Verdict::new(
            false,
            "SyncFailed",
            format!("writing Secret {secret_name}: {err}"),
        ),
    };
    let fingerprint = match fingerprint {
        Ok(f) => f,
        Err(err) => {
            if matches!(plan.action, KeyAction::Rotate { .. }) {
                ctx.metrics.rotation(
                    KIND,
                    plan.lifecycle.tenant.as_deref().unwrap_or_default(),
                    RotationResult::Failure,
                );
            }
            report_sync_failure(&ctx, &key, &namespace, &prior, synced, now).await;
            return Err(err);
        }
    };
    if matches!(
        plan.action,
        KeyAction::Issue { .. } | KeyAction::Rotate { .. }
    ) && plan.served.as_ref().is_some_and(|s| s.version > 1)
    {
        restart_consumers(
            &ctx,
            &key,
            &namespace,
            plan.served.as_ref().map(|s| s.rotated_at).unwrap_or(now),
        )
        .await;
    }

    // Report.
    let status = build_status(&key, &prior, &plan, fingerprint, synced, now);
    if key.status.as_ref() != Some(&status) {
        let api: Api<ApiKey> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({"apiVersion": ApiKey::api_version(&()), "kind": ApiKey::kind(&()), "status": status});
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    announce(&ctx, &key, &prior, &status, &plan).await;
    ctx.metrics.observe_credential(
        CredentialKey {
            kind: KIND.into(),
            namespace: namespace.clone(),
            name: name.clone(),
        },
        Some(CredentialSnapshot {
            tenant: status.tenant.clone().unwrap_or_default(),
            owner: status.owner.clone().unwrap_or_default(),
            state: state_name(status.state),
            expires_at: status.expires_at.map(|t| t.0),
            next_rotation_at: status.next_rotation_at.map(|t| t.0),
        }),
    );
    Ok(super::requeue_at(plan.next_due))
}

fn state_name(state: Option<CredentialState>) -> String {
    state
        .map(|s| format!("{s:?}"))
        .unwrap_or_else(|| "Pending".into())
}

/// Makes the Secret match the plan. Returns the fingerprint of the value now served.
#[allow(clippy::too_many_arguments)]
async fn apply_secret(
    ctx: &Context,
    key: &ApiKey,
    api: &Api<Secret>,
    secret_name: &str,
    data_key: &str,
    uid: &str,
    existing: Option<&Secret>,
    observed: &Observed,
    plan: &mut KeyPlan,
) -> Result<Option<String>> {
    if plan.action == KeyAction::Withdraw {
        if let Some(existing) = existing {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: existing.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(secret_name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(err) => return Err(err.into()),
            }
        }
        return Ok(None);
    }
    let Some(served) = plan.served.as_mut() else {
        return Ok(None);
    };
    if key.spec.secret.as_ref().and_then(|s| s.enabled) == Some(false) {
        // Vault-only keys are served by the Vault store, not here.
        return Ok(Some(served.fingerprint.clone()));
    }
    let (current, previous): (Value, Option<Value>) = match &plan.action {
        KeyAction::Issue { .. } => (generate(key.spec.generator.as_ref())?, None),
        KeyAction::Rotate {
            previous_valid_until,
            ..
        } => (
            generate(key.spec.generator.as_ref())?,
            previous_valid_until.and(observed.current.clone()),
        ),
        _ => match &observed.current {
            Some(current) => (
                current.clone(),
                served.previous_valid_until.and(observed.previous.clone()),
            ),
            None => return Ok(None),
        },
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
        current: &current,
        previous: previous.as_ref(),
    });
    if existing.is_none_or(|e| secrets::differs(e, &desired)) {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(secret_name, &params, &Patch::Apply(&desired))
            .await?;
        if let KeyAction::Rotate { .. } = plan.action {
            ctx.metrics.rotation(KIND, &tenant, RotationResult::Success);
        }
    }
    Ok(Some(served.fingerprint.clone()))
}

/// Restarts each consumer, as `kubectl rollout restart` does: a pod-template annotation,
/// written under keyward's own field manager. A missing consumer is a warning, not a failure.
async fn restart_consumers(
    ctx: &Context,
    key: &ApiKey,
    namespace: &str,
    rotated_at: DateTime<Utc>,
) {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {labels::RESTARTED_AT: format_time(rotated_at)}}}}});
    let params = PatchParams {
        field_manager: Some(RESTART_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    for consumer in key.spec.consumers.iter().flatten() {
        let client = ctx.client.clone();
        let merge = Patch::Merge(&patch);
        let result = match consumer.kind {
            ConsumerKind::Deployment => Api::<Deployment>::namespaced(client, namespace)
                .patch(&consumer.name, &params, &merge)
                .await
                .map(|_| ()),
            ConsumerKind::StatefulSet => Api::<StatefulSet>::namespaced(client, namespace)
                .patch(&consumer.name, &params, &merge)
                .await
                .map(|_| ()),
            ConsumerKind::DaemonSet => Api::<DaemonSet>::namespaced(client, namespace)
                .patch(&consumer.name, &params, &merge)
                .await
                .map(|_| ()),
        };
        let kind = format!("{:?}", consumer.kind);
        match result {
            Ok(()) => tracing::info!(
                namespace,
                consumer = consumer.name,
                kind,
                "consumer restarted"
            ),
            Err(err) => {
                let note = match &err {
                    kube::Error::Api(s) if s.is_not_found() => {
                        format!("consumer {kind}/{} not found; not restarted", consumer.name)
                    }
                    other => format!("restarting consumer {kind}/{}: {other}", consumer.name),
                };
                ctx.event(
                    key,
                    EventType::Warning,
                    "ConsumerNotRestarted",
                    "Restart",
                    note,
                )
                .await;
            }
        }
    }
}

fn ts(t: Option<DateTime<Utc>>) -> Option<Timestamp> {
    t.map(Timestamp)
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
    let ready = Verdict {
        status: l.is_active(),
        reason: l.reason.clone(),
        message: l.message.clone(),
    };
    let conditions = [
        ("Ready", &ready),
        ("Synced", &synced),
        ("OwnerBound", &l.owner_bound),
        ("CrossTenant", &l.cross_tenant),
        ("PolicyCompliant", &l.policy_compliant),
    ]
    .into_iter()
    .map(|(type_, verdict)| condition(type_, verdict, generation, &prior.conditions, now))
    .collect();
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

/// Writes Synced=False, keeping everything else as it was.
async fn report_sync_failure(
    ctx: &Context,
    key: &ApiKey,
    namespace: &str,
    prior: &ApiKeyStatus,
    synced: Verdict,
    now: DateTime<Utc>,
) {
    let condition = condition(
        "Synced",
        &synced,
        key.metadata.generation,
        &prior.conditions,
        now,
    );
    if find(&prior.conditions, "Synced") == Some(&condition) {
        return;
    }
    let api: Api<ApiKey> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({"apiVersion": ApiKey::api_version(&()), "kind": ApiKey::kind(&()), "status": {"conditions": [condition]}});
    if let Err(err) = api
        .patch_status(
            &key.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        tracing::warn!(namespace, name = key.name_any(), error = %err, "writing Synced=False failed");
    }
}

/// Events, audit lines and counters for what changed.
async fn announce(
    ctx: &Context,
    key: &ApiKey,
    prior: &ApiKeyStatus,
    status: &ApiKeyStatus,
    plan: &KeyPlan,
) {
    let l = &plan.lifecycle;
    let prior_reason = find(&prior.conditions, "Ready").map(|c| c.reason.as_str());
    let changed = prior.state != status.state || prior_reason != Some(l.reason.as_str());
    let tenant = l.tenant.as_deref().unwrap_or_default();
    let (action, type_, note) = match (&plan.action, l.state) {
        (KeyAction::Issue { version }, _) => (
            AuditAction::Issued,
            EventType::Normal,
            format!(
                "{}: version {version} issued, {}",
                reason::ACTIVE,
                l.message
            ),
        ),
        (
            KeyAction::Rotate {
                version, manual, ..
            },
            _,
        ) => (
            AuditAction::Rotated,
            EventType::Normal,
            format!(
                "{}: version {version} issued by {} rotation",
                reason::ACTIVE,
                if *manual { "requested" } else { "scheduled" }
            ),
        ),
        _ if !changed => return,
        (_, CredentialState::Expired) => (
            AuditAction::Expired,
            EventType::Normal,
            format!("{}: {}", l.reason, l.message),
        ),
        (_, CredentialState::Revoked) => {
            ctx.metrics.revocation(KIND, tenant, &l.reason);
            (
                AuditAction::Revoked,
                EventType::Warning,
                format!("{}: {}", l.reason, l.message),
            )
        }
        (_, CredentialState::Invalid) => (
            AuditAction::Refused,
            EventType::Warning,
            format!("{}: {}", l.reason, l.message),
        ),
        (_, CredentialState::Pending) if l.reason == reason::SECRET_CONFLICT => (
            AuditAction::Conflict,
            EventType::Warning,
            format!("{}: {}", l.reason, l.message),
        ),
        _ => return,
    };
    let event_reason = format!("{action:?}");
    ctx.event(key, type_, &event_reason, &event_reason, note.clone())
        .await;
    let mut record = AuditRecord::new(
        action,
        AuditObject {
            kind: KIND.into(),
            namespace: key.namespace(),
            name: key.name_any(),
            uid: key.uid(),
        },
        l.reason.clone(),
        note,
    );
    record.tenant = l.tenant.clone();
    record.owner = l.owner.clone();
    record.integration = key.spec.integration.clone();
    record.version = status.version;
    record.fingerprint = status.fingerprint.clone();
    record.issued_at = status.issued_at.map(|t| t.0);
    record.last_rotated_at = status.last_rotated_at.map(|t| t.0);
    record.next_rotation_at = status.next_rotation_at.map(|t| t.0);
    record.previous_valid_until = status.previous_valid_until.map(|t| t.0);
    record.expires_at = status.expires_at.map(|t| t.0);
    audit::emit(&record);
}
