//! What a PartnerIntegration is at time `t`: its state, effective expiry and owner binding.

use chrono::{DateTime, Utc};

use super::credential::{OwnerBinding, PriorOwner, Verdict, bind_owner, reason};
use super::tenancy::{NamespaceOwner, Tenancy};
use super::{format_duration, format_time};
use crate::api::{IntegrationState, PartnerIntegration, TenantState};

/// The decision for one PartnerIntegration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrationDecision {
    pub state: IntegrationState,
    pub ready: Verdict,
    pub owner_bound: Verdict,
    pub owner_binding: Option<OwnerBinding>,
    pub expires_at: Option<DateTime<Utc>>,
    pub next_due: Option<DateTime<Utc>>,
}

pub fn decide(
    pi: &PartnerIntegration,
    namespace: &str,
    tenancy: &Tenancy,
    prior_owner: &PriorOwner,
    now: DateTime<Utc>,
) -> IntegrationDecision {
    let spec = &pi.spec;
    let mut out = IntegrationDecision {
        state: IntegrationState::Invalid,
        ready: Verdict::new(false, reason::PENDING, ""),
        owner_bound: Verdict::new(false, reason::PENDING, "owner not resolved yet"),
        owner_binding: None,
        expires_at: spec.expires_at.map(|e| e.0),
        next_due: None,
    };
    let invalid = |mut out: IntegrationDecision, why: &str, message: String| {
        out.state = IntegrationState::Invalid;
        out.ready = Verdict::new(false, why, message);
        out
    };
    let tenant = match tenancy.resolve(&spec.tenant) {
        Ok(t) => t,
        Err(err) => return invalid(out, err.reason(), err.to_string()),
    };
    if let Some((end, _)) = &tenant.ends_at {
        out.expires_at = Some(out.expires_at.map_or(*end, |own| own.min(*end)));
    }
    match tenancy.namespace_owner(namespace) {
        NamespaceOwner::Tenant(t) if t == spec.tenant => {}
        _ => {
            let message = format!(
                "namespace {namespace} is not owned by tenant {}",
                spec.tenant
            );
            return invalid(out, reason::NAMESPACE_NOT_OWNED, message);
        }
    }
    let binding = bind_owner(&spec.owner, &tenant, prior_owner, now);
    out.owner_binding = Some(binding);
    let grace = tenant.policy.owner_grace_period;
    let mut owner_gone = None;
    match binding {
        OwnerBinding::Bound => {
            out.owner_bound = Verdict::new(
                true,
                reason::OWNER_BOUND,
                format!("{} is an owner of tenant {}", spec.owner, spec.tenant),
            );
        }
        OwnerBinding::Missing { since } => {
            let end = super::later(since, grace);
            out.owner_bound = Verdict::new(
                false,
                reason::OWNER_MISSING,
                format!(
                    "{} is no longer an owner of tenant {} (since {}); credentials are revoked at {} unless restored",
                    spec.owner,
                    spec.tenant,
                    format_time(since),
                    format_time(end)
                ),
            );
            if end <= now {
                owner_gone = Some(format!(
                    "owner {} left tenant {} more than {} ago",
                    spec.owner,
                    spec.tenant,
                    format_duration(grace)
                ));
            } else {
                out.next_due = Some(end);
            }
        }
        OwnerBinding::NotInTenant => {
            let message = format!("{} is not an owner of tenant {}", spec.owner, spec.tenant);
            out.owner_bound = Verdict::new(false, reason::OWNER_NOT_IN_TENANT, message.clone());
            return invalid(out, reason::OWNER_NOT_IN_TENANT, message);
        }
    }

    let suspended = |mut out: IntegrationDecision, why: &str, message: String| {
        out.state = IntegrationState::Suspended;
        out.ready = Verdict::new(false, why, message);
        out.next_due = None;
        out
    };
    match tenant.state {
        TenantState::Suspended => {
            let m = format!("tenant {} is Suspended", tenant.state_set_by);
            return suspended(out, reason::TENANT_SUSPENDED, m);
        }
        TenantState::Offboarded => {
            let m = format!("tenant {} is Offboarded", tenant.state_set_by);
            return suspended(out, reason::TENANT_OFFBOARDED, m);
        }
        TenantState::Active => {}
    }
    if spec.suspended.unwrap_or(false) {
        return suspended(
            out,
            reason::INTEGRATION_SUSPENDED,
            "spec.suspended is true".into(),
        );
    }
    if let Some(message) = owner_gone {
        return suspended(out, reason::OWNER_MISSING, message);
    }
    if let Some(at) = out.expires_at {
        if at <= now {
            out.state = IntegrationState::Expired;
            out.ready = Verdict::new(
                false,
                reason::EXPIRED,
                format!("expired at {}", format_time(at)),
            );
            out.next_due = None;
            return out;
        }
        out.next_due = Some(out.next_due.map_or(at, |d| d.min(at)));
    }
    out.state = IntegrationState::Active;
    out.ready = Verdict::new(
        true,
        reason::ACTIVE,
        "credentials of this integration may be issued",
    );
    out
}
