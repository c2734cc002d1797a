//! Vault decisions shared by the controller and `keyward lint`: where a credential's
//! values live, and which paths are refused.

/// The characters a mount or path segment may hold. Anything else (`?`, `#`, `%`,
/// whitespace, control characters) would change what the request addresses.
fn safe_segment(segment: &str) -> bool {
    segment
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+' | '='))
}

/// Why `spec.vault.path` is refused (`InvalidVaultPath`), if it is: absolute, `..`, a
/// character outside `[A-Za-z0-9._@+=-]` and `/`, or nothing but separators.
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
    if !path.split('/').all(safe_segment) {
        return Some(format!(
            "spec.vault.path {path:?} may hold only letters, digits, '/' and ._@+=- (InvalidVaultPath)"
        ));
    }
    if path.split('/').all(|s| s.is_empty() || s == ".") {
        return Some(format!(
            "spec.vault.path {path:?} names no secret under the tenant's prefix (InvalidVaultPath)"
        ));
    }
    None
}

/// Why `spec.vault.mount` is refused, if it is.
pub fn mount_problem(mount: &str) -> Option<String> {
    let segments: Vec<&str> = mount.trim_matches('/').split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == ".." || !safe_segment(s))
    {
        return Some(format!(
            "spec.vault.mount {mount:?} is not a mount name (letters, digits, ._@+=- and '/') (InvalidVaultPath)"
        ));
    }
    None
}

/// The default KV v2 mount.
pub const DEFAULT_MOUNT: &str = "secret";

/// Default of `--vault-prefix`.
pub const DEFAULT_PREFIX: &str = "keyward/{tenant}";

/// Where a credential of `tenant` keeps its values: the prefix (`{tenant}` and
/// `{namespace}` replaced) joined with `path`, with empty and `.` segments dropped. The
/// result always starts with the tenant's prefix; a path that cannot be kept under it is
/// refused with the reason.
pub fn resolve(prefix: &str, tenant: &str, namespace: &str, path: &str) -> Result<String, String> {
    if let Some(problem) = path_problem(path) {
        return Err(problem);
    }
    let prefix = prefix
        .replace("{tenant}", tenant)
        .replace("{namespace}", namespace);
    let keep = |s: &&str| !s.is_empty() && *s != ".";
    let prefix: Vec<&str> = prefix.split('/').filter(keep).collect();
    if prefix.iter().any(|s| *s == ".." || !safe_segment(s)) {
        return Err(format!(
            "the controller's --vault-prefix resolves to {:?} for tenant {tenant:?}, which is not a plain path (InvalidVaultPath)",
            prefix.join("/")
        ));
    }
    let rest: Vec<&str> = path.split('/').filter(keep).collect();
    Ok(prefix.into_iter().chain(rest).collect::<Vec<_>>().join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_kept_under_the_tenants_prefix() {
        let r = |p| resolve(DEFAULT_PREFIX, "acme", "acme-prod", p);
        assert_eq!(
            r("globex/api-key").as_deref(),
            Ok("keyward/acme/globex/api-key")
        );
        assert_eq!(r("./a//b/").as_deref(), Ok("keyward/acme/a/b"));
        assert_eq!(r("a..b/c").as_deref(), Ok("keyward/acme/a..b/c"));
        for bad in [
            "../other/x",
            "a/../../b",
            "..",
            "/etc/x",
            "",
            "/",
            "./",
            "a?version=1",
            "a#b",
            "a b",
            "a%2e%2e/b",
            "a\nb",
        ] {
            assert!(r(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            resolve("teams/{namespace}/{tenant}", "acme", "ns", "k").as_deref(),
            Ok("teams/ns/acme/k")
        );
    }

    #[test]
    fn a_resolved_path_never_leaves_the_prefix() {
        use proptest::prelude::*;
        proptest!(|(path in "[a-z./]{0,12}")| {
            if let Ok(resolved) = resolve(DEFAULT_PREFIX, "acme", "ns", &path) {
                prop_assert!(resolved.starts_with("keyward/acme/"));
                prop_assert!(!resolved.split('/').any(|s| s == ".." || s == "." || s.is_empty()));
            }
        });
    }

    #[test]
    fn mounts_are_plain_names() {
        assert_eq!(mount_problem("secret"), None);
        assert_eq!(mount_problem("kv/team-a"), None);
        for bad in ["", "/", "..", "a/../b", "a?b", "a b"] {
            assert!(mount_problem(bad).is_some(), "{bad:?}");
        }
    }
}
