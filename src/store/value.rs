//! Credential values: generated from the operating system's CSPRNG, and fingerprinted so
//! the value itself never has to be shown.

pub use crate::api::Fingerprint;
use crate::api::{Encoding, Generator};
use base64::Engine;
use rand::TryRngCore;
use rand::rngs::OsRng;

/// A credential value. Its `Debug` never shows the value, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Value(String);

impl Value {
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok().map(Self)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.0.as_bytes())
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Value({})", self.fingerprint())
    }
}

/// The operating system's random source could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the operating system's random source: {0}")]
pub struct EntropyError(String);

/// Default entropy of a generated value, in bytes.
pub const DEFAULT_BYTES: usize = 32;

/// Generates a value as the generator spec asks.
pub fn generate(spec: Option<&Generator>) -> Result<Value, EntropyError> {
    let bytes = spec
        .and_then(|g| g.bytes)
        .and_then(|b| usize::try_from(b).ok())
        .unwrap_or(DEFAULT_BYTES)
        .clamp(16, 128);
    let encoding = spec.and_then(|g| g.encoding).unwrap_or_default();
    let prefix = spec.and_then(|g| g.prefix.as_deref()).unwrap_or_default();
    let body = match encoding {
        Encoding::Base64Url => {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(bytes)?)
        }
        Encoding::Hex => hex::encode(random_bytes(bytes)?),
        Encoding::Alphanumeric => {
            // log2(62) bits per character: enough characters to carry the requested entropy.
            let chars = ((bytes * 8) as f64 / 62f64.log2()).ceil() as usize;
            alphanumeric(chars)?
        }
    };
    Ok(Value(format!("{prefix}{body}")))
}

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Uniform letters and digits: bytes at or above 248 (= 4 * 62) are dropped so that
/// `byte % 62` has no bias.
fn alphanumeric(chars: usize) -> Result<String, EntropyError> {
    let mut out = String::with_capacity(chars);
    while out.len() < chars {
        for b in random_bytes(chars)? {
            if b < 248
                && out.len() < chars
                && let Some(c) = ALPHABET.get(usize::from(b % 62))
            {
                out.push(char::from(*c));
            }
        }
    }
    Ok(out)
}

fn random_bytes(n: usize) -> Result<Vec<u8>, EntropyError> {
    let mut buf = vec![0u8; n];
    OsRng
        .try_fill_bytes(&mut buf)
        .map_err(|e| EntropyError(e.to_string()))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(bytes: Option<i32>, encoding: Encoding, prefix: Option<&str>) -> Generator {
        Generator {
            bytes,
            encoding: Some(encoding),
            prefix: prefix.map(str::to_owned),
        }
    }

    #[test]
    fn base64url_values_have_no_padding_and_carry_the_prefix() {
        let v = generate(Some(&generator(
            Some(32),
            Encoding::Base64Url,
            Some("gx_live_"),
        )))
        .unwrap();
        let body = v.expose().strip_prefix("gx_live_").expect("prefix");
        assert_eq!(body.len(), 43);
        assert!(
            body.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn hex_values_have_two_digits_per_byte() {
        let v = generate(Some(&generator(Some(16), Encoding::Hex, None))).unwrap();
        assert_eq!(v.expose().len(), 32);
        assert!(
            v.expose()
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }

    #[test]
    fn alphanumeric_values_carry_the_requested_entropy() {
        let v = generate(Some(&generator(Some(32), Encoding::Alphanumeric, None))).unwrap();
        assert_eq!(v.expose().len(), 43);
        assert!(v.expose().chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn two_values_differ() {
        assert_ne!(generate(None).unwrap(), generate(None).unwrap());
    }

    #[test]
    fn fingerprint_is_sha256_prefix_of_the_value() {
        // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223...
        assert_eq!(Fingerprint::of(b"abc").as_str(), "sha256:ba7816bf8f01cfea");
    }

    #[test]
    fn debug_never_shows_the_value() {
        let v = generate(None).unwrap();
        assert!(!format!("{v:?}").contains(v.expose()));
    }
}
