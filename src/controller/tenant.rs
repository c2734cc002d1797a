//! Tenant status: effective state, credential counts and consistency.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::context::Context;
use super::status::{condition, now};
use crate::api::{Tenant, TenantStatus};
use crate::error::{Error, Result};
use crate::policy::tenant::decide;

pub const KIND: &str = "Tenant";

pub async fn reconcile(tenant: Arc<Tenant>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer("tenant");
    let name = tenant.name_any();
    if let Some(ns) = &ctx.namespace
        && !tenant.spec.namespaces.iter().flatten().any(|n| n == ns)
    {
        // Scoped to one namespace: the status of other tenants belongs to another instance.
        return Ok(Action::await_change());
    }
    let now = now();
    let tenancy = ctx.tenancy();
    let decision = decide(&tenancy, &name, now);

    let counts = ctx
        .counts
        .lock()
        .map(|c| c.tenant(&name))
        .unwrap_or_default();

    let prior = tenant.status.clone().unwrap_or_default();
    let generation = tenant.metadata.generation;
    let status = TenantStatus {
        observed_generation: generation,
        effective_state: decision.effective_state,
        credentials: Some(counts),
        conditions: vec![condition(
            "Ready",
            &decision.ready,
            generation,
            &prior.conditions,
            now,
        )],
    };
    if tenant.status.as_ref() != Some(&status) {
        let api: Api<Tenant> = Api::all(ctx.client.clone());
        super::status::apply_status(&api, &name, &status)
            .await
            .map_err(Error::from)?;
        tracing::info!(tenant = name, state = ?status.effective_state, ready = decision.ready.status, "tenant status updated");
    }
    Ok(super::requeue_at(decision.next_due))
}
