//! Vault decisions shared by the controller and `keyward lint`.

/// `..` and absolute paths would leave the tenant's Vault prefix; the operator refuses them.
pub fn path_problem(path: &str) -> Option<String> {
    if path.starts_with('/') {
        return Some(format!(
            "spec.vault.path {path:?} is absolute; it must be relative to the tenant's prefix (InvalidVaultPath)"
        ));
    }
    if path.split('/').any(|segment| segment == "..") {
        return Some(format!(
            "spec.vault.path {path:?} contains \"..\"; it must stay under the tenant's prefix (InvalidVaultPath)"
        ));
    }
    None
}
