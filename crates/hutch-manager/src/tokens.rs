//! Agent bearer tokens: random, opaque, stored only as SHA-256 digests.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A freshly issued token, the only time its plain text exists on the server.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// Unix seconds when it stops working.
    pub expires_at: i64,
}

/// 32 random bytes, URL-safe base64, with a recognisable prefix.
pub(crate) fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("hutch_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The digest the store keeps.
pub(crate) fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_digests_stable() {
        let a = generate();
        assert_ne!(a, generate());
        assert!(a.starts_with("hutch_") && a.len() > 40);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), a);
    }
}
