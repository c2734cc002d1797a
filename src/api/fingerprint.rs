//! A credential value's fingerprint, as the contract spells it: what status, annotations,
//! audit lines and the inventory carry instead of the value.

use sha2::{Digest, Sha256};

/// `sha256:` and the first 16 hex digits of the SHA-256 of a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(bytes: &[u8]) -> Self {
        let digest = Sha256::digest(bytes);
        Self(format!(
            "sha256:{}",
            hex::encode(digest.iter().take(8).copied().collect::<Vec<u8>>())
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_sha256_and_16_hex_digits() {
        let f = Fingerprint::of(b"gx_live_abc");
        assert!(f.as_str().starts_with("sha256:"));
        assert_eq!(f.as_str().len(), "sha256:".len() + 16);
        assert_eq!(f, Fingerprint::of(b"gx_live_abc"));
        assert_ne!(f, Fingerprint::of(b"gx_live_abd"));
    }
}
