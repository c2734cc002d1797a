//! The errors a reconcile can end with. None of them carries a credential value.

use crate::store::value::EntropyError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),

    #[error(transparent)]
    Entropy(#[from] EntropyError),

    #[error("object has no {0}")]
    MissingMetadata(&'static str),

    #[error("serializing: {0}")]
    Serialize(#[from] serde_json::Error),

    /// A reconcile panicked: a bug, reported on that one object, which backs off like any
    /// other failure while the controller keeps governing the rest.
    #[error("reconcile panicked: {0}")]
    Panicked(String),

    #[error(transparent)]
    Vault(#[from] crate::store::vault::VaultError),
}

impl From<kube::Error> for Error {
    fn from(err: kube::Error) -> Self {
        Self::Kube(err)
    }
}

impl Error {
    /// A short label for `keyward_reconcile_errors_total{reason}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.is_conflict() => "conflict",
            Self::Kube(kube::Error::Api(status)) if status.is_not_found() => "not_found",
            Self::Kube(kube::Error::Api(_)) => "api",
            Self::Kube(err) if is_fenced(err) => "fenced",
            Self::Kube(_) => "transport",
            Self::Entropy(_) => "entropy",
            Self::MissingMetadata(_) => "missing_metadata",
            Self::Serialize(_) => "serialize",
            Self::Panicked(_) => "panic",
            Self::Vault(_) => "vault",
        }
    }

    /// Whether the API server could not be reached or could not serve the request (a
    /// transport failure, 429 or 5xx): worth retrying as soon as it answers again.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Kube(kube::Error::Api(status)) => status.code >= 500 || status.code == 429,
            // Refused by this process's own fence: it no longer leads, and is stopping.
            Self::Kube(err) if is_fenced(err) => false,
            Self::Kube(_) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `err` is a write this process's leader-election fence refused.
fn is_fenced(err: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<crate::client::Fenced>() {
            return true;
        }
        source = e.source();
    }
    false
}
