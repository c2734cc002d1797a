//! Credential counts per tenant and per integration, kept up to date one credential event
//! at a time, so a Tenant's or an integration's status costs nothing to recount and a
//! credential's own status write reaches its tenant only when it changes a count.

use std::collections::HashMap;

use kube::ResourceExt;

use super::credential::Credential;
use crate::api::{CredentialCounts, CredentialState};

/// What one credential adds to the counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Contribution {
    tenant: Option<String>,
    state: Option<CredentialState>,
    integration: Option<(String, String)>,
}

/// Identifies a credential across both kinds.
type CredentialId = (&'static str, String, String);

/// Counts of credentials by tenant (resolved tenant, by state) and by integration.
#[derive(Debug, Default)]
pub struct Counts {
    contributions: HashMap<CredentialId, Contribution>,
    tenants: HashMap<String, CredentialCounts>,
    integrations: HashMap<(String, String), i64>,
}

/// The tenants and integrations whose counts an update changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changed {
    pub tenants: Vec<String>,
    pub integrations: Vec<(String, String)>,
}

impl Counts {
    /// Records `credential` as it is now (`None`: deleted).
    pub fn update<K: Credential>(
        &mut self,
        kind: &'static str,
        credential: &K,
        live: bool,
    ) -> Changed {
        let id = (
            kind,
            credential.namespace().unwrap_or_default(),
            credential.name_any(),
        );
        let next = live.then(|| Contribution {
            tenant: credential.resolved_tenant().map(str::to_owned),
            state: credential.state(),
            integration: credential
                .integration()
                .map(|pi| (id.1.clone(), pi.to_owned())),
        });
        self.set(id, next)
    }

    /// Forgets a credential that no longer exists.
    pub fn remove(&mut self, kind: &'static str, namespace: &str, name: &str) -> Changed {
        self.set((kind, namespace.to_owned(), name.to_owned()), None)
    }

    fn set(&mut self, id: CredentialId, next: Option<Contribution>) -> Changed {
        let prior = match &next {
            Some(next) => self.contributions.insert(id, next.clone()),
            None => self.contributions.remove(&id),
        };
        if prior == next {
            return Changed::default();
        }
        let mut changed = Changed::default();
        if let Some(prior) = &prior {
            self.count(prior, -1, &mut changed);
        }
        if let Some(next) = &next {
            self.count(next, 1, &mut changed);
        }
        changed.tenants.dedup();
        changed.integrations.dedup();
        changed
    }

    fn count(&mut self, c: &Contribution, by: i64, changed: &mut Changed) {
        if let Some(tenant) = &c.tenant {
            let counts = self.tenants.entry(tenant.clone()).or_default();
            counts.total += by;
            match c.state {
                Some(CredentialState::Active) => counts.active += by,
                Some(CredentialState::Expired) => counts.expired += by,
                Some(CredentialState::Revoked) => counts.revoked += by,
                Some(CredentialState::Invalid) => counts.invalid += by,
                _ => {}
            }
            if counts.total == 0 {
                self.tenants.remove(tenant);
            }
            changed.tenants.push(tenant.clone());
        }
        if let Some(pi) = &c.integration {
            let count = self.integrations.entry(pi.clone()).or_default();
            *count += by;
            if *count == 0 {
                self.integrations.remove(pi);
            }
            changed.integrations.push(pi.clone());
        }
    }

    /// The counts of `tenant`'s credentials.
    pub fn tenant(&self, tenant: &str) -> CredentialCounts {
        self.tenants.get(tenant).copied().unwrap_or_default()
    }

    /// How many credentials reference integration `name` in `namespace`.
    pub fn integration(&self, namespace: &str, name: &str) -> i64 {
        self.integrations
            .get(&(namespace.to_owned(), name.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    /// The credentials of `kind` it holds, to find those a re-list no longer has.
    pub fn known(&self, kind: &'static str) -> Vec<(String, String)> {
        self.contributions
            .keys()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, ns, name)| (ns.clone(), name.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApiKey, ApiKeySpec, ApiKeyStatus};

    fn key(name: &str, tenant: &str, state: CredentialState, pi: Option<&str>) -> ApiKey {
        let mut key = ApiKey::new(
            name,
            ApiKeySpec {
                integration: pi.map(str::to_owned),
                tenant: Some(tenant.to_owned()),
                owner: None,
                secret: None,
                generator: None,
                rotation: None,
                expires_at: None,
                consumers: None,
                vault: None,
            },
        );
        key.metadata.namespace = Some("ns".into());
        key.status = Some(ApiKeyStatus {
            tenant: Some(tenant.to_owned()),
            state: Some(state),
            ..ApiKeyStatus::default()
        });
        key
    }

    #[test]
    fn a_status_write_that_changes_no_count_changes_nothing() {
        let mut counts = Counts::default();
        let a = key("a", "acme", CredentialState::Active, Some("gx"));
        let first = counts.update("ApiKey", &a, true);
        assert_eq!(first.tenants, vec!["acme".to_owned()]);
        assert_eq!(first.integrations, vec![("ns".into(), "gx".into())]);
        assert_eq!(counts.update("ApiKey", &a, true), Changed::default());
        assert_eq!(counts.tenant("acme").active, 1);
        assert_eq!(counts.integration("ns", "gx"), 1);
    }

    #[test]
    fn state_changes_move_counts_and_deletion_removes_them() {
        let mut counts = Counts::default();
        counts.update(
            "ApiKey",
            &key("a", "acme", CredentialState::Active, None),
            true,
        );
        counts.update(
            "ApiKey",
            &key("b", "acme", CredentialState::Active, None),
            true,
        );
        let expired = key("a", "acme", CredentialState::Expired, None);
        assert_eq!(
            counts.update("ApiKey", &expired, true).tenants,
            vec!["acme".to_owned()]
        );
        let c = counts.tenant("acme");
        assert_eq!((c.total, c.active, c.expired), (2, 1, 1));
        counts.update("ApiKey", &expired, false);
        let moved = key("b", "globex", CredentialState::Active, None);
        assert_eq!(
            counts.update("ApiKey", &moved, true).tenants,
            vec!["acme".to_owned(), "globex".to_owned()]
        );
        assert_eq!(counts.tenant("acme"), CredentialCounts::default());
        assert_eq!(counts.tenant("globex").total, 1);
    }
}
