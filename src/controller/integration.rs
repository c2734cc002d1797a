//! PartnerIntegration status: state, effective expiry, owner binding, credential count.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;

use super::context::Context;
use super::status::{condition, now, prior_owner};
use crate::api::{PartnerIntegration, PartnerIntegrationStatus, Timestamp};
use crate::error::{Error, Result};
use crate::policy::integration::decide;

pub const KIND: &str = "PartnerIntegration";

pub async fn reconcile(pi: Arc<PartnerIntegration>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_timer("partnerintegration");
    let name = pi.name_any();
    let namespace = pi.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let now = now();
    let tenancy = ctx.tenancy();
    let prior = pi.status.clone().unwrap_or_default();
    // The status does not record which owner the OwnerBound condition was about, so a
    // change of owner in the spec carries the binding (and a running grace clock) over.
    let owner_prior = prior_owner(&prior.conditions, Some(&pi.spec.owner));
    let decision = decide(&pi, &namespace, &tenancy, &owner_prior, now);

    let credentials = ctx
        .counts
        .lock()
        .map(|c| c.integration(&namespace, &name))
        .unwrap_or_default();
    let generation = pi.metadata.generation;
    let status = PartnerIntegrationStatus {
        observed_generation: generation,
        state: Some(decision.state),
        expires_at: decision.expires_at.map(Timestamp),
        credentials: Some(credentials),
        conditions: vec![
            condition("Ready", &decision.ready, generation, &prior.conditions, now),
            condition(
                "OwnerBound",
                &decision.owner_bound,
                generation,
                &prior.conditions,
                now,
            ),
        ],
    };
    if pi.status.as_ref() != Some(&status) {
        let api: Api<PartnerIntegration> = Api::namespaced(ctx.client.clone(), &namespace);
        super::status::apply_status(&api, &name, &status)
            .await
            .map_err(Error::from)?;
        tracing::info!(namespace, name, state = ?decision.state, "integration status updated");
    }
    Ok(super::requeue_at(decision.next_due))
}
