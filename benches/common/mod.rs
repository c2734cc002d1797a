//! What the benchmarks share: their knobs and the local plane's kubeconfig.

use std::path::PathBuf;

/// The number in environment variable `name`, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `KEYWARD_KUBECONFIG`, or the local plane's admin kubeconfig.
pub fn kubeconfig() -> PathBuf {
    std::env::var_os("KEYWARD_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".cluster/kubeconfig"))
}
