//! What a Tenant's status should say at time `t`: effective state and consistency.

use chrono::{DateTime, Utc};

use super::credential::Verdict;
use super::tenancy::Tenancy;
use crate::api::TenantState;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantDecision {
    pub effective_state: Option<TenantState>,
    pub ready: Verdict,
    /// When the effective state changes by itself (an `endsAt` along the chain).
    pub next_due: Option<DateTime<Utc>>,
}

pub fn decide(tenancy: &Tenancy, name: &str, now: DateTime<Utc>) -> TenantDecision {
    let resolved = match tenancy.resolve(name) {
        Ok(r) => r,
        Err(err) => {
            return TenantDecision {
                effective_state: None,
                ready: Verdict::new(false, err.reason(), err.to_string()),
                next_due: None,
            };
        }
    };
    let effective_state = Some(resolved.state_at(now));
    let next_due = resolved
        .ends_at
        .as_ref()
        .map(|(at, _)| *at)
        .filter(|at| *at > now);
    let conflicts = tenancy.conflicts_of(name);
    let ready = if conflicts.is_empty() {
        Verdict::new(true, "Ready", "namespaces and parent chain are consistent")
    } else {
        let list: Vec<String> = conflicts
            .iter()
            .map(|(ns, others)| format!("{ns} (also listed by {})", others.join(", ")))
            .collect();
        Verdict::new(
            false,
            "NamespaceConflict",
            format!(
                "namespaces listed by another tenant are owned by neither: {}",
                list.join("; ")
            ),
        )
    };
    TenantDecision {
        effective_state,
        ready,
        next_due,
    }
}
