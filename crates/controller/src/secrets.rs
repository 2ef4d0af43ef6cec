//! Random secrets and their hashes. The controller stores only sha256 hashes of every secret it
//! hands out (instance secrets, enrollment tokens, admin tokens), so a copy of its database
//! authenticates nobody. Comparisons of hashes are constant-time.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// 32 random bytes as 64 hex digits, with a prefix naming what it is (`hmi_` instance secret,
/// `hme_` enrollment token, `hma_` admin token), so a leaked secret is recognisable.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    // The OS's CSPRNG; failing to read it leaves no safe way to make a secret.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator");
    format!("{prefix}{}", hex(&bytes))
}

/// A short random id (16 hex digits) for public identifiers: token ids, command ids.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator");
    format!("{prefix}{}", hex(&bytes))
}

pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two hashes (hex strings of equal length).
pub fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The signature of a bundle download URL: HMAC-SHA256 over the object key and its expiry,
/// with the controller's signing key. Hosts fetch uploaded bundles with it (the agent fetches
/// a URL, it does not send its secret to a bundle URL), and the bundle's sha256 is checked
/// by the agent anyway.
pub fn sign(key: &[u8], object: &str, expires_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(object.as_bytes());
    mac.update(b"\n");
    mac.update(expires_ms.to_string().as_bytes());
    hex(&mac.finalize().into_bytes())
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// Reads a bearer token from `Authorization: Bearer <token>`.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_prefixed() {
        let a = new_secret("hmi_");
        assert!(a.starts_with("hmi_") && a.len() == 68);
        assert_ne!(a, new_secret("hmi_"));
    }

    #[test]
    fn hashes_compare_in_constant_time_and_exactly() {
        let h = hash("x");
        assert!(same_hash(&h, &hash("x")));
        assert!(!same_hash(&h, &hash("y")));
        assert!(!same_hash(&h, &h[1..]));
    }

    #[test]
    fn signatures_bind_the_object_and_the_expiry() {
        let s = sign(b"k", "bundles/app/v1.zip", 10);
        assert_eq!(s, sign(b"k", "bundles/app/v1.zip", 10));
        assert_ne!(s, sign(b"k", "bundles/app/v1.zip", 11));
        assert_ne!(s, sign(b"k", "bundles/app/v2.zip", 10));
        assert_ne!(s, sign(b"j", "bundles/app/v1.zip", 10));
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(None), None);
    }
}
