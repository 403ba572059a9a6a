//! Encryption at rest for vouchers and raw upstream bodies (contract §2.4).
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per message (random nonces
//! are safe at this size), the nonce stored in front of the ciphertext. The
//! associated data binds each ciphertext to its row and column, so a code
//! cannot be moved to another order unnoticed. `key_id` (a hash of the key)
//! is stored beside every ciphertext so a rotation can tell old from new.
//!
//! Key rotation: new ciphertexts always use `ENCRYPTION_KEY`; an optional
//! `ENCRYPTION_KEY_PREVIOUS` is kept for decryption only, so rows written
//! under the old key stay readable while the new key rolls out.

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

struct Key {
    aead: XChaCha20Poly1305,
    key_id: String,
}

impl Key {
    fn new(key: &EncryptionKey) -> Self {
        let mut h = Sha256::new();
        h.update(b"order-gateway key id\n");
        h.update(key.expose());
        Self {
            aead: XChaCha20Poly1305::new(key.expose().into()),
            key_id: hex::encode(&h.finalize()[..8]),
        }
    }
}

/// The AEAD with its key(s); `Debug` shows only the key ids.
pub struct Cipher {
    current: Key,
    previous: Option<Key>,
}

impl Cipher {
    /// Builds the cipher from `ENCRYPTION_KEY`.
    pub fn new(key: &EncryptionKey) -> Self {
        Self {
            current: Key::new(key),
            previous: None,
        }
    }

    /// Also accepts ciphertexts written under `previous`
    /// (`ENCRYPTION_KEY_PREVIOUS`, during a key rotation); never encrypts with it.
    pub fn with_previous(mut self, previous: Option<&EncryptionKey>) -> Self {
        self.previous = previous.map(Key::new);
        self
    }

    /// Whether `key_id` names the key new ciphertexts are written with.
    pub fn is_current(&self, key_id: &str) -> bool {
        key_id == self.current.key_id
    }

    /// Names the key; stored with every ciphertext.
    pub fn key_id(&self) -> &str {
        &self.current.key_id
    }

    /// Encrypts `plaintext`, bound to `aad` (e.g. `voucher:{order}:{pos}:code`).
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .current
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
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.key_id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        if blob.len() < NONCE_LEN {
            return Err(CryptoError::Invalid);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        key.aead
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad })
            .map_err(|_| CryptoError::Invalid)
    }
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous = self.previous.as_ref().map(|k| k.key_id.as_str());
        write!(
            f,
            "Cipher {{ key_id: {}, previous: {previous:?} }}",
            self.current.key_id
        )
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
    fn a_previous_key_still_decrypts_but_never_encrypts() {
        let (old, new) = (cipher(1), cipher(2));
        let blob = old.encrypt(b"PIN-1", b"aad");
        let raw = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 32]);
        let prev = EncryptionKey::from_base64(&raw).unwrap();
        let rotating = cipher(2).with_previous(Some(&prev));
        assert_eq!(
            rotating.decrypt(old.key_id(), &blob, b"aad").unwrap(),
            b"PIN-1"
        );
        assert!(new.decrypt(old.key_id(), &blob, b"aad").is_err());
        assert_eq!(rotating.key_id(), new.key_id());
        assert!(rotating.is_current(new.key_id()) && !rotating.is_current(old.key_id()));
        assert!(!format!("{rotating:?}").contains("PIN"));
    }

    #[test]
    fn the_same_plaintext_encrypts_differently_each_time() {
        let c = cipher(1);
        assert_ne!(c.encrypt(b"x", b""), c.encrypt(b"x", b""));
    }
}
