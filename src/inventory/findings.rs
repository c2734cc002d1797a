//! PURE: the inventory's findings, computed from projections (Secrets and ServiceAccounts,
//! managed credentials, RBAC, value copies) and the tenancy at one instant. No I/O.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::credential::ManagedCredential;
use super::object::{Class, Controllers, InventoryObject, ObjectKind};
use super::rbac::Rbac;
use super::scan::ValueCopy;
use crate::api::{CredentialState, TenantState};
use crate::policy::tenancy::{DEFAULT_STALE_AFTER, NamespaceOwner, Tenancy};
use crate::policy::{format_duration, format_time};

/// Every ServiceAccount of a namespace is created with this name by Kubernetes and comes
/// back when deleted, so it is nobody's leftover.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// The contract's finding names. Declared in the order a security engineer reads them:
/// most severe first.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[value(rename_all = "PascalCase")]
pub enum FindingKind {
    CrossTenant,
    OrphanedByOffboarding,
    Expired,
    Revoked,
    Invalid,
    Stale,
    Unowned,
}

impl FindingKind {
    /// Every kind, in declaration order (so `ALL[k as usize] == k`).
    pub const ALL: [FindingKind; 7] = [
        Self::CrossTenant,
        Self::OrphanedByOffboarding,
        Self::Expired,
        Self::Revoked,
        Self::Invalid,
        Self::Stale,
        Self::Unowned,
    ];

    /// The name of the contract (and of the metric's `finding` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrossTenant => "CrossTenant",
            Self::OrphanedByOffboarding => "OrphanedByOffboarding",
            Self::Expired => "Expired",
            Self::Revoked => "Revoked",
            Self::Invalid => "Invalid",
            Self::Stale => "Stale",
            Self::Unowned => "Unowned",
        }
    }

    /// 0 is the most severe. A value reachable from another tenant comes first, then
    /// credentials left behind by a dead relationship, then managed credentials that no
    /// longer work, then hygiene.
    pub fn severity(self) -> u8 {
        match self {
            Self::CrossTenant => 0,
            Self::OrphanedByOffboarding => 1,
            Self::Expired | Self::Revoked | Self::Invalid => 2,
            Self::Stale => 3,
            Self::Unowned => 4,
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding about one object. Serializes as the contract's JSON object; `at` (the time
/// the finding is about, for display) is not part of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub finding: FindingKind,
    /// The tenant that owns `namespace`; `None` when no tenant does (or for a
    /// cluster-scoped object).
    pub tenant: Option<String>,
    /// `None` for a cluster-scoped object (a ClusterRoleBinding).
    pub namespace: Option<String>,
    pub kind: String,
    pub name: String,
    pub message: String,
    #[serde(skip)]
    pub at: Option<DateTime<Utc>>,
}

impl Finding {
    fn sort_key(&self) -> impl Ord + '_ {
        (
            self.finding.severity(),
            self.tenant.as_deref(),
            self.namespace.as_deref(),
            &self.kind,
            &self.name,
            self.finding,
            &self.message,
        )
    }
}

/// Everything the findings are computed from.
pub struct Inputs<'a, O> {
    pub tenancy: &'a Tenancy,
    /// Every inventoried Secret and ServiceAccount.
    pub objects: O,
    /// The keyward objects that exist: what makes an object managed.
    pub controllers: &'a Controllers,
    pub credentials: &'a [ManagedCredential],
    pub rbac: &'a Rbac,
    /// What the last value-copy scan found.
    pub copies: &'a [ValueCopy],
}

/// The findings at one instant, most severe first, and the next instant at which time alone
/// changes them (an object turning stale, a tenant's `endsAt` passing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
    pub next_change: Option<DateTime<Utc>>,
}

/// What the findings need to know about a namespace.
struct NamespaceView {
    owner: NamespaceOwner,
    offboarded: bool,
    stale_after: Duration,
    ends_at: Option<DateTime<Utc>>,
}

impl NamespaceView {
    fn tenant(&self) -> Option<&str> {
        self.owner.tenant()
    }
}

/// Namespace views, resolved once per namespace rather than once per object.
struct Namespaces<'a> {
    tenancy: &'a Tenancy,
    now: DateTime<Utc>,
    cache: HashMap<String, Rc<NamespaceView>>,
}

impl<'a> Namespaces<'a> {
    fn new(tenancy: &'a Tenancy, now: DateTime<Utc>) -> Self {
        Self {
            tenancy,
            now,
            cache: HashMap::new(),
        }
    }

    fn get(&mut self, namespace: &str) -> Rc<NamespaceView> {
        if let Some(view) = self.cache.get(namespace) {
            return view.clone();
        }
        let owner = self.tenancy.namespace_owner(namespace);
        // A tenant whose chain cannot be resolved (a cycle, a missing parent, a bad policy)
        // is not known to be offboarded, and its staleAfter falls back to the default.
        let resolved = owner.tenant().and_then(|t| self.tenancy.resolve(t).ok());
        let view = Rc::new(NamespaceView {
            offboarded: resolved
                .as_ref()
                .is_some_and(|r| r.state_at(self.now) == TenantState::Offboarded),
            stale_after: resolved
                .as_ref()
                .map_or(DEFAULT_STALE_AFTER, |r| r.policy.stale_after),
            ends_at: resolved
                .as_ref()
                .and_then(|r| r.ends_at.as_ref().map(|e| e.0)),
            owner,
        });
        self.cache.insert(namespace.to_owned(), view.clone());
        view
    }
}

/// Computes every finding at `now`.
pub fn evaluate<'a, O>(inputs: Inputs<'a, O>, now: DateTime<Utc>) -> Evaluation
where
    O: IntoIterator<Item = &'a InventoryObject>,
{
    let mut out = Evaluation::default();
    walk(inputs, now, &mut out);
    sort(&mut out.findings);
    out
}

/// Counts the findings at `now` without building them: what the metric needs, without a
/// message per finding (a large cluster can have tens of thousands).
pub fn count<'a, O>(inputs: Inputs<'a, O>, now: DateTime<Utc>) -> Counts
where
    O: IntoIterator<Item = &'a InventoryObject>,
{
    let mut out = Counts::default();
    walk(inputs, now, &mut out);
    out
}

fn walk<'a, O, C>(inputs: Inputs<'a, O>, now: DateTime<Utc>, out: &mut C)
where
    O: IntoIterator<Item = &'a InventoryObject>,
    C: Collector,
{
    let mut namespaces = Namespaces::new(inputs.tenancy, now);
    for object in inputs.objects {
        inventoried(object, inputs.controllers, &mut namespaces, out, now);
    }
    for credential in inputs.credentials {
        managed(credential, inputs.copies, &mut namespaces, out);
    }
    rbac(inputs.rbac, inputs.tenancy, &mut namespaces, out);
    for view in namespaces.cache.values() {
        if let Some(end) = view.ends_at.filter(|e| *e > now) {
            out.due(end);
        }
    }
}

/// Where findings go: kept whole (the report) or only counted (the metric).
trait Collector {
    fn add(&mut self, finding: FindingKind, tenant: Option<&str>, build: impl FnOnce() -> Finding);
    /// Time alone changes the findings at `t`.
    fn due(&mut self, t: DateTime<Utc>);
}

impl Collector for Evaluation {
    fn add(&mut self, _: FindingKind, _: Option<&str>, build: impl FnOnce() -> Finding) {
        self.findings.push(build());
    }

    fn due(&mut self, t: DateTime<Utc>) {
        soonest(&mut self.next_change, t);
    }
}

/// Finding counts per tenant, and the next instant at which time alone changes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    by_tenant: HashMap<String, [i64; FindingKind::ALL.len()]>,
    without_tenant: [i64; FindingKind::ALL.len()],
    pub next_change: Option<DateTime<Utc>>,
}

impl Counts {
    /// Non-zero counts per `(tenant, finding)`, as `Metrics::set_findings` takes them.
    pub fn series(&self) -> Vec<((Option<String>, String), i64)> {
        let tenants = self
            .by_tenant
            .iter()
            .map(|(t, counts)| (Some(t.clone()), counts))
            .chain(std::iter::once((None, &self.without_tenant)));
        let mut out = Vec::new();
        for (tenant, counts) in tenants {
            for (kind, n) in FindingKind::ALL.iter().zip(counts) {
                if *n > 0 {
                    out.push(((tenant.clone(), kind.as_str().to_owned()), *n));
                }
            }
        }
        out.sort();
        out
    }
}

impl Collector for Counts {
    fn add(&mut self, finding: FindingKind, tenant: Option<&str>, _: impl FnOnce() -> Finding) {
        let counts = match tenant {
            Some(t) => match self.by_tenant.get_mut(t) {
                Some(counts) => counts,
                None => self.by_tenant.entry(t.to_owned()).or_default(),
            },
            None => &mut self.without_tenant,
        };
        if let Some(count) = counts.get_mut(finding as usize) {
            *count += 1;
        }
    }

    fn due(&mut self, t: DateTime<Utc>) {
        soonest(&mut self.next_change, t);
    }
}

/// Most severe first; then by tenant, namespace, kind and name.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
}

fn soonest(slot: &mut Option<DateTime<Utc>>, t: DateTime<Utc>) {
    if slot.is_none_or(|s| t < s) {
        *slot = Some(t);
    }
}

/// Orphaned, Unowned and Stale findings on a Secret or ServiceAccount.
fn inventoried<C: Collector>(
    object: &InventoryObject,
    controllers: &Controllers,
    namespaces: &mut Namespaces<'_>,
    out: &mut C,
    now: DateTime<Utc>,
) {
    let view = namespaces.get(&object.namespace);
    let class = object.class(controllers);
    // Outside tenant namespaces nobody's policy applies (kube-system, the platform's own).
    let Some(tenant) = view.tenant() else {
        return;
    };
    let is_default_sa =
        object.kind == ObjectKind::ServiceAccount && &*object.name == DEFAULT_SERVICE_ACCOUNT;
    let finding = |finding, message: String, at| Finding {
        finding,
        tenant: Some(tenant.to_owned()),
        namespace: Some(object.namespace.to_string()),
        kind: object.kind.as_str().to_owned(),
        name: object.name.to_string(),
        message,
        at,
    };
    if view.offboarded {
        // In a dead relationship's namespace everything left is to be removed; whether it
        // is also unowned or stale no longer matters.
        if !is_default_sa {
            let since = view
                .ends_at
                .filter(|e| *e <= now)
                .map(|e| format!(" (endsAt {})", format_time(e)))
                .unwrap_or_default();
            out.add(FindingKind::OrphanedByOffboarding, Some(tenant), || {
                finding(
                    FindingKind::OrphanedByOffboarding,
                    format!(
                        "{} {} left in namespace {} of tenant {tenant}, which is Offboarded{since}",
                        class.as_str(),
                        object.kind.as_str(),
                        object.namespace
                    ),
                    object.last_write,
                )
            });
        }
        return;
    }
    if object.kind != ObjectKind::Secret {
        return;
    }
    let stale_after = view.stale_after;
    match class {
        Class::Managed => {}
        Class::Unmanaged => {
            if !object.has_owner {
                out.add(FindingKind::Unowned, Some(tenant), || finding(
                    FindingKind::Unowned,
                    format!(
                        "unmanaged Secret without a keyward.io/owner annotation in namespace {} of tenant {tenant}",
                        object.namespace
                    ),
                    object.last_write,
                ));
            }
            if let Some(written) = object.last_write {
                if crate::policy::later(written, stale_after) < now {
                    out.add(FindingKind::Stale, Some(tenant), || finding(
                        FindingKind::Stale,
                        format!(
                            "unmanaged Secret not written since {} (staleAfter {} of tenant {tenant})",
                            format_time(written),
                            format_duration(stale_after)
                        ),
                        Some(written),
                    ));
                } else {
                    out.due(crate::policy::later(written, stale_after));
                }
            }
        }
        Class::LegacySaToken => {
            // A token never used since the API server started tracking use counts from its
            // last write: that is when it could first have been used.
            let (used, what) = match (object.last_used_by(), object.last_used) {
                (Some(by), Some(date)) => (Some(by), format!("last used on {date}")),
                _ => (
                    object.last_write,
                    format!(
                        "never used, not written since {}",
                        object.last_write.map(format_time).unwrap_or_default()
                    ),
                ),
            };
            if let Some(used) = used {
                if crate::policy::later(used, stale_after) < now {
                    out.add(FindingKind::Stale, Some(tenant), || finding(
                        FindingKind::Stale,
                        format!(
                            "legacy ServiceAccount token {what} (staleAfter {} of tenant {tenant})",
                            format_duration(stale_after)
                        ),
                        Some(used),
                    ));
                } else {
                    out.due(crate::policy::later(used, stale_after));
                }
            }
        }
    }
}

/// Expired, Revoked, Invalid and CrossTenant findings on a managed credential.
fn managed<C: Collector>(
    credential: &ManagedCredential,
    copies: &[ValueCopy],
    namespaces: &mut Namespaces<'_>,
    out: &mut C,
) {
    let view = namespaces.get(&credential.namespace);
    let kind = credential.kind.as_str();
    let finding = |finding, message: String, at| Finding {
        finding,
        tenant: view.tenant().map(str::to_owned),
        namespace: Some(credential.namespace.clone()),
        kind: kind.to_owned(),
        name: credential.name.clone(),
        message,
        at,
    };
    let state = match credential.state {
        Some(CredentialState::Expired) => Some((FindingKind::Expired, "Expired")),
        Some(CredentialState::Revoked) => Some((FindingKind::Revoked, "Revoked")),
        Some(CredentialState::Invalid) => Some((FindingKind::Invalid, "Invalid")),
        _ => None,
    };
    if let Some((found, state)) = state {
        let why = || match (&credential.reason, &credential.message) {
            (Some(r), Some(m)) if !m.is_empty() => format!(" ({r}): {m}"),
            (Some(r), _) => format!(" ({r})"),
            _ => String::new(),
        };
        let at = (found == FindingKind::Expired)
            .then_some(credential.expires_at)
            .flatten();
        out.add(found, view.tenant(), || {
            finding(found, format!("{kind} is {state}{}", why()), at)
        });
    }

    // The tenant the credential belongs to. Without one (an unresolvable integration and no
    // spec.tenant), or when it names no existing tenant (Invalid: TenantNotFound), nothing
    // says which namespaces are foreign to it.
    let Some(own) = credential
        .tenant
        .as_deref()
        .filter(|t| namespaces.tenancy.contains(t))
    else {
        return;
    };
    if view.tenant() != Some(own) {
        out.add(FindingKind::CrossTenant, view.tenant(), || {
            finding(
                FindingKind::CrossTenant,
                format!(
                    "{kind} belongs to tenant {own}, but namespace {} {}",
                    credential.namespace,
                    owned_by(&view.owner)
                ),
                None,
            )
        });
    }
    let Some(fingerprint) = credential.fingerprint.as_deref() else {
        return;
    };
    for copy in copies.iter().filter(|c| c.fingerprint == fingerprint) {
        let there = namespaces.get(&copy.namespace);
        if there.tenant() == Some(own) {
            continue;
        }
        out.add(FindingKind::CrossTenant, view.tenant(), || finding(
            FindingKind::CrossTenant,
            format!(
                "the value of {kind} {}/{} (tenant {own}) is present in Secret {}/{} (key {:?}); namespace {} {}",
                credential.namespace,
                credential.name,
                copy.namespace,
                copy.secret,
                copy.key,
                copy.namespace,
                owned_by(&there.owner)
            ),
            None,
        ));
    }
}

fn owned_by(owner: &NamespaceOwner) -> String {
    match owner {
        NamespaceOwner::Unowned => "is owned by no tenant".to_owned(),
        NamespaceOwner::Tenant(t) => format!("is owned by tenant {t}"),
        NamespaceOwner::Conflict(all) => format!(
            "is listed by several tenants ({}) and owned by none",
            all.join(", ")
        ),
    }
}

/// CrossTenant findings on bindings that hand Secret read to another tenant's
/// ServiceAccounts.
fn rbac<C: Collector>(
    rbac: &Rbac,
    tenancy: &Tenancy,
    namespaces: &mut Namespaces<'_>,
    out: &mut C,
) {
    // Tenants that own at least one namespace: those a cluster-wide grant can read from.
    let owning: BTreeSet<&str> = tenancy
        .names()
        .filter(|t| {
            tenancy
                .listed_namespaces(t)
                .iter()
                .any(|ns| tenancy.namespace_owner(ns).tenant() == Some(*t))
        })
        .collect();
    for binding in &rbac.bindings {
        if !rbac.reads_secrets(&binding.role) {
            continue;
        }
        let here = binding.namespace.as_deref().map(|ns| namespaces.get(ns));
        let foreign: Vec<String> = binding
            .grantees
            .iter()
            .filter_map(|grantee| {
                let theirs = namespaces.get(grantee.namespace());
                let theirs = theirs.tenant()?;
                let foreign = match &here {
                    // A RoleBinding in a tenant's namespace reads that tenant's Secrets.
                    Some(view) => view.tenant().is_some_and(|t| t != theirs),
                    // A ClusterRoleBinding reads every namespace, so every other tenant's.
                    None => owning.iter().any(|t| *t != theirs),
                };
                foreign.then(|| format!("{} of tenant {theirs}", grantee.describe()))
            })
            .collect();
        if foreign.is_empty() {
            continue;
        }
        let (tenant, whose) = match (&binding.namespace, &here) {
            (Some(ns), Some(view)) => (
                view.tenant().map(str::to_owned),
                format!(
                    "Secrets of namespace {ns} (tenant {})",
                    view.tenant().unwrap_or_default()
                ),
            ),
            _ => (
                None,
                "Secrets of every namespace (other tenants' included)".to_owned(),
            ),
        };
        out.add(FindingKind::CrossTenant, tenant.as_deref(), || Finding {
            finding: FindingKind::CrossTenant,
            tenant: tenant.clone(),
            namespace: binding.namespace.clone(),
            kind: binding.kind().to_owned(),
            name: binding.name.clone(),
            message: format!(
                "grants read of {whose} through {} to {}",
                binding.role.describe(),
                foreign.join("; ")
            ),
            at: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Tenant;
    use crate::inventory::credential::CredentialKind;
    use crate::inventory::object::{KeywardController, ManagedLabels, SecretType, uid_number};
    use crate::inventory::rbac::{Binding, Grantee, RoleKey};
    use chrono::NaiveDate;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn now() -> DateTime<Utc> {
        at("2026-06-01T00:00:00Z")
    }

    fn tenant(name: &str, spec: serde_json::Value) -> Tenant {
        let mut full = json!({"owners": [{"name": "alice", "kind": "User"}]});
        for (k, v) in spec.as_object().cloned().unwrap_or_default() {
            full[k] = v;
        }
        serde_json::from_value(json!({
            "apiVersion": "keyward.io/v1alpha1", "kind": "Tenant",
            "metadata": {"name": name}, "spec": full,
        }))
        .unwrap()
    }

    /// acme owns a1 and a2 (staleAfter 720h), globex owns g1, gone (offboarded) owns o1,
    /// and x is listed by both acme and globex.
    fn tenancy() -> Tenancy {
        Tenancy::new(&[
            tenant(
                "acme",
                json!({"namespaces": ["a1", "a2", "x"], "policy": {"staleAfter": "720h"}}),
            ),
            tenant("globex", json!({"namespaces": ["g1", "x"]})),
            tenant("gone", json!({"namespaces": ["o1"], "state": "Offboarded"})),
            tenant(
                "ending",
                json!({"namespaces": ["e1"], "endsAt": "2026-05-01T00:00:00Z"}),
            ),
            tenant(
                "later",
                json!({"namespaces": ["l1"], "endsAt": "2026-07-01T00:00:00Z"}),
            ),
        ])
    }

    fn secret(ns: &str, name: &str) -> InventoryObject {
        InventoryObject {
            kind: ObjectKind::Secret,
            namespace: ns.into(),
            name: name.into(),
            uid: uid_number(&format!("{ns}/{name}")),
            secret_type: Some(SecretType::Other),
            keyward: None,
            has_owner: true,
            last_write: Some(at("2026-05-30T00:00:00Z")),
            last_used: None,
            version: 0,
        }
    }

    /// A controller reference to the ApiKey with `uid`.
    fn controlled_by(uid: &str) -> Box<KeywardController> {
        Box::new(KeywardController {
            kind: CredentialKind::ApiKey,
            uid: uid_number(uid),
            labels: ManagedLabels {
                tenant: Some("acme".into()),
                credential: Some("k".into()),
            },
        })
    }

    fn service_account(ns: &str, name: &str) -> InventoryObject {
        InventoryObject {
            kind: ObjectKind::ServiceAccount,
            secret_type: None,
            has_owner: false,
            ..secret(ns, name)
        }
    }

    fn key(ns: &str, name: &str, tenant: &str) -> ManagedCredential {
        ManagedCredential {
            kind: CredentialKind::ApiKey,
            namespace: ns.into(),
            name: name.into(),
            tenant: Some(tenant.into()),
            owner: Some("alice".into()),
            state: Some(CredentialState::Active),
            version: Some(1),
            fingerprint: Some(format!("sha256:{name}")),
            expires_at: None,
            last_rotated_at: None,
            reason: Some("Active".into()),
            message: Some(String::new()),
        }
    }

    struct World {
        tenancy: Tenancy,
        objects: Vec<InventoryObject>,
        controllers: Controllers,
        credentials: Vec<ManagedCredential>,
        rbac: Rbac,
        copies: Vec<ValueCopy>,
    }

    impl World {
        fn new() -> Self {
            Self {
                tenancy: tenancy(),
                objects: Vec::new(),
                controllers: Controllers::default(),
                credentials: Vec::new(),
                rbac: Rbac::default(),
                copies: Vec::new(),
            }
        }

        /// Adds `object` controlled by an ApiKey that exists.
        fn push_managed(&mut self, object: InventoryObject) {
            let uid = format!("key-of-{}/{}", object.namespace, object.name);
            self.controllers
                .insert(CredentialKind::ApiKey, Some(&object.namespace), Some(&uid));
            self.objects.push(InventoryObject {
                keyward: Some(controlled_by(&uid)),
                ..object
            });
        }

        fn evaluate(&self) -> Evaluation {
            evaluate(
                Inputs {
                    tenancy: &self.tenancy,
                    objects: &self.objects,
                    controllers: &self.controllers,
                    credentials: &self.credentials,
                    rbac: &self.rbac,
                    copies: &self.copies,
                },
                now(),
            )
        }

        /// `(finding, tenant, namespace, kind, name)` of every finding.
        fn found(&self) -> Vec<Row> {
            self.evaluate()
                .findings
                .into_iter()
                .map(|f| (f.finding, f.tenant, f.namespace, f.kind, f.name))
                .collect()
        }
    }

    /// `(finding, tenant, namespace, kind, name)` of a finding.
    type Row = (FindingKind, Option<String>, Option<String>, String, String);

    fn row(
        finding: FindingKind,
        tenant: Option<&str>,
        ns: Option<&str>,
        kind: &str,
        name: &str,
    ) -> Row {
        (
            finding,
            tenant.map(Into::into),
            ns.map(Into::into),
            kind.into(),
            name.into(),
        )
    }

    #[test]
    fn a_tidy_world_has_no_findings() {
        let mut w = World::new();
        w.objects.push(secret("a1", "owned-and-fresh"));
        w.objects.push(service_account("a1", "builder"));
        w.credentials.push(key("a1", "k", "acme"));
        assert_eq!(w.found(), vec![]);
    }

    #[test]
    fn expired_revoked_and_invalid_credentials_are_findings_on_the_credential() {
        let mut w = World::new();
        for (name, state, reason) in [
            ("exp", CredentialState::Expired, "Expired"),
            ("rev", CredentialState::Revoked, "TenantSuspended"),
            ("inv", CredentialState::Invalid, "OwnerNotInTenant"),
            ("pending", CredentialState::Pending, "Pending"),
        ] {
            let mut k = key("a1", name, "acme");
            k.state = Some(state);
            k.reason = Some(reason.into());
            k.message = Some(format!("because {reason}"));
            k.expires_at = Some(at("2026-05-01T00:00:00Z"));
            w.credentials.push(k);
        }
        let found = w.evaluate().findings;
        let got: Vec<_> = found
            .iter()
            .map(|f| (f.finding, f.name.as_str(), f.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    FindingKind::Expired,
                    "exp",
                    "ApiKey is Expired (Expired): because Expired"
                ),
                (
                    FindingKind::Invalid,
                    "inv",
                    "ApiKey is Invalid (OwnerNotInTenant): because OwnerNotInTenant"
                ),
                (
                    FindingKind::Revoked,
                    "rev",
                    "ApiKey is Revoked (TenantSuspended): because TenantSuspended"
                ),
            ]
        );
        assert!(found.iter().all(|f| f.tenant.as_deref() == Some("acme")));
        assert_eq!(found[0].at, Some(at("2026-05-01T00:00:00Z")));
    }

    #[test]
    fn unmanaged_secret_without_owner_in_a_tenant_namespace_is_unowned() {
        let mut w = World::new();
        let mut plain = secret("a1", "plain");
        plain.has_owner = false;
        w.objects.push(plain.clone());
        // Outside tenant namespaces, and for managed Secrets, it is not a finding.
        w.objects.push(InventoryObject {
            namespace: "kube-system".into(),
            ..plain.clone()
        });
        w.push_managed(InventoryObject {
            name: "ours".into(),
            ..plain.clone()
        });
        // Nor for ServiceAccounts, which the contract's Unowned does not cover.
        w.objects.push(service_account("a1", "robot"));
        assert_eq!(
            w.found(),
            vec![row(
                FindingKind::Unowned,
                Some("acme"),
                Some("a1"),
                "Secret",
                "plain"
            )]
        );
    }

    #[test]
    fn a_secret_claiming_a_keyward_object_that_does_not_exist_is_unowned_and_stale() {
        let mut w = World::new();
        // What keyward's label and a controller reference to a deleted (or made-up) ApiKey
        // look like: no existing keyward object controls it.
        w.objects.push(InventoryObject {
            has_owner: false,
            last_write: Some(at("2025-01-01T00:00:00Z")),
            keyward: Some(controlled_by("no-such-key")),
            ..secret("a1", "posing")
        });
        assert_eq!(
            w.found(),
            vec![
                row(
                    FindingKind::Stale,
                    Some("acme"),
                    Some("a1"),
                    "Secret",
                    "posing"
                ),
                row(
                    FindingKind::Unowned,
                    Some("acme"),
                    Some("a1"),
                    "Secret",
                    "posing"
                ),
            ]
        );
        // Once that ApiKey exists, the same Secret is managed.
        w.controllers
            .insert(CredentialKind::ApiKey, Some("a1"), Some("no-such-key"));
        assert_eq!(w.found(), vec![]);
    }

    #[test]
    fn unmanaged_secret_not_written_for_longer_than_stale_after_is_stale() {
        let mut w = World::new();
        // acme: staleAfter 720h (30 days); globex: the default 2160h (90 days).
        let old = |ns: &str, name: &str, written: &str| InventoryObject {
            last_write: Some(at(written)),
            ..secret(ns, name)
        };
        w.objects
            .push(old("a1", "forty-days", "2026-04-22T00:00:00Z"));
        w.objects
            .push(old("a1", "twenty-days", "2026-05-12T00:00:00Z"));
        w.objects
            .push(old("g1", "forty-days", "2026-04-22T00:00:00Z"));
        w.objects
            .push(old("g1", "hundred-days", "2026-02-21T00:00:00Z"));
        w.push_managed(old("a1", "managed-old", "2025-01-01T00:00:00Z"));
        let eval = w.evaluate();
        let got: Vec<_> = eval
            .findings
            .iter()
            .map(|f| (f.finding, f.namespace.clone().unwrap(), f.name.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (FindingKind::Stale, "a1".into(), "forty-days".into()),
                (FindingKind::Stale, "g1".into(), "hundred-days".into()),
            ]
        );
        assert!(
            eval.findings[0]
                .message
                .contains("staleAfter 720h of tenant acme")
        );
        // The next object to turn stale: twenty-days at 2026-06-11.
        assert_eq!(eval.next_change, Some(at("2026-06-11T00:00:00Z")));
    }

    #[test]
    fn legacy_token_is_stale_by_its_last_used_date() {
        let mut w = World::new();
        let token = |name: &str, used: Option<&str>| InventoryObject {
            secret_type: Some(SecretType::ServiceAccountToken),
            has_owner: false,
            last_used: used.map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap()),
            version: 0,
            ..secret("a1", name)
        };
        w.objects.push(token("used-long-ago", Some("2026-01-01")));
        w.objects.push(token("used-yesterday", Some("2026-05-31")));
        // Written two days ago and never used: not stale yet.
        w.objects.push(token("never-used", None));
        let mut never_old = token("never-used-old", None);
        never_old.last_write = Some(at("2025-01-01T00:00:00Z"));
        w.objects.push(never_old);
        let eval = w.evaluate();
        let got: Vec<_> = eval
            .findings
            .iter()
            .map(|f| (f.finding, f.name.as_str(), f.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    FindingKind::Stale,
                    "never-used-old",
                    "legacy ServiceAccount token never used, not written since 2025-01-01T00:00:00Z (staleAfter 720h of tenant acme)"
                ),
                (
                    FindingKind::Stale,
                    "used-long-ago",
                    "legacy ServiceAccount token last used on 2026-01-01 (staleAfter 720h of tenant acme)"
                ),
            ],
            "a legacy token is not Unowned: that finding is about unmanaged Secrets"
        );
    }

    #[test]
    fn legacy_token_used_within_the_last_day_counts_as_used_that_whole_day() {
        let mut w = World::new();
        // Used on 2026-05-01 means used until 2026-05-02 at the latest: 30 days before now
        // is 2026-05-02, so it is exactly at the limit and not stale.
        w.objects.push(InventoryObject {
            secret_type: Some(SecretType::ServiceAccountToken),
            last_used: NaiveDate::from_ymd_opt(2026, 5, 1),
            version: 0,
            ..secret("a1", "edge")
        });
        assert_eq!(w.found(), vec![]);
    }

    #[test]
    fn everything_left_in_an_offboarded_tenants_namespace_is_orphaned() {
        let mut w = World::new();
        let mut plain = secret("o1", "leftover");
        plain.has_owner = false;
        plain.last_write = Some(at("2020-01-01T00:00:00Z"));
        w.objects.push(plain);
        w.push_managed(secret("o1", "managed-leftover"));
        w.objects.push(service_account("o1", "robot"));
        w.objects.push(service_account("o1", "default"));
        // endsAt in the past counts as Offboarded.
        w.objects.push(service_account("e1", "robot"));
        // endsAt in the future does not, yet.
        w.objects.push(service_account("l1", "robot"));
        let eval = w.evaluate();
        assert_eq!(
            w.found(),
            vec![
                row(
                    FindingKind::OrphanedByOffboarding,
                    Some("ending"),
                    Some("e1"),
                    "ServiceAccount",
                    "robot"
                ),
                row(
                    FindingKind::OrphanedByOffboarding,
                    Some("gone"),
                    Some("o1"),
                    "Secret",
                    "leftover"
                ),
                row(
                    FindingKind::OrphanedByOffboarding,
                    Some("gone"),
                    Some("o1"),
                    "Secret",
                    "managed-leftover"
                ),
                row(
                    FindingKind::OrphanedByOffboarding,
                    Some("gone"),
                    Some("o1"),
                    "ServiceAccount",
                    "robot"
                ),
            ],
            "no Unowned or Stale beside Orphaned, and never the default ServiceAccount"
        );
        assert!(
            eval.findings[0]
                .message
                .ends_with("which is Offboarded (endsAt 2026-05-01T00:00:00Z)")
        );
        // l1's tenant ends on 2026-07-01: the findings change then.
        assert_eq!(eval.next_change, Some(at("2026-07-01T00:00:00Z")));
    }

    #[test]
    fn managed_credential_in_a_namespace_its_tenant_does_not_own_is_cross_tenant() {
        let mut w = World::new();
        w.credentials.push(key("g1", "in-globex", "acme"));
        w.credentials.push(key("free", "in-nobodys", "acme"));
        w.credentials.push(key("x", "in-conflict", "acme"));
        // A tenant that does not exist makes the key Invalid, not cross-tenant.
        w.credentials.push(key("a1", "no-such-tenant", "nobody"));
        let found = w.evaluate().findings;
        let got: Vec<_> = found
            .iter()
            .map(|f| {
                (
                    f.finding,
                    f.tenant.as_deref(),
                    f.name.as_str(),
                    f.message.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    FindingKind::CrossTenant,
                    None,
                    "in-nobodys",
                    "ApiKey belongs to tenant acme, but namespace free is owned by no tenant"
                ),
                (
                    FindingKind::CrossTenant,
                    None,
                    "in-conflict",
                    "ApiKey belongs to tenant acme, but namespace x is listed by several tenants (acme, globex) and owned by none"
                ),
                (
                    FindingKind::CrossTenant,
                    Some("globex"),
                    "in-globex",
                    "ApiKey belongs to tenant acme, but namespace g1 is owned by tenant globex"
                ),
            ]
        );
    }

    #[test]
    fn a_managed_value_copied_outside_its_tenant_is_cross_tenant_on_the_credential() {
        let mut w = World::new();
        w.credentials.push(key("a1", "k", "acme"));
        let copy = |ns: &str, secret: &str| ValueCopy {
            fingerprint: "sha256:k".into(),
            namespace: ns.into(),
            secret: secret.into(),
            key: "token".into(),
        };
        // Its own Secret and a copy in another namespace of the same tenant are fine.
        w.copies.push(copy("a1", "k"));
        w.copies.push(copy("a2", "mirror"));
        w.copies.push(copy("g1", "stolen"));
        w.copies.push(copy("kube-system", "stash"));
        w.copies.push(ValueCopy {
            fingerprint: "sha256:other".into(),
            ..copy("g1", "unrelated")
        });
        let found = w.evaluate().findings;
        let got: Vec<_> = found
            .iter()
            .map(|f| {
                (
                    f.finding,
                    f.tenant.as_deref(),
                    f.kind.as_str(),
                    f.name.as_str(),
                    f.message.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    FindingKind::CrossTenant,
                    Some("acme"),
                    "ApiKey",
                    "k",
                    "the value of ApiKey a1/k (tenant acme) is present in Secret g1/stolen (key \"token\"); namespace g1 is owned by tenant globex"
                ),
                (
                    FindingKind::CrossTenant,
                    Some("acme"),
                    "ApiKey",
                    "k",
                    "the value of ApiKey a1/k (tenant acme) is present in Secret kube-system/stash (key \"token\"); namespace kube-system is owned by no tenant"
                ),
            ]
        );
    }

    fn binding(ns: Option<&str>, name: &str, role: RoleKey, grantees: Vec<Grantee>) -> Binding {
        Binding {
            namespace: ns.map(Into::into),
            name: name.into(),
            role,
            grantees,
        }
    }

    fn sa(ns: &str, name: &str) -> Grantee {
        Grantee::ServiceAccount {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn role_binding_granting_secret_read_to_another_tenants_service_account_is_cross_tenant() {
        let mut w = World::new();
        let reader_role = RoleKey {
            namespace: Some("a1".into()),
            name: "read-secrets".into(),
        };
        let reader_cluster_role = RoleKey {
            namespace: None,
            name: "secret-admin".into(),
        };
        let harmless = RoleKey {
            namespace: None,
            name: "view".into(),
        };
        w.rbac = Rbac::new(
            [
                (reader_role.clone(), true),
                (reader_cluster_role.clone(), true),
                (harmless.clone(), false),
            ],
            [
                binding(
                    Some("a1"),
                    "to-globex",
                    reader_role.clone(),
                    vec![sa("g1", "reader"), sa("a2", "own")],
                ),
                binding(
                    Some("a1"),
                    "to-globex-all",
                    reader_cluster_role.clone(),
                    vec![Grantee::AllServiceAccounts {
                        namespace: "g1".into(),
                    }],
                ),
                // Same tenant, unowned namespaces and harmless roles are fine.
                binding(Some("a1"), "own", reader_role.clone(), vec![sa("a2", "x")]),
                binding(
                    Some("a1"),
                    "system",
                    reader_role.clone(),
                    vec![sa("kube-system", "x")],
                ),
                binding(Some("a1"), "view", harmless, vec![sa("g1", "reader")]),
                binding(
                    Some("kube-system"),
                    "platform",
                    reader_cluster_role.clone(),
                    vec![sa("g1", "reader")],
                ),
                binding(
                    None,
                    "cluster-wide",
                    reader_cluster_role,
                    vec![sa("g1", "reader"), sa("kube-system", "controller")],
                ),
            ],
        );
        let found = w.evaluate().findings;
        let got: Vec<_> = found
            .iter()
            .map(|f| {
                (
                    f.tenant.as_deref(),
                    f.namespace.as_deref(),
                    f.kind.as_str(),
                    f.name.as_str(),
                    f.message.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    None,
                    None,
                    "ClusterRoleBinding",
                    "cluster-wide",
                    "grants read of Secrets of every namespace (other tenants' included) through ClusterRole/secret-admin to ServiceAccount g1/reader of tenant globex"
                ),
                (
                    Some("acme"),
                    Some("a1"),
                    "RoleBinding",
                    "to-globex",
                    "grants read of Secrets of namespace a1 (tenant acme) through Role/read-secrets to ServiceAccount g1/reader of tenant globex"
                ),
                (
                    Some("acme"),
                    Some("a1"),
                    "RoleBinding",
                    "to-globex-all",
                    "grants read of Secrets of namespace a1 (tenant acme) through ClusterRole/secret-admin to every ServiceAccount of namespace g1 of tenant globex"
                ),
            ]
        );
        assert!(found.iter().all(|f| f.finding == FindingKind::CrossTenant));
    }

    #[test]
    fn findings_are_sorted_most_severe_first_and_counted_per_tenant() {
        let mut w = World::new();
        let mut plain = secret("a1", "plain");
        plain.has_owner = false;
        w.objects.push(plain);
        w.objects.push(service_account("o1", "robot"));
        let mut expired = key("a1", "exp", "acme");
        expired.state = Some(CredentialState::Expired);
        w.credentials.push(expired);
        w.credentials.push(key("g1", "foreign", "acme"));
        let eval = w.evaluate();
        let order: Vec<_> = eval.findings.iter().map(|f| f.finding).collect();
        assert_eq!(
            order,
            vec![
                FindingKind::CrossTenant,
                FindingKind::OrphanedByOffboarding,
                FindingKind::Expired,
                FindingKind::Unowned
            ]
        );
        let counted = count(
            Inputs {
                tenancy: &w.tenancy,
                objects: &w.objects,
                controllers: &w.controllers,
                credentials: &w.credentials,
                rbac: &w.rbac,
                copies: &w.copies,
            },
            now(),
        );
        let series = |t: Option<&str>, f: &str| (t.map(str::to_owned), f.to_owned());
        assert_eq!(
            counted.series(),
            vec![
                (series(Some("acme"), "Expired"), 1),
                (series(Some("acme"), "Unowned"), 1),
                (series(Some("globex"), "CrossTenant"), 1),
                (series(Some("gone"), "OrphanedByOffboarding"), 1),
            ]
        );
        assert_eq!(counted.next_change, eval.next_change);
    }

    #[test]
    fn all_lists_the_kinds_in_declaration_order() {
        for (i, k) in FindingKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }

    #[test]
    fn finding_serializes_as_the_contract_object() {
        let f = Finding {
            finding: FindingKind::CrossTenant,
            tenant: None,
            namespace: Some("a1".into()),
            kind: "RoleBinding".into(),
            name: "b".into(),
            message: "m".into(),
            at: Some(now()),
        };
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            json!({"finding": "CrossTenant", "tenant": null, "namespace": "a1",
                   "kind": "RoleBinding", "name": "b", "message": "m"})
        );
    }
}
