//! What a credential (ApiKey or ServiceAccountCredential) should be at a given time: its
//! tenant, owner, state and effective deadlines. Shared by both kinds; pure.

use chrono::{DateTime, Duration, Utc};

use super::tenancy::{NamespaceOwner, ResolvedTenant, Tenancy, TenancyError};
use crate::api::{CredentialState, TenantState};

/// Ready reasons, as the contract spells them.
pub mod reason {
    pub const ACTIVE: &str = "Active";
    pub const PENDING: &str = "Pending";
    pub const EXPIRED: &str = "Expired";
    pub const TENANT_SUSPENDED: &str = "TenantSuspended";
    pub const TENANT_OFFBOARDED: &str = "TenantOffboarded";
    pub const INTEGRATION_SUSPENDED: &str = "IntegrationSuspended";
    pub const OWNER_MISSING: &str = "OwnerMissing";
    pub const OWNER_NOT_IN_TENANT: &str = "OwnerNotInTenant";
    pub const NAMESPACE_NOT_OWNED: &str = "NamespaceNotOwned";
    pub const TENANT_NOT_FOUND: &str = "TenantNotFound";
    pub const INTEGRATION_NOT_FOUND: &str = "IntegrationNotFound";
    pub const EXPIRY_REQUIRED: &str = "ExpiryRequired";
    pub const TENANT_MISMATCH: &str = "TenantMismatch";
    pub const INVALID_PARENT: &str = "InvalidParent";
    pub const SECRET_CONFLICT: &str = "SecretConflict";
    pub const VAULT_UNAVAILABLE: &str = "VaultUnavailable";
    /// `spec.vault` names a mount or path outside the tenant's prefix.
    pub const INVALID_VAULT_PATH: &str = "InvalidVaultPath";
    /// A spec (the credential's own, or its tenant's) that admission let through and the
    /// controller cannot use.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A value outside the controller's bounds, raised or lowered to them.
    pub const CLAMPED: &str = "Clamped";
    pub const OWNER_BOUND: &str = "OwnerBound";
}

/// A credential's spec, parsed: the fields resolution and policy depend on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CredentialSpec {
    pub integration: Option<String>,
    pub tenant: Option<String>,
    pub owner: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `rotation.every` (ApiKey only).
    pub rotation_every: Option<Duration>,
}

/// Whether an owner is, or recently was, one of its tenant's owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerBinding {
    Bound,
    /// Was bound and is no longer; the grace period runs from `since`.
    Missing {
        since: DateTime<Utc>,
    },
    /// Not an owner of the tenant, and was not bound before either.
    NotInTenant,
}

/// What the last status said about the owner (from the `OwnerBound` condition).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PriorOwner {
    pub owner: Option<String>,
    pub binding: Option<OwnerBinding>,
}

/// Decides the owner binding now, carrying the grace clock over from the prior status: an
/// owner that was bound and disappears is `Missing` from the first time that is seen.
pub fn bind_owner(
    owner: &str,
    tenant: &ResolvedTenant,
    prior: &PriorOwner,
    now: DateTime<Utc>,
) -> OwnerBinding {
    if tenant.has_owner(owner) {
        return OwnerBinding::Bound;
    }
    if prior.owner.as_deref() != Some(owner) {
        return OwnerBinding::NotInTenant;
    }
    match prior.binding {
        Some(OwnerBinding::Bound) => OwnerBinding::Missing { since: now },
        Some(missing @ OwnerBinding::Missing { .. }) => missing,
        _ => OwnerBinding::NotInTenant,
    }
}

/// A PartnerIntegration as credentials see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrationFacts {
    pub name: String,
    pub tenant: String,
    pub owner: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub suspended: bool,
    /// The integration's own owner binding, from its status.
    pub owner_binding: Option<OwnerBinding>,
}

/// The deadline that sets a credential's effective expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadlineSource {
    Own,
    Integration(String),
    TenantEnd(String),
    MaxLifetime {
        tenant: String,
        max: Duration,
        renewed_at: DateTime<Utc>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadline {
    pub at: DateTime<Utc>,
    pub source: DeadlineSource,
}

impl Deadline {
    /// Names the deadline for a status message, e.g. "the integration globex's expiresAt".
    pub fn describe(&self) -> String {
        match &self.source {
            DeadlineSource::Own => "its own expiresAt".to_owned(),
            DeadlineSource::Integration(name) => format!("integration {name}'s expiresAt"),
            DeadlineSource::TenantEnd(tenant) => format!("tenant {tenant}'s endsAt"),
            DeadlineSource::MaxLifetime {
                tenant,
                max,
                renewed_at,
            } => format!(
                "tenant {tenant}'s maxLifetime ({}) after its last renewal at {}",
                super::format_duration(*max),
                super::format_time(*renewed_at)
            ),
        }
    }
}

/// Inputs of a credential decision.
#[derive(Clone, Debug)]
pub struct CredentialInput<'a> {
    pub namespace: &'a str,
    pub generation: i64,
    pub spec: &'a CredentialSpec,
    /// `None` when the spec names no integration; `Some(None)` when it names a missing one.
    pub integration: Option<Option<&'a IntegrationFacts>>,
    pub tenancy: &'a Tenancy,
    /// `status.observedGeneration` and `status.renewedAt` as last written.
    pub observed_generation: Option<i64>,
    pub renewed_at: Option<DateTime<Utc>>,
    pub prior_owner: PriorOwner,
    pub now: DateTime<Utc>,
}

/// A condition to report: status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Verdict {
    pub fn new(status: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// What a credential should be at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    pub state: CredentialState,
    /// Ready reason and message (`Ready` is true only when `state` is Active).
    pub reason: String,
    pub message: String,
    pub tenant: Option<String>,
    pub owner: Option<String>,
    pub renewed_at: DateTime<Utc>,
    pub expiry: Option<Deadline>,
    /// Effective rotation interval.
    pub rotation_every: Option<Duration>,
    pub owner_binding: Option<OwnerBinding>,
    pub owner_bound: Verdict,
    pub cross_tenant: Verdict,
    pub policy_compliant: Verdict,
    /// The next time this decision changes by itself: expiry, or the end of an owner's grace.
    pub next_due: Option<DateTime<Utc>>,
}

impl Lifecycle {
    pub fn is_active(&self) -> bool {
        self.state == CredentialState::Active
    }
}

/// Applies the controller's write floor (`--min-rotation-interval`): an effective rotation
/// interval shorter than `floor` is raised to it and reported as `PolicyCompliant=False
/// reason=Clamped`, so no object makes the controller write more often than that.
pub fn apply_rotation_floor(lifecycle: &mut Lifecycle, floor: Duration) {
    let Some(every) = lifecycle.rotation_every else {
        return;
    };
    if every >= floor {
        return;
    }
    lifecycle.rotation_every = Some(floor);
    let note = format!(
        "the effective rotation interval {} is shorter than the controller's minimum, so it rotates every {}",
        super::format_duration(every),
        super::format_duration(floor)
    );
    lifecycle.policy_compliant = clamped(&lifecycle.policy_compliant, note);
}

/// Adds a clamping note to a `PolicyCompliant` verdict.
pub fn clamped(prior: &Verdict, note: String) -> Verdict {
    let message = if prior.reason == reason::CLAMPED {
        format!("{}; {note}", prior.message)
    } else {
        note
    };
    Verdict::new(false, reason::CLAMPED, message)
}

/// When `maxLifetime` ends for a spec first seen at `renewed_at`.
pub fn max_lifetime_end(renewed_at: DateTime<Utc>, max: Duration) -> DateTime<Utc> {
    super::later(renewed_at, max)
}

/// The time `maxLifetime` cuts an own `expiresAt` short to, when it does.
pub fn cut_by_max_lifetime(
    expires_at: Option<DateTime<Utc>>,
    renewed_at: DateTime<Utc>,
    max: Duration,
) -> Option<DateTime<Utc>> {
    let end = max_lifetime_end(renewed_at, max);
    expires_at.filter(|own| *own > end).map(|_| end)
}

fn earliest(deadlines: impl IntoIterator<Item = Deadline>) -> Option<Deadline> {
    deadlines.into_iter().min_by_key(|d| d.at)
}

/// Decides state, reason and deadlines of a credential. Order of precedence: a credential
/// that can never be issued as specified is Invalid; one whose relationship is halted is
/// Revoked; one past its deadline is Expired; anything else is Active.
pub fn decide(input: &CredentialInput<'_>) -> Lifecycle {
    let now = input.now;
    let spec = input.spec;
    let renewed_at = match (input.observed_generation, input.renewed_at) {
        (Some(g), Some(r)) if g == input.generation => r,
        _ => now,
    };
    let mut out = Lifecycle {
        state: CredentialState::Invalid,
        reason: String::new(),
        message: String::new(),
        tenant: spec.tenant.clone(),
        owner: spec.owner.clone(),
        renewed_at,
        expiry: None,
        rotation_every: spec.rotation_every,
        owner_binding: None,
        owner_bound: Verdict::new(false, reason::PENDING, "owner not resolved yet"),
        cross_tenant: Verdict::new(
            false,
            "SameTenant",
            "namespace is owned by the credential's tenant",
        ),
        policy_compliant: Verdict::new(true, "Compliant", "within the tenant's policy"),
        next_due: None,
    };
    let invalid = |mut out: Lifecycle, why: &str, message: String| {
        out.state = CredentialState::Invalid;
        out.reason = why.to_owned();
        out.message = message;
        out
    };

    // Tenant and integration.
    let integration = match input.integration {
        None => None,
        Some(None) => {
            let name = spec.integration.clone().unwrap_or_default();
            return invalid(
                out,
                reason::INTEGRATION_NOT_FOUND,
                format!(
                    "PartnerIntegration {name} does not exist in namespace {}",
                    input.namespace
                ),
            );
        }
        Some(Some(found)) => Some(found),
    };
    let tenant_name = match (&spec.tenant, integration) {
        (Some(own), Some(pi)) if *own != pi.tenant => {
            return invalid(
                out,
                reason::TENANT_MISMATCH,
                format!(
                    "spec.tenant {own} differs from tenant {} of integration {}",
                    pi.tenant, pi.name
                ),
            );
        }
        (Some(own), _) => own.clone(),
        (None, Some(pi)) => pi.tenant.clone(),
        (None, None) => {
            return invalid(
                out,
                reason::TENANT_NOT_FOUND,
                "no tenant and no integration given".into(),
            );
        }
    };
    out.tenant = Some(tenant_name.clone());
    out.owner = spec
        .owner
        .clone()
        .or_else(|| integration.map(|pi| pi.owner.clone()));

    let tenant = match input.tenancy.resolve(&tenant_name) {
        Ok(t) => t,
        Err(err) => {
            let why = match err {
                TenancyError::NotFound(_) => reason::TENANT_NOT_FOUND,
                TenancyError::InvalidPolicy { .. } => reason::INVALID_SPEC,
                _ => reason::INVALID_PARENT,
            };
            return invalid(out, why, err.to_string());
        }
    };

    // Namespace ownership.
    match input.tenancy.namespace_owner(input.namespace) {
        NamespaceOwner::Tenant(t) if t == tenant_name => {}
        other => {
            let message = match other {
                NamespaceOwner::Tenant(t) => {
                    format!(
                        "namespace {} is owned by tenant {t}, not {tenant_name}",
                        input.namespace
                    )
                }
                NamespaceOwner::Conflict(all) => format!(
                    "namespace {} is listed by tenants {}, so owned by none",
                    input.namespace,
                    all.join(", ")
                ),
                NamespaceOwner::Unowned => {
                    format!(
                        "namespace {} is not owned by tenant {tenant_name}",
                        input.namespace
                    )
                }
            };
            out.cross_tenant = Verdict::new(true, reason::NAMESPACE_NOT_OWNED, message.clone());
            return invalid(out, reason::NAMESPACE_NOT_OWNED, message);
        }
    }

    // Owner.
    let Some(owner) = out.owner.clone() else {
        return invalid(
            out,
            reason::OWNER_NOT_IN_TENANT,
            "no owner given and no integration to take one from".into(),
        );
    };
    let grace = tenant.policy.owner_grace_period;
    let binding = bind_owner(&owner, &tenant, &input.prior_owner, now);
    out.owner_binding = Some(binding);
    let mut grace_end = None;
    match binding {
        OwnerBinding::Bound => {
            out.owner_bound = Verdict::new(
                true,
                reason::OWNER_BOUND,
                format!("{owner} is an owner of tenant {tenant_name}"),
            );
        }
        OwnerBinding::Missing { since } => {
            let end = super::later(since, grace);
            grace_end = Some(end);
            out.owner_bound = Verdict::new(
                false,
                reason::OWNER_MISSING,
                format!(
                    "{owner} is no longer an owner of tenant {tenant_name} (since {}); revoked at {} unless restored",
                    super::format_time(since),
                    super::format_time(end)
                ),
            );
        }
        OwnerBinding::NotInTenant => {
            let message = format!("{owner} is not an owner of tenant {tenant_name}");
            out.owner_bound = Verdict::new(false, reason::OWNER_NOT_IN_TENANT, message.clone());
            return invalid(out, reason::OWNER_NOT_IN_TENANT, message);
        }
    }
    if let Some(pi) = integration {
        match pi.owner_binding {
            Some(OwnerBinding::NotInTenant) => {
                return invalid(
                    out,
                    reason::OWNER_NOT_IN_TENANT,
                    format!(
                        "integration {}'s owner {} is not an owner of tenant {tenant_name}",
                        pi.name, pi.owner
                    ),
                );
            }
            Some(OwnerBinding::Missing { since }) => {
                let end = super::later(since, grace);
                grace_end = Some(grace_end.map_or(end, |g: DateTime<Utc>| g.min(end)));
            }
            _ => {}
        }
    }

    // Deadlines and policy.
    let policy = &tenant.policy;
    let mut deadlines = Vec::new();
    if let Some(at) = spec.expires_at {
        deadlines.push(Deadline {
            at,
            source: DeadlineSource::Own,
        });
    }
    if let Some(pi) = integration
        && let Some(at) = pi.expires_at
    {
        deadlines.push(Deadline {
            at,
            source: DeadlineSource::Integration(pi.name.clone()),
        });
    }
    if let Some((at, by)) = &tenant.ends_at {
        deadlines.push(Deadline {
            at: *at,
            source: DeadlineSource::TenantEnd(by.clone()),
        });
    }
    let mut clamped = Vec::new();
    if let Some(max) = policy.max_lifetime {
        let at = max_lifetime_end(renewed_at, max);
        deadlines.push(Deadline {
            at,
            source: DeadlineSource::MaxLifetime {
                tenant: tenant_name.clone(),
                max,
                renewed_at,
            },
        });
        if let Some(at) = cut_by_max_lifetime(spec.expires_at, renewed_at, max) {
            clamped.push(format!(
                "expiresAt is later than maxLifetime ({}) allows, so it expires at {}",
                super::format_duration(max),
                super::format_time(at)
            ));
        }
    }
    out.expiry = earliest(deadlines);
    if let Some(max) = policy.max_rotation_interval {
        match spec.rotation_every {
            Some(every) if every > max => {
                clamped.push(format!(
                    "rotation.every {} is longer than maxRotationInterval, so it rotates every {}",
                    super::format_duration(every),
                    super::format_duration(max)
                ));
                out.rotation_every = Some(max);
            }
            Some(every) => out.rotation_every = Some(every),
            None => out.rotation_every = Some(max),
        }
    }
    if !clamped.is_empty() {
        out.policy_compliant = Verdict::new(false, reason::CLAMPED, clamped.join("; "));
    }
    if policy.require_expiry && out.expiry.is_none() {
        return invalid(
            out,
            reason::EXPIRY_REQUIRED,
            format!("tenant {tenant_name} requires an expiry and none applies"),
        );
    }

    // Revocation.
    let revoked = |mut out: Lifecycle, why: &str, message: String| {
        out.state = CredentialState::Revoked;
        out.reason = why.to_owned();
        out.message = message;
        out
    };
    match tenant.state {
        TenantState::Suspended => {
            let message = format!("tenant {} is Suspended", tenant.state_set_by);
            return revoked(out, reason::TENANT_SUSPENDED, message);
        }
        TenantState::Offboarded => {
            let message = format!("tenant {} is Offboarded", tenant.state_set_by);
            return revoked(out, reason::TENANT_OFFBOARDED, message);
        }
        TenantState::Active => {}
    }
    if let Some(pi) = integration
        && pi.suspended
    {
        return revoked(
            out,
            reason::INTEGRATION_SUSPENDED,
            format!("integration {} is suspended", pi.name),
        );
    }
    if let Some(end) = grace_end
        && end <= now
    {
        let message = match (binding, integration) {
            (OwnerBinding::Missing { .. }, _) => {
                format!(
                    "owner {owner} left tenant {tenant_name} more than {} ago",
                    super::format_duration(grace)
                )
            }
            (_, Some(pi)) => format!(
                "integration {}'s owner {} left tenant {tenant_name} more than {} ago",
                pi.name,
                pi.owner,
                super::format_duration(grace)
            ),
            _ => format!("owner {owner} is missing"),
        };
        return revoked(out, reason::OWNER_MISSING, message);
    }

    // Expiry.
    if let Some(deadline) = &out.expiry
        && deadline.at <= now
    {
        let message = format!(
            "expired at {}: {}",
            super::format_time(deadline.at),
            deadline.describe()
        );
        out.state = CredentialState::Expired;
        out.reason = reason::EXPIRED.to_owned();
        out.message = message;
        return out;
    }

    out.state = CredentialState::Active;
    out.reason = reason::ACTIVE.to_owned();
    out.message = match &out.expiry {
        Some(d) => format!(
            "valid until {} ({})",
            super::format_time(d.at),
            d.describe()
        ),
        None => "valid, with no expiry".to_owned(),
    };
    out.next_due = [out.expiry.as_ref().map(|d| d.at), grace_end]
        .into_iter()
        .flatten()
        .min();
    out
}

/// What the last status recorded of the value served, for [`delivery`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PriorRecord<'a> {
    /// The last status was Active.
    pub active: bool,
    pub issued_at: Option<DateTime<Utc>>,
    pub version: Option<i64>,
    pub fingerprint: Option<&'a str>,
    pub last_rotation_request: Option<&'a str>,
}

/// The value served once a pass's writes are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServedRecord<'a> {
    pub version: i64,
    /// First issue of its lineage.
    pub issued_at: DateTime<Utc>,
    pub fingerprint: &'a str,
    /// The `keyward.io/rotate` value it answers, if any.
    pub rotation_request: Option<&'a str>,
}

/// What serving a value means against the last status: the first value of a lineage, a
/// new version, or a new value of the same version (a refreshed token).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Issued {
        version: i64,
    },
    /// `requested`: it answers a new value of the rotate annotation.
    Rotated {
        version: i64,
        requested: bool,
    },
    Refreshed {
        version: i64,
    },
}

impl Delivery {
    pub fn version(&self) -> i64 {
        match *self {
            Self::Issued { version }
            | Self::Rotated { version, .. }
            | Self::Refreshed { version } => version,
        }
    }
}

/// Compares the value now served with the last status. Derived from state, never from the
/// action a pass took, so a pass that finishes what a crashed or failed one began still
/// announces it, and a pass that finds it already recorded announces nothing.
pub fn delivery(prior: &PriorRecord<'_>, served: &ServedRecord<'_>) -> Option<Delivery> {
    let version = served.version;
    if prior.active && prior.fingerprint == Some(served.fingerprint) {
        return None;
    }
    if !prior.active || prior.issued_at != Some(served.issued_at) {
        return Some(Delivery::Issued { version });
    }
    if prior.version == Some(version) {
        return Some(Delivery::Refreshed { version });
    }
    let requested =
        served.rotation_request.is_some() && served.rotation_request != prior.last_rotation_request;
    Some(Delivery::Rotated { version, requested })
}
