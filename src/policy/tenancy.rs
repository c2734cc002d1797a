//! Tenancy: who owns which namespace, each tenant's effective state and policy along its
//! chain of parents, and the consistency of that chain.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use crate::api::{GoDuration, Tenant, TenantState};

/// Default `ownerGracePeriod`.
pub const DEFAULT_OWNER_GRACE: Duration = Duration::hours(72);
/// Default `staleAfter`.
pub const DEFAULT_STALE_AFTER: Duration = Duration::hours(2160);

/// A tenant's policy after merging its ancestors' (strictest wins) and applying defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectivePolicy {
    pub max_lifetime: Option<Duration>,
    pub max_rotation_interval: Option<Duration>,
    pub require_expiry: bool,
    pub owner_grace_period: Duration,
    pub stale_after: Duration,
}

/// One tenant as the rest of keyward sees it: state and deadlines folded over its ancestry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedTenant {
    pub name: String,
    /// The most severe `spec.state` along the chain (not counting `endsAt`), and the tenant
    /// that set it.
    pub state: TenantState,
    pub state_set_by: String,
    /// The earliest `endsAt` along the chain, and the tenant that set it.
    pub ends_at: Option<(DateTime<Utc>, String)>,
    pub policy: EffectivePolicy,
    /// This tenant's own owners, by name.
    pub owners: BTreeSet<String>,
}

impl ResolvedTenant {
    /// Effective state at `now`: an `endsAt` in the past means Offboarded.
    pub fn state_at(&self, now: DateTime<Utc>) -> TenantState {
        match &self.ends_at {
            Some((ends, _)) if *ends <= now => TenantState::Offboarded,
            _ => self.state,
        }
    }

    pub fn has_owner(&self, owner: &str) -> bool {
        self.owners.contains(owner)
    }
}

/// Why a tenant cannot be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TenancyError {
    #[error("tenant {0} does not exist")]
    NotFound(String),
    #[error("tenant {tenant}: parent {parent} does not exist")]
    MissingParent { tenant: String, parent: String },
    #[error("tenant {tenant}: parent chain is a cycle ({})", cycle.join(" -> "))]
    ParentCycle { tenant: String, cycle: Vec<String> },
    #[error("tenant {tenant}: policy.{field}: {message}")]
    InvalidPolicy {
        tenant: String,
        field: &'static str,
        message: String,
    },
}

impl TenancyError {
    /// The condition reason this error is reported with.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "TenantNotFound",
            Self::MissingParent { .. } | Self::ParentCycle { .. } => "InvalidParent",
            Self::InvalidPolicy { .. } => super::credential::reason::INVALID_SPEC,
        }
    }
}

/// Who owns a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceOwner {
    Unowned,
    Tenant(String),
    /// Listed by several tenants, so owned by none of them.
    Conflict(Vec<String>),
}

impl NamespaceOwner {
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Self::Tenant(t) => Some(t),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Node {
    parent: Option<String>,
    state: TenantState,
    ends_at: Option<DateTime<Utc>>,
    policy: Result<LocalPolicy, TenancyError>,
    owners: BTreeSet<String>,
    namespaces: Vec<String>,
}

#[derive(Clone, Debug, Default)]
struct LocalPolicy {
    max_lifetime: Option<Duration>,
    max_rotation_interval: Option<Duration>,
    require_expiry: bool,
    owner_grace_period: Option<Duration>,
    stale_after: Option<Duration>,
}

/// An index over every Tenant, queried without I/O. It is kept up to date one Tenant at a
/// time (`apply`, `remove`): a change costs what that Tenant lists, not the number of Tenants.
#[derive(Clone, Debug, Default)]
pub struct Tenancy {
    nodes: BTreeMap<String, Node>,
    /// Namespace -> the tenants that list it, sorted.
    namespaces: BTreeMap<String, Vec<String>>,
    /// Parent name (existing or not) -> the tenants that name it as parent.
    children: BTreeMap<String, BTreeSet<String>>,
}
fn parse_policy(tenant: &str, t: &Tenant) -> Result<LocalPolicy, TenancyError> {
    let Some(p) = &t.spec.policy else {
        return Ok(LocalPolicy::default());
    };
    let field =
        |name: &'static str, d: &Option<GoDuration>| -> Result<Option<Duration>, TenancyError> {
            d.as_ref()
                .map(|d| d.parse())
                .transpose()
                .map_err(|e| TenancyError::InvalidPolicy {
                    tenant: tenant.to_owned(),
                    field: name,
                    message: e.to_string(),
                })
        };
    Ok(LocalPolicy {
        max_lifetime: field("maxLifetime", &p.max_lifetime)?,
        max_rotation_interval: field("maxRotationInterval", &p.max_rotation_interval)?,
        require_expiry: p.require_expiry.unwrap_or(false),
        owner_grace_period: field("ownerGracePeriod", &p.owner_grace_period)?,
        stale_after: field("staleAfter", &p.stale_after)?,
    })
}

fn min_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Tenancy {
    pub fn new<'a>(tenants: impl IntoIterator<Item = &'a Tenant>) -> Self {
        let mut tenancy = Self::default();
        for t in tenants {
            tenancy.apply(t);
        }
        tenancy
    }

    /// Adds `t`, or replaces the Tenant of that name.
    pub fn apply(&mut self, t: &Tenant) {
        let Some(name) = t.metadata.name.clone() else {
            return;
        };
        self.remove(&name);
        let mut listed = t.spec.namespaces.clone().unwrap_or_default();
        listed.sort();
        listed.dedup();
        for ns in &listed {
            let claims = self.namespaces.entry(ns.clone()).or_default();
            if let Err(at) = claims.binary_search(&name) {
                claims.insert(at, name.clone());
            }
        }
        if let Some(parent) = &t.spec.parent {
            self.children
                .entry(parent.clone())
                .or_default()
                .insert(name.clone());
        }
        let node = Node {
            parent: t.spec.parent.clone(),
            state: t.spec.state.unwrap_or_default(),
            ends_at: t.spec.ends_at.map(|e| e.0),
            policy: parse_policy(&name, t),
            owners: t.spec.owners.iter().map(|o| o.name.clone()).collect(),
            namespaces: listed,
        };
        self.nodes.insert(name, node);
    }

    /// Forgets the Tenant `name`.
    pub fn remove(&mut self, name: &str) {
        let Some(node) = self.nodes.remove(name) else {
            return;
        };
        for ns in &node.namespaces {
            if let Some(claims) = self.namespaces.get_mut(ns) {
                claims.retain(|c| c != name);
                if claims.is_empty() {
                    self.namespaces.remove(ns);
                }
            }
        }
        if let Some(parent) = &node.parent
            && let Some(children) = self.children.get_mut(parent)
        {
            children.remove(name);
            if children.is_empty() {
                self.children.remove(parent);
            }
        }
    }

    pub fn contains(&self, tenant: &str) -> bool {
        self.nodes.contains_key(tenant)
    }

    /// Every tenant name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// The namespaces a tenant lists in its spec (owned or in conflict).
    pub fn listed_namespaces(&self, tenant: &str) -> &[String] {
        self.nodes
            .get(tenant)
            .map(|n| n.namespaces.as_slice())
            .unwrap_or_default()
    }

    /// Who owns `namespace`.
    pub fn namespace_owner(&self, namespace: &str) -> NamespaceOwner {
        match self.namespaces.get(namespace).map(Vec::as_slice) {
            None | Some([]) => NamespaceOwner::Unowned,
            Some([one]) => NamespaceOwner::Tenant(one.clone()),
            Some(many) => NamespaceOwner::Conflict(many.to_vec()),
        }
    }

    /// Namespaces `tenant` lists that another tenant lists too.
    pub fn conflicts_of(&self, tenant: &str) -> Vec<(String, Vec<String>)> {
        self.listed_namespaces(tenant)
            .iter()
            .filter_map(|ns| match self.namespace_owner(ns) {
                NamespaceOwner::Conflict(all) => Some((
                    ns.clone(),
                    all.into_iter().filter(|t| t != tenant).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    /// The chain from `tenant` up to its root, `tenant` first.
    fn chain(&self, tenant: &str) -> Result<Vec<(&str, &Node)>, TenancyError> {
        let mut chain: Vec<(&str, &Node)> = Vec::new();
        let mut visited: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut current = tenant;
        loop {
            let Some((name, node)) = self.nodes.get_key_value(current) else {
                return Err(match chain.last() {
                    None => TenancyError::NotFound(tenant.to_owned()),
                    Some((child, _)) => TenancyError::MissingParent {
                        tenant: (*child).to_owned(),
                        parent: current.to_owned(),
                    },
                });
            };
            if !visited.insert(name.as_str()) {
                let mut cycle: Vec<String> = chain.iter().map(|(n, _)| (*n).to_owned()).collect();
                cycle.push(name.clone());
                return Err(TenancyError::ParentCycle {
                    tenant: tenant.to_owned(),
                    cycle,
                });
            }
            chain.push((name.as_str(), node));
            match &node.parent {
                Some(parent) => current = parent,
                None => return Ok(chain),
            }
        }
    }

    /// Folds state, deadlines and policy over the tenant's ancestry.
    pub fn resolve(&self, tenant: &str) -> Result<ResolvedTenant, TenancyError> {
        let chain = self.chain(tenant)?;
        let mut state = TenantState::Active;
        let mut state_set_by = tenant.to_owned();
        let mut ends_at: Option<(DateTime<Utc>, String)> = None;
        let mut merged = LocalPolicy::default();
        for (name, node) in &chain {
            if node.state > state {
                state = node.state;
                state_set_by = (*name).to_owned();
            }
            if let Some(end) = node.ends_at
                && ends_at.as_ref().is_none_or(|(e, _)| end < *e)
            {
                ends_at = Some((end, (*name).to_owned()));
            }
            let local = node.policy.clone()?;
            merged = LocalPolicy {
                max_lifetime: min_opt(merged.max_lifetime, local.max_lifetime),
                max_rotation_interval: min_opt(
                    merged.max_rotation_interval,
                    local.max_rotation_interval,
                ),
                require_expiry: merged.require_expiry || local.require_expiry,
                owner_grace_period: min_opt(merged.owner_grace_period, local.owner_grace_period),
                stale_after: min_opt(merged.stale_after, local.stale_after),
            };
        }
        let Some((_, own)) = chain.first() else {
            return Err(TenancyError::NotFound(tenant.to_owned()));
        };
        Ok(ResolvedTenant {
            name: tenant.to_owned(),
            state,
            state_set_by,
            ends_at,
            policy: EffectivePolicy {
                max_lifetime: merged.max_lifetime,
                max_rotation_interval: merged.max_rotation_interval,
                require_expiry: merged.require_expiry,
                owner_grace_period: merged.owner_grace_period.unwrap_or(DEFAULT_OWNER_GRACE),
                stale_after: merged.stale_after.unwrap_or(DEFAULT_STALE_AFTER),
            },
            owners: own.owners.clone(),
        })
    }

    /// `tenant` and every tenant below it (whose chain passes through it), whether or not
    /// `tenant` itself exists: visits only that subtree.
    pub fn subtree(&self, tenant: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut pending = vec![tenant.to_owned()];
        while let Some(current) = pending.pop() {
            if !out.insert(current.clone()) {
                continue; // a cycle
            }
            if let Some(children) = self.children.get(&current) {
                pending.extend(children.iter().filter(|c| !out.contains(*c)).cloned());
            }
        }
        out.retain(|name| self.nodes.contains_key(name));
        out
    }

    /// The tenants that list one of `namespaces`.
    pub fn claimants<'a>(
        &self,
        namespaces: impl IntoIterator<Item = &'a String>,
    ) -> BTreeSet<String> {
        namespaces
            .into_iter()
            .filter_map(|ns| self.namespaces.get(ns))
            .flatten()
            .cloned()
            .collect()
    }
}
