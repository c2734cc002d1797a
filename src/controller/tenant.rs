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
        && !sole_namespace(&tenant, ns)
    {
        // Scoped to one namespace, this instance sees only that namespace's credentials:
        // it writes the status (and so the counts) of a tenant whose one namespace it is,
        // and leaves every other tenant to a cluster-wide instance, so that instances never
        // overwrite each other's partial counts.
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

/// Whether `namespace` is the only namespace `tenant` lists.
fn sole_namespace(tenant: &Tenant, namespace: &str) -> bool {
    let mut listed = tenant.spec.namespaces.iter().flatten();
    listed.next().is_some_and(|n| n == namespace) && listed.all(|n| n == namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(namespaces: &[&str]) -> Tenant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "keyward.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": "acme"},
            "spec": {"namespaces": namespaces, "owners": [{"name": "alice", "kind": "User"}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_namespaced_instance_writes_only_the_status_of_a_tenant_it_sees_whole() {
        assert!(sole_namespace(&tenant(&["a"]), "a"));
        assert!(!sole_namespace(&tenant(&["a", "b"]), "a"));
        assert!(!sole_namespace(&tenant(&["b"]), "a"));
        assert!(!sole_namespace(&tenant(&[]), "a"));
    }
}
