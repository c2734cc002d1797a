//! ServiceAccountCredential: gather (tenancy, integration, ServiceAccount, Secret) → decide
//! (policy) → apply (ServiceAccount, then token, then Secret: a crash leaves a state the next
//! pass finishes) → report (status, Events, audit, metrics) → requeue when the token is due.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::Status;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::context::{Context, FIELD_MANAGER};
use super::credential::{self, Deed, Facts, state_changed, ts};
use super::owned::Owned;
use super::status::{from_k8s_time, now};
use crate::api::{
    CredentialState, ServiceAccountCredential, ServiceAccountCredentialStatus, Timestamp, labels,
};
use crate::audit::AuditAction;
use crate::error::{Error, Result};
use crate::metrics::RotationResult;
use crate::policy::credential::clamped;
use crate::policy::credential::{CredentialSpec, Lifecycle, Verdict, reason};
use crate::policy::format_time;
use crate::policy::sa_credential::{
    Account, AccountState, Delivery, NewAccount, PlanInput, PriorRecord, SERVICE_ACCOUNT_CONFLICT,
    SacAction, SacPlan, Schedule, SecretState, Token, TokenTiming, account_annotations, delivery,
    plan, read_account, read_token, request_digest, schedule, secret_annotations, token_claims,
};
use crate::store::kubernetes::{self as secrets, is_controlled_by};
use crate::store::value::Value;

pub const KIND: &str = "ServiceAccountCredential";
const DEFAULT_KEY: &str = "token";

/// The name of the ServiceAccount `sac` creates.
pub fn service_account_name(sac: &ServiceAccountCredential) -> String {
    sac.spec
        .service_account_name
        .clone()
        .unwrap_or_else(|| sac.name_any())
}

/// The name of the Secret that serves `sac`'s token.
pub fn secret_name(sac: &ServiceAccountCredential) -> String {
    sac.spec
        .secret
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| format!("{}-token", sac.name_any()))
}

fn data_key(sac: &ServiceAccountCredential) -> String {
    sac.spec
        .secret
        .as_ref()
        .and_then(|s| s.key.clone())
        .unwrap_or_else(|| DEFAULT_KEY.to_owned())
}

/// The spec, parsed once.
struct Parsed {
    spec: CredentialSpec,
    timing: TokenTiming,
    audiences: Vec<String>,
    request: String,
}

/// The spec, parsed once, and the problem with a field that admission let through and
/// that cannot be used, if any.
fn parse_spec(sac: &ServiceAccountCredential) -> (Parsed, Option<String>) {
    let (timing, problem) = match TokenTiming::from_spec(
        sac.spec.token_ttl.as_ref(),
        sac.spec.refresh_before.as_ref(),
    ) {
        Ok(timing) => (timing, None),
        Err(message) => (TokenTiming::default(), Some(format!("spec.{message}"))),
    };
    let audiences = sac.spec.audiences.clone().unwrap_or_default();
    let parsed = Parsed {
        spec: CredentialSpec {
            integration: sac.spec.integration.clone(),
            tenant: sac.spec.tenant.clone(),
            owner: sac.spec.owner.clone(),
            expires_at: sac.spec.expires_at.map(|t| t.0),
            rotation_every: None,
        },
        request: request_digest(&audiences, &timing),
        timing,
        audiences,
    };
    (parsed, problem)
}

/// The objects as found, and what they record.
struct Observed {
    account: Option<ServiceAccount>,
    account_state: AccountState,
    secret: Option<Secret>,
    secret_state: SecretState,
    /// The token the Secret holds, when it is ours and its record matches it.
    token: Option<Value>,
}

fn observe(
    account: Option<ServiceAccount>,
    secret: Option<Secret>,
    uid: &str,
    key: &str,
    prior: &ServiceAccountCredentialStatus,
    now: DateTime<Utc>,
) -> Observed {
    let empty = BTreeMap::new();
    let account_state = match &account {
        None => AccountState::Absent,
        Some(sa) if !is_controlled_by(&sa.metadata, uid) => AccountState::Foreign,
        Some(sa) => AccountState::Ours(read_account(
            sa.metadata.uid.as_deref().unwrap_or_default(),
            sa.metadata.annotations.as_ref().unwrap_or(&empty),
            prior.version,
            prior.issued_at.map(|t| t.0).unwrap_or(now),
        )),
    };
    let (secret_state, token) = match &secret {
        None => (SecretState::Absent, None),
        Some(s) if !is_controlled_by(&s.metadata, uid) => (SecretState::Foreign, None),
        Some(s) => {
            let held = s
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .and_then(|b| Value::from_bytes(&b.0));
            let record = read_token(
                s.metadata.annotations.as_ref().unwrap_or(&empty),
                held.as_ref().map(Value::fingerprint).as_ref(),
            );
            let token = record.is_some().then_some(held).flatten();
            (SecretState::Ours(record), token)
        }
    };
    Observed {
        account,
        account_state,
        secret,
        secret_state,
        token,
    }
}

/// The ServiceAccount and token served once the plan is applied.
struct Served {
    account: Account,
    token: Token,
}

/// What the urgency of a pass of this credential is decided from: its status and its
/// lifecycle now (no request). The credential gate admits the most urgent first. A token refresh is this
/// kind's rotation.
pub fn due(sac: &ServiceAccountCredential, ctx: &Context) -> super::gate::Due {
    let now = now();
    let prior = sac.status.clone().unwrap_or_default();
    let (active, every, ends_at) = sac
        .namespace()
        .map(|namespace| {
            let (parsed, problem) = parse_spec(sac);
            let lifecycle =
                credential::lifecycle(ctx, &ctx.tenancy(), sac, &namespace, &parsed.spec, now);
            let active = lifecycle.is_active() && problem.is_none();
            (
                active,
                lifecycle.rotation_every,
                lifecycle.next_due.filter(|_| active),
            )
        })
        .unwrap_or((false, None, None));
    let lineage_ends = prior
        .issued_at
        .map(|t| t.0)
        .zip(every)
        .and_then(|(at, every)| at.checked_add_signed(every));
    let renew_at = [
        prior.next_refresh_at.map(|t| t.0),
        prior.token_expires_at.map(|t| t.0),
        lineage_ends,
    ]
    .into_iter()
    .flatten()
    .min();
    let request = sac.annotations().get(labels::ROTATE).map(String::as_str);
    super::gate::Due {
        deleting: sac.metadata.deletion_timestamp.is_some(),
        served: prior.state == Some(CredentialState::Active),
        active,
        ends_at,
        renew_at,
        overlap_ends: None,
        requested: request.is_some() && request != prior.last_rotation_request.as_deref(),
    }
}

pub async fn reconcile(sac: Arc<ServiceAccountCredential>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer("serviceaccountcredential");
    let Some(sac) = credential::current(&ctx, &ctx.sacs, sac).await? else {
        return Ok(Action::await_change());
    };
    let namespace = sac.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let uid = sac.uid().ok_or(Error::MissingMetadata("uid"))?;
    let now = now();

    // Gather.
    let (mut parsed, problem) = parse_spec(&sac);
    let prior = sac.status.clone().unwrap_or_default();
    let mut lifecycle = credential::lifecycle(
        &ctx,
        &ctx.tenancy(),
        sac.as_ref(),
        &namespace,
        &parsed.spec,
        now,
    );
    if let Some(problem) = problem {
        // Nothing is issued, and nothing is retried until the spec changes.
        credential::invalid_spec(&mut lifecycle, problem);
    }
    if let Some(note) = parsed.timing.apply_floor(ctx.min_rotation_interval) {
        lifecycle.policy_compliant = clamped(&lifecycle.policy_compliant, note);
    }
    let target = Target::new(&ctx, &sac, &namespace, &uid)?;
    let observed = observe(
        ctx.accounts
            .get(&target.accounts, &namespace, &target.account_name)
            .await?,
        ctx.secrets
            .get(&target.secrets, &namespace, &target.secret_name)
            .await?,
        &uid,
        &target.key,
        &prior,
        now,
    );

    // Decide.
    let active_before = prior.state == Some(CredentialState::Active);
    let input = PlanInput {
        timing: parsed.timing,
        request: &parsed.request,
        rotate_annotation: sac.annotations().get(labels::ROTATE).map(String::as_str),
        last_rotation_request: prior.last_rotation_request.as_deref(),
        last_version: prior.version,
        lineage: prior.issued_at.filter(|_| active_before).map(|t| t.0),
    };
    let plan = plan(
        lifecycle,
        &observed.account_state,
        &observed.secret_state,
        &input,
        now,
    );

    // A foreign ServiceAccount or Secret of that name: its change or deletion wakes this
    // credential.
    let blocker = match plan.lifecycle.reason.as_str() {
        SERVICE_ACCOUNT_CONFLICT => Some(("ServiceAccount", target.account_name.clone())),
        reason::SECRET_CONFLICT => Some(("Secret", target.secret_name.clone())),
        _ => None,
    };
    ctx.conflicts.set(
        (KIND, Some(namespace.clone()), sac.name_any()),
        blocker.map(|(kind, name)| (kind, namespace.clone(), name)),
    );

    // Apply.
    let tenant = plan.lifecycle.tenant.clone().unwrap_or_default();
    let applied = async {
        if prior.observed_generation != sac.metadata.generation {
            // A renamed ServiceAccount or Secret must not outlive the spec that named it.
            (ctx.accounts)
                .remove_strays(&target.accounts, &namespace, &uid, &target.account_name)
                .await?;
            (ctx.secrets)
                .remove_strays(&target.secrets, &namespace, &uid, &target.secret_name)
                .await?;
        }
        target.apply(&plan, observed, &parsed, now).await
    }
    .await;
    // Whether this pass wrote what it announces (a new token, or the withdrawal).
    let wrote = !matches!(plan.action, SacAction::Keep);
    let served = match applied {
        Ok(served) => served,
        Err(err) => {
            // A token was being replaced: a refresh or a rotation failed.
            let rotating =
                active_before && !matches!(plan.action, SacAction::Keep | SacAction::Withdraw);
            let synced = Verdict::new(false, "SyncFailed", format!("{}: {err}", target.describe()));
            credential::report_sync_failure(
                &ctx,
                sac.as_ref(),
                &plan.lifecycle,
                rotating,
                synced,
                now,
            )
            .await;
            return Err(err);
        }
    };
    let synced = Verdict::new(
        true,
        "Synced",
        format!("{} are up to date", target.describe()),
    );

    // Report.
    let schedule = schedule(
        &plan.lifecycle,
        served.as_ref().map(|s| &s.token),
        &parsed.timing,
        now,
    );
    let status = build_status(&sac, &prior, &plan, served.as_ref(), &schedule, synced, now);
    let delivered = served.as_ref().and_then(|s| {
        let record = PriorRecord {
            active: active_before,
            issued_at: prior.issued_at.map(|t| t.0),
            version: prior.version,
            fingerprint: prior.fingerprint.as_deref(),
            last_rotation_request: prior.last_rotation_request.as_deref(),
        };
        delivery(&record, &s.account, &s.token)
    });
    let deed = delivered.map(|d| deed(d, &target.account_name, &status, &plan.lifecycle));
    let changed = state_changed(prior.state, &prior.conditions, &plan.lifecycle);
    let facts = Facts {
        version: status.version,
        fingerprint: status.fingerprint.clone(),
        issued_at: status.issued_at,
        last_rotated_at: status.last_issued_at,
        next_rotation_at: status.next_refresh_at,
        previous_valid_until: None,
        expires_at: status.expires_at,
        token_expires_at: status.token_expires_at,
    };
    // Announced before the status is written: a pass that dies in between repeats the
    // announcement, which its Event's name makes a no-op.
    let announced = credential::report(
        &ctx,
        sac.as_ref(),
        &plan.lifecycle,
        deed,
        changed,
        wrote,
        facts,
    )
    .await;
    if announced
        && matches!(
            delivered,
            Some(Delivery::Rotated { .. } | Delivery::Refreshed { .. })
        )
    {
        ctx.metrics.rotation(KIND, &tenant, RotationResult::Success);
    }
    if sac.status.as_ref() != Some(&status) {
        credential::write_status(&ctx, sac.as_ref(), &namespace, &status).await?;
    }
    Ok(super::requeue_at(schedule.next_due))
}

/// The Event note for a served token. Never the token: its fingerprint and times only.
fn deed(
    delivered: Delivery,
    account: &str,
    status: &ServiceAccountCredentialStatus,
    l: &Lifecycle,
) -> Deed {
    let until = status
        .token_expires_at
        .map(|t| format_time(t.0))
        .unwrap_or_default();
    let (action, event_action, what, name) = match delivered {
        Delivery::Issued { version } => (
            AuditAction::Issued,
            None,
            format!(
                "version {version} issued: ServiceAccount {account} created, {}",
                l.message
            ),
            format!("issued-v{version}"),
        ),
        Delivery::Rotated { version, requested } => (
            AuditAction::Rotated,
            None,
            format!(
                "version {version} issued by {}: ServiceAccount {account} re-created, every earlier token is invalid",
                if requested {
                    "requested rotation"
                } else {
                    "re-creating a ServiceAccount that had gone missing"
                }
            ),
            format!("rotated-v{version}"),
        ),
        Delivery::Refreshed { version } => (
            AuditAction::Issued,
            Some("Refresh"),
            format!("token of version {version} refreshed"),
            format!(
                "refreshed-v{version}-{}",
                status
                    .fingerprint
                    .as_deref()
                    .and_then(|f| f.strip_prefix("sha256:"))
                    .unwrap_or_default()
            ),
        ),
    };
    Deed {
        action,
        note: format!("{}: {what}; token valid until {until}", reason::ACTIVE),
        event_action,
        what: name,
    }
}

fn build_status(
    sac: &ServiceAccountCredential,
    prior: &ServiceAccountCredentialStatus,
    plan: &SacPlan,
    served: Option<&Served>,
    schedule: &Schedule,
    synced: Verdict,
    now: DateTime<Utc>,
) -> ServiceAccountCredentialStatus {
    let l = &plan.lifecycle;
    let generation = sac.metadata.generation;
    let served = served.filter(|_| l.is_active());
    ServiceAccountCredentialStatus {
        observed_generation: generation,
        state: Some(l.state),
        tenant: l.tenant.clone(),
        owner: l.owner.clone(),
        version: served.map(|s| s.account.version).or(prior.version),
        fingerprint: served.map(|s| s.token.fingerprint.clone()),
        service_account_uid: served.map(|s| s.account.uid.clone()),
        token_expires_at: ts(served.map(|s| s.token.expires_at)),
        last_issued_at: ts(served.map(|s| s.token.issued_at)),
        next_refresh_at: ts(schedule.next_refresh_at),
        issued_at: ts(served.map(|s| s.account.issued_at)),
        renewed_at: Some(Timestamp(l.renewed_at)),
        expires_at: ts(l.expiry.as_ref().map(|d| d.at)),
        last_rotation_request: plan.last_rotation_request.clone(),
        conditions: credential::conditions(l, &synced, generation, &prior.conditions, now),
    }
}

/// Where one credential's objects live, and how they are written.
struct Target<'a> {
    sac: &'a ServiceAccountCredential,
    namespace: &'a str,
    uid: &'a str,
    owner_reference: OwnerReference,
    accounts: Api<ServiceAccount>,
    secrets: Api<Secret>,
    owned_accounts: &'a Owned<ServiceAccount>,
    owned_secrets: &'a Owned<Secret>,
    account_name: String,
    secret_name: String,
    key: String,
}

impl<'a> Target<'a> {
    fn new(
        ctx: &'a Context,
        sac: &'a ServiceAccountCredential,
        namespace: &'a str,
        uid: &'a str,
    ) -> Result<Self> {
        let owner_reference = OwnerReference {
            block_owner_deletion: Some(true),
            ..sac
                .controller_owner_ref(&())
                .ok_or(Error::MissingMetadata("name or uid"))?
        };
        Ok(Self {
            sac,
            namespace,
            uid,
            owner_reference,
            accounts: Api::namespaced(ctx.client.clone(), namespace),
            secrets: Api::namespaced(ctx.client.clone(), namespace),
            owned_accounts: &ctx.accounts,
            owned_secrets: &ctx.secrets,
            account_name: service_account_name(sac),
            secret_name: secret_name(sac),
            key: data_key(sac),
        })
    }

    fn describe(&self) -> String {
        format!(
            "ServiceAccount {} and Secret {}",
            self.account_name, self.secret_name
        )
    }

    /// Makes the ServiceAccount and the Secret match the plan; returns what is served.
    async fn apply(
        &self,
        plan: &SacPlan,
        observed: Observed,
        parsed: &Parsed,
        now: DateTime<Utc>,
    ) -> Result<Option<Served>> {
        let l = &plan.lifecycle;
        let ours = |meta: &ObjectMeta| is_controlled_by(meta, self.uid);
        let (account, existing_account) = match (&plan.action, observed.account_state) {
            (SacAction::Withdraw, _) => {
                // The ServiceAccount first: its deletion is what invalidates the tokens.
                if let Some(sa) = observed.account.filter(|sa| ours(&sa.metadata)) {
                    self.owned_accounts
                        .delete(&self.accounts, &sa.metadata)
                        .await?;
                }
                if let Some(secret) = observed.secret.filter(|s| ours(&s.metadata)) {
                    self.owned_secrets
                        .delete(&self.secrets, &secret.metadata)
                        .await?;
                }
                return Ok(None);
            }
            _ if !l.is_active() => return Ok(None),
            (SacAction::Create(new), _) => {
                if let Some(sa) = observed.account.filter(|sa| ours(&sa.metadata)) {
                    self.owned_accounts
                        .delete(&self.accounts, &sa.metadata)
                        .await?;
                }
                let created = self.create_account(new, l).await?;
                let uid = created.metadata.uid.clone().unwrap_or_default();
                (new.clone().created(uid), created)
            }
            (_, AccountState::Ours(account)) => match observed.account {
                Some(sa) => (account, sa),
                None => return Ok(None),
            },
            // Nothing of ours to serve (a conflict, or an inactive credential with nothing
            // left to withdraw).
            _ => return Ok(None),
        };

        let (token, value) = match (&plan.action, observed.token, observed.secret_state) {
            (SacAction::Keep, Some(value), SecretState::Ours(Some(token))) => (token, value),
            _ => self.request_token(&account, parsed, now).await?,
        };
        self.write_secret(observed.secret.as_ref(), &account, &token, &value, l)
            .await?;
        self.sync_account(&existing_account, &account, &token, l)
            .await?;
        Ok(Some(Served { account, token }))
    }

    /// The metadata of a managed object: the contract's labels, `annotations`, and this
    /// credential as its controller.
    fn meta(&self, name: &str, l: &Lifecycle, annotations: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(self.labels(l)),
            annotations: Some(annotations),
            owner_references: Some(vec![self.owner_reference.clone()]),
            ..ObjectMeta::default()
        }
    }

    fn labels(&self, l: &Lifecycle) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                labels::MANAGED_BY.to_owned(),
                labels::MANAGED_BY_VALUE.to_owned(),
            ),
            (
                labels::TENANT.to_owned(),
                l.tenant.clone().unwrap_or_default(),
            ),
            (labels::CREDENTIAL.to_owned(), self.sac.name_any()),
        ])
    }

    /// Creates the ServiceAccount. A create, not an apply: if one of that name appeared
    /// since it was read, this fails instead of taking it over.
    async fn create_account(&self, new: &NewAccount, l: &Lifecycle) -> Result<ServiceAccount> {
        let annotations = account_annotations(
            new,
            l.owner.as_deref().unwrap_or_default(),
            None,
            l.expiry.as_ref().map(|d| d.at),
        );
        let account = ServiceAccount {
            metadata: self.meta(&self.account_name, l, annotations),
            // Its tokens are for an outside party, never for pods of this namespace.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let created = self.accounts.create(&params, &account).await?;
        self.owned_accounts.wrote(&created);
        tracing::info!(
            namespace = self.namespace,
            name = self.sac.name_any(),
            service_account = self.account_name,
            version = new.version,
            "service account created"
        );
        Ok(created)
    }

    /// Asks the TokenRequest API for a token of `account`, and checks from its claims that
    /// it is bound to that very ServiceAccount (by UID), not one that replaced it since.
    async fn request_token(
        &self,
        account: &Account,
        parsed: &Parsed,
        now: DateTime<Utc>,
    ) -> Result<(Token, Value)> {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: (!parsed.audiences.is_empty()).then(|| parsed.audiences.clone()),
                expiration_seconds: Some(parsed.timing.expiration_seconds()),
                bound_object_ref: None,
            }),
            ..TokenRequest::default()
        };
        let response = self
            .accounts
            .create_token_request(&self.account_name, &PostParams::default(), &request)
            .await?;
        let status = response.status.ok_or(Error::MissingMetadata(
            "status in the TokenRequest response",
        ))?;
        let expires_at = status
            .expiration_timestamp
            .as_ref()
            .map(from_k8s_time)
            .ok_or(Error::MissingMetadata(
                "expirationTimestamp in the TokenRequest response",
            ))?;
        let value = status
            .token
            .and_then(|t| Value::from_bytes(t.as_bytes()))
            .filter(|v| !v.expose().is_empty())
            .ok_or(Error::MissingMetadata("token in the TokenRequest response"))?;
        let claims = token_claims(value.expose()).ok_or(Error::MissingMetadata(
            "ServiceAccount claims in the issued token",
        ))?;
        if claims.account_uid != account.uid {
            let message = format!(
                "ServiceAccount {} was replaced while a token was requested; the token is discarded",
                self.account_name
            );
            return Err(Error::Kube(kube::Error::Api(Box::new(
                Status::failure(&message, "Conflict").with_code(409),
            ))));
        }
        let token = Token {
            fingerprint: value.fingerprint().to_string(),
            issued_at: claims.issued_at.unwrap_or(now),
            expires_at,
            account_uid: account.uid.clone(),
            request: parsed.request.clone(),
        };
        tracing::info!(
            namespace = self.namespace,
            name = self.sac.name_any(),
            version = account.version,
            fingerprint = token.fingerprint,
            expires_at = %format_time(expires_at),
            "token issued"
        );
        Ok((token, value))
    }

    /// Server-side applies the Secret when it differs from what it should be.
    async fn write_secret(
        &self,
        existing: Option<&Secret>,
        account: &Account,
        token: &Token,
        value: &Value,
        l: &Lifecycle,
    ) -> Result<()> {
        let annotations = secret_annotations(
            token,
            account.version,
            l.owner.as_deref().unwrap_or_default(),
            l.expiry.as_ref().map(|d| d.at),
        );
        let desired = Secret {
            metadata: self.meta(&self.secret_name, l, annotations),
            type_: Some("Opaque".to_owned()),
            data: Some(BTreeMap::from([(
                self.key.clone(),
                ByteString(value.expose().as_bytes().to_vec()),
            )])),
            ..Secret::default()
        };
        // Ours or absent (a conflict never gets here): a create, or a conditional replace.
        let existing = existing.filter(|e| is_controlled_by(&e.metadata, self.uid));
        if existing.is_none_or(|e| secrets::differs(e, &desired)) {
            self.owned_secrets
                .write(&self.secrets, existing, desired)
                .await?;
        }
        Ok(())
    }

    /// Brings the ServiceAccount's labels and annotations up to date (fingerprint of the
    /// token served, owner, expiry). A merge patch carrying the resourceVersion read, so it
    /// applies to exactly the ServiceAccount the token was issued for.
    async fn sync_account(
        &self,
        existing: &ServiceAccount,
        account: &Account,
        token: &Token,
        l: &Lifecycle,
    ) -> Result<()> {
        let record = NewAccount {
            version: account.version,
            issued_at: account.issued_at,
            rotation_request: account.rotation_request.clone(),
        };
        let labels = self.labels(l);
        let annotations = account_annotations(
            &record,
            l.owner.as_deref().unwrap_or_default(),
            Some(&token.fingerprint),
            l.expiry.as_ref().map(|d| d.at),
        );
        let have = |m: &Option<BTreeMap<String, String>>, k: &str| {
            m.as_ref().and_then(|m| m.get(k)).cloned()
        };
        let meta = &existing.metadata;
        let stale_expiry = !annotations.contains_key(labels::EXPIRES_AT)
            && have(&meta.annotations, labels::EXPIRES_AT).is_some();
        let current = labels
            .iter()
            .all(|(k, v)| have(&meta.labels, k).as_ref() == Some(v))
            && annotations
                .iter()
                .all(|(k, v)| have(&meta.annotations, k).as_ref() == Some(v));
        if current && !stale_expiry {
            return Ok(());
        }
        let mut annotations = serde_json::to_value(&annotations)?;
        if stale_expiry && let Some(map) = annotations.as_object_mut() {
            map.insert(labels::EXPIRES_AT.to_owned(), serde_json::Value::Null);
        }
        let patch = json!({"metadata": {
            "resourceVersion": meta.resource_version,
            "labels": labels,
            "annotations": annotations,
        }});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let patched = self
            .accounts
            .patch(&self.account_name, &params, &Patch::Merge(&patch))
            .await?;
        self.owned_accounts.wrote(&patched);
        Ok(())
    }
}
