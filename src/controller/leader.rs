//! Leader election (`--leader-elect`) through a coordination.k8s.io Lease: replicas keep
//! their caches warm, and only the holder of the Lease reconciles, so only it writes.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, Result as LeaseResult};
use tokio::sync::watch;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    pub namespace: String,
    pub name: String,
    /// How long a Lease outlives its holder's last renewal.
    pub duration: Duration,
}

/// Holds the Lease until dropped.
pub struct Leadership {
    state: watch::Receiver<bool>,
}

impl Leadership {
    /// Waits until this process holds the Lease.
    pub async fn acquire(client: Client, options: &LeaseOptions) -> LeaseResult<Self> {
        let seconds = options.duration.as_secs().max(2);
        let manager = LeaseManagerBuilder::new(client, options.name.clone())
            .with_namespace(options.namespace.clone())
            .with_duration(seconds)
            // Renew a third of the duration before it runs out.
            .with_grace((seconds / 3).max(1))
            .with_field_manager("keyward")
            .build()
            .await?;
        let (mut state, _task) = manager.watch().await;
        tracing::info!(
            lease = options.name,
            namespace = options.namespace,
            "waiting for leadership"
        );
        while !*state.borrow_and_update() {
            if state.changed().await.is_err() {
                // The renewal task ended before this process held the Lease: it never
                // became leader, and must not act as one.
                return Err(kube_lease_manager::LeaseManagerError::InconsistentState(
                    "the Lease renewal task ended before the Lease was held".into(),
                ));
            }
        }
        tracing::info!(lease = options.name, "became leader");
        Ok(Self { state })
    }

    /// Resolves when the Lease is lost (or its renewal task ended).
    pub async fn lost(&mut self) {
        loop {
            if !*self.state.borrow_and_update() {
                return;
            }
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }
}
