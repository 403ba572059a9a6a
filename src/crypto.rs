//! Encryption at rest for vouchers and raw upstream bodies (contract §2.4).
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per message (random nonces
//! are safe at this size), the nonce stored in front of the ciphertext. The
//! associated data binds each ciphertext to its row and column, so a code
//! cannot be moved to another order unnoticed. `key_id` (a hash of the key)
//! is stored beside every ciphertext so a rotation can tell old from new.

use std::fmt;

use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
};
use sha2::{Digest, Sha256};

use crate::config::EncryptionKey;

const NONCE_LEN: usize = 24;

/// Decryption failed: wrong key, wrong row, or tampered data.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext was written under another key.
    #[error("ciphertext was written with key {0}, which is not loaded")]
    UnknownKey(String),
    /// Authentication failed.
    #[error("ciphertext failed authentication")]
    Invalid,
}

/// The AEAD with its key; `Debug` shows only the key id.
pub struct Cipher {
    aead: XChaCha20Poly1305,
    key_id: String,
}

impl Cipher {
    /// Builds the cipher from `ENCRYPTION_KEY`.
    pub fn new(key: &EncryptionKey) -> Self {
        let mut h = Sha256::new();
        h.update(b"order-gateway key id\n");
        h.update(key.expose());
        let key_id = hex::encode(&h.finalize()[..8]);
        Self {
            aead: XChaCha20Poly1305::new(key.expose().into()),
            key_id,
        }
    }

    /// Names the key; stored with every ciphertext.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Encrypts `plaintext`, bound to `aad` (e.g. `voucher:{order}:{pos}:code`).
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`Cipher::encrypt`] wrote under key `key_id` with the same `aad`.
    pub fn decrypt(&self, key_id: &str, blob: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if key_id != self.key_id {
            return Err(CryptoError::UnknownKey(key_id.to_owned()));
        }
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Invalid);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        self.aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Invalid)
    }
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cipher {{ key_id: {} }}", self.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(fill: u8) -> Cipher {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD.encode([fill; 32]);
        Cipher::new(&EncryptionKey::from_base64(&raw).unwrap())
    }

    #[test]
    fn a_round_trip_needs_the_same_key_and_associated_data() {
        let c = cipher(7);
        let blob = c.encrypt(b"CODE-123", b"voucher:1:0:code");
        assert!(!blob.windows(8).any(|w| w == b"CODE-123"));
        let back = c.decrypt(c.key_id(), &blob, b"voucher:1:0:code").unwrap();
        assert_eq!(back, b"CODE-123");
        assert!(c.decrypt(c.key_id(), &blob, b"voucher:2:0:code").is_err());
        let other = cipher(8);
        assert!(
            other
                .decrypt(c.key_id(), &blob, b"voucher:1:0:code")
                .is_err()
        );
        assert_ne!(c.key_id(), other.key_id());
    }

    #[test]
    fn the_same_plaintext_encrypts_differently_each_time() {
        let c = cipher(1);
        assert_ne!(c.encrypt(b"x", b""), c.encrypt(b"x", b""));
    }
}
