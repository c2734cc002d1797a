//! RBAC as the inventory reads it: which Roles and ClusterRoles let their holder read
//! Secrets, and which bindings hand such a role to ServiceAccounts (and of which namespace).

use std::collections::HashSet;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::ResourceExt;

/// Verbs that reveal a Secret's data.
const READ_VERBS: [&str; 4] = ["get", "list", "watch", "*"];

/// A Role (namespace set) or ClusterRole (no namespace).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl RoleKey {
    /// `Role/name` or `ClusterRole/name`, as in a message.
    pub fn describe(&self) -> String {
        match self.namespace {
            Some(_) => format!("Role/{}", self.name),
            None => format!("ClusterRole/{}", self.name),
        }
    }
}

/// Whether any rule grants get, list or watch (directly or through `*`) on Secrets of the
/// core API group (directly or through `*`).
pub fn reads_secrets(rules: &[PolicyRule]) -> bool {
    rules.iter().any(|rule| {
        let any = |list: &Option<Vec<String>>, wanted: &[&str]| {
            list.iter()
                .flatten()
                .any(|item| wanted.contains(&item.as_str()))
        };
        any(&rule.api_groups, &["", "*"])
            && any(&rule.resources, &["secrets", "*"])
            && rule.verbs.iter().any(|v| READ_VERBS.contains(&v.as_str()))
    })
}

/// A Role's key and whether it reads Secrets.
pub fn role(role: &Role) -> (RoleKey, bool) {
    (
        RoleKey {
            namespace: role.namespace(),
            name: role.name_any(),
        },
        reads_secrets(role.rules.as_deref().unwrap_or_default()),
    )
}

/// A ClusterRole's key and whether it reads Secrets (its rules, which for an aggregated
/// ClusterRole the API server's aggregation controller has already filled in).
pub fn cluster_role(role: &ClusterRole) -> (RoleKey, bool) {
    (
        RoleKey {
            namespace: None,
            name: role.name_any(),
        },
        reads_secrets(role.rules.as_deref().unwrap_or_default()),
    )
}

/// Who a binding hands its role to, as far as ServiceAccounts go.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grantee {
    /// One ServiceAccount (a `ServiceAccount` subject, or the user
    /// `system:serviceaccount:NS:NAME`).
    ServiceAccount { namespace: String, name: String },
    /// Every ServiceAccount of a namespace (the group `system:serviceaccounts:NS`).
    AllServiceAccounts { namespace: String },
}

impl Grantee {
    pub fn namespace(&self) -> &str {
        match self {
            Self::ServiceAccount { namespace, .. } | Self::AllServiceAccounts { namespace } => {
                namespace
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::ServiceAccount { namespace, name } => {
                format!("ServiceAccount {namespace}/{name}")
            }
            Self::AllServiceAccounts { namespace } => {
                format!("every ServiceAccount of namespace {namespace}")
            }
        }
    }
}

/// A RoleBinding (namespace set) or ClusterRoleBinding, reduced to its role and the
/// ServiceAccounts it grants; bindings with no ServiceAccount subject are not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub namespace: Option<String>,
    pub name: String,
    pub role: RoleKey,
    pub grantees: Vec<Grantee>,
}

impl Binding {
    pub fn kind(&self) -> &'static str {
        match self.namespace {
            Some(_) => "RoleBinding",
            None => "ClusterRoleBinding",
        }
    }

    pub fn from_role_binding(binding: &RoleBinding) -> Option<Self> {
        let namespace = binding.namespace()?;
        let role = role_key(&binding.role_ref, Some(&namespace))?;
        let grantees = grantees(binding.subjects.as_deref(), Some(&namespace));
        (!grantees.is_empty()).then(|| Self {
            namespace: Some(namespace),
            name: binding.name_any(),
            role,
            grantees,
        })
    }

    pub fn from_cluster_role_binding(binding: &ClusterRoleBinding) -> Option<Self> {
        let role = role_key(&binding.role_ref, None)?;
        let grantees = grantees(binding.subjects.as_deref(), None);
        (!grantees.is_empty()).then(|| Self {
            namespace: None,
            name: binding.name_any(),
            role,
            grantees,
        })
    }
}

fn role_key(role_ref: &RoleRef, namespace: Option<&str>) -> Option<RoleKey> {
    match role_ref.kind.as_str() {
        "ClusterRole" => Some(RoleKey {
            namespace: None,
            name: role_ref.name.clone(),
        }),
        // A RoleBinding's Role lives in the binding's own namespace.
        "Role" => Some(RoleKey {
            namespace: Some(namespace?.to_owned()),
            name: role_ref.name.clone(),
        }),
        _ => None,
    }
}

fn grantees(subjects: Option<&[Subject]>, namespace: Option<&str>) -> Vec<Grantee> {
    let mut out: Vec<Grantee> = subjects
        .unwrap_or_default()
        .iter()
        .filter_map(|s| match s.kind.as_str() {
            "ServiceAccount" => Some(Grantee::ServiceAccount {
                namespace: s.namespace.clone().or(namespace.map(str::to_owned))?,
                name: s.name.clone(),
            }),
            "User" => {
                let rest = s.name.strip_prefix("system:serviceaccount:")?;
                let (ns, name) = rest.split_once(':')?;
                Some(Grantee::ServiceAccount {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            "Group" => Some(Grantee::AllServiceAccounts {
                namespace: s.name.strip_prefix("system:serviceaccounts:")?.to_owned(),
            }),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every role that reads Secrets, and every binding of a ServiceAccount.
#[derive(Clone, Debug, Default)]
pub struct Rbac {
    pub secret_readers: HashSet<RoleKey>,
    pub bindings: Vec<Binding>,
}

impl Rbac {
    /// Builds the index from role verdicts (`(key, reads secrets)`) and bindings.
    pub fn new(
        roles: impl IntoIterator<Item = (RoleKey, bool)>,
        bindings: impl IntoIterator<Item = Binding>,
    ) -> Self {
        Self {
            secret_readers: roles
                .into_iter()
                .filter_map(|(key, reads)| reads.then_some(key))
                .collect(),
            bindings: bindings.into_iter().collect(),
        }
    }

    pub fn reads_secrets(&self, role: &RoleKey) -> bool {
        self.secret_readers.contains(role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
        PolicyRule {
            api_groups: Some(groups.iter().map(|s| (*s).into()).collect()),
            resources: Some(resources.iter().map(|s| (*s).into()).collect()),
            verbs: verbs.iter().map(|s| (*s).into()).collect(),
            ..PolicyRule::default()
        }
    }

    #[test]
    fn reading_secrets_needs_core_group_secrets_and_a_read_verb() {
        assert!(reads_secrets(&[rule(&[""], &["secrets"], &["get"])]));
        assert!(reads_secrets(&[rule(&[""], &["secrets"], &["list"])]));
        assert!(reads_secrets(&[rule(&["*"], &["*"], &["*"])]));
        assert!(reads_secrets(&[rule(&[""], &["*"], &["watch"])]));
        assert!(!reads_secrets(&[rule(
            &[""],
            &["secrets"],
            &["create", "delete"]
        )]));
        assert!(!reads_secrets(&[rule(&[""], &["configmaps"], &["get"])]));
        assert!(!reads_secrets(&[rule(&["apps"], &["secrets"], &["get"])]));
        assert!(!reads_secrets(&[]));
    }

    #[test]
    fn service_account_subjects_are_read_in_all_three_spellings() {
        let subject = |kind: &str, name: &str, ns: Option<&str>| Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(Into::into),
            ..Subject::default()
        };
        let got = grantees(
            Some(&[
                subject("ServiceAccount", "reader", Some("b")),
                subject("ServiceAccount", "local", None),
                subject("User", "system:serviceaccount:c:bot", None),
                subject("Group", "system:serviceaccounts:d", None),
                subject("User", "alice", None),
                subject("Group", "system:authenticated", None),
            ]),
            Some("a"),
        );
        assert_eq!(
            got,
            vec![
                Grantee::ServiceAccount {
                    namespace: "a".into(),
                    name: "local".into()
                },
                Grantee::ServiceAccount {
                    namespace: "b".into(),
                    name: "reader".into()
                },
                Grantee::ServiceAccount {
                    namespace: "c".into(),
                    name: "bot".into()
                },
                Grantee::AllServiceAccounts {
                    namespace: "d".into()
                },
            ]
        );
    }
}
