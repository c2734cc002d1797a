//! Where a managed value was found outside its credential, and what that means for the
//! credential's `CrossTenant` condition. The inventory finds the copies; this decides.

use super::credential::Verdict;
use super::tenancy::Tenancy;

/// A Secret value whose fingerprint is that of a managed credential.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueCopy {
    pub fingerprint: String,
    pub namespace: String,
    pub secret: String,
    pub key: String,
}

/// `CrossTenant=True` when a copy of the value with `fingerprint` is in a Secret of a
/// namespace that `tenant` does not own.
pub fn copied_elsewhere(
    copies: &[ValueCopy],
    tenancy: &Tenancy,
    tenant: &str,
    fingerprint: &str,
) -> Option<Verdict> {
    let found: Vec<String> = copies
        .iter()
        .filter(|c| {
            c.fingerprint == fingerprint
                && tenancy.namespace_owner(&c.namespace).tenant() != Some(tenant)
        })
        .map(|c| format!("Secret {}/{} (key {:?})", c.namespace, c.secret, c.key))
        .collect();
    (!found.is_empty()).then(|| {
        Verdict::new(
            true,
            "ValueCopied",
            format!(
                "the value is also in {}, outside the namespaces of tenant {tenant}",
                found.join(", ")
            ),
        )
    })
}
