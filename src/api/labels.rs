//! Label and annotation keys of the contract, and keyward's own bookkeeping annotations on
//! the objects it manages.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The controller ownerReference of `meta` when it names an object of the keyward group
/// (any version). The API server allows at most one controller reference per object.
pub fn keyward_controller(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .filter(|r| r.api_version.split_once('/').map(|(g, _)| g) == Some(super::GROUP))
}

/// `app.kubernetes.io/managed-by: keyward` on every managed Secret and ServiceAccount.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "keyward";
/// Label selector for everything keyward manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=keyward";
/// The tenant a managed object belongs to.
pub const TENANT: &str = "keyward.io/tenant";
/// The name of the keyward object that owns a managed object.
pub const CREDENTIAL: &str = "keyward.io/credential";

pub const OWNER: &str = "keyward.io/owner";
pub const VERSION: &str = "keyward.io/version";
pub const FINGERPRINT: &str = "keyward.io/fingerprint";
pub const EXPIRES_AT: &str = "keyward.io/expires-at";
/// Set by users (or `keyward rotate`) to ask for one rotation per new value.
pub const ROTATE: &str = "keyward.io/rotate";
/// Put on a consumer's pod template after a rotation, as `kubectl rollout restart` does.
pub const RESTARTED_AT: &str = "keyward.io/restartedAt";

/// Bookkeeping on a managed Secret: what was done, so a reconcile after a crash finishes
/// the same rotation instead of starting another.
pub const ISSUED_AT: &str = "keyward.io/issued-at";
pub const ROTATED_AT: &str = "keyward.io/rotated-at";
pub const PREVIOUS_VALID_UNTIL: &str = "keyward.io/previous-valid-until";
pub const ROTATION_REQUEST: &str = "keyward.io/rotation-request";
